// Drives unmodified @microsoft/signalr clients against an edgeplane node for
// the Go compatibility tests (test/e2e). Usage:
//   node clients.js '<json spec>'
// spec: {"base":"http://127.0.0.1:PORT","clients":[{"name":"a","hub":"chat",
//        "protocol":"messagepack","skipNegotiation":false,"accessToken":"...",
//        "targets":["t"],"invoke":{...},"invokes":[{...}],"sends":[{...}],
//        "ignore":["noise"],"stopAfterConnect":false,
//        "headers":{"X-Custom":"v"},"query":"room=42","invokeAsync":false,
//        "transport":"websockets"|"sse"|"longpolling","reconnect":false}]}
// protocol "messagepack" builds the client with
// withHubProtocol(new MessagePackHubProtocol()) from
// @microsoft/signalr-protocol-msgpack (default: JSON). hub may be a path
// ("hubs/chat"). invokes are invoked one after the other after connecting,
// sends sent (no answer) after them. Values that JSON has no form for
// travel tagged through the spec and the output: {"$bin": base64} is a
// Uint8Array, {"$date": ISO string} a Date.
// ignore: targets handled without a line each (a load the test only needs
// the client to survive); stopAfterConnect: stop the connection once it is
// connected (and its invoke answered). headers are sent with negotiate and
// the WebSocket, as withUrl's headers option does under Node; query is
// appended to the hub URL; invokeAsync: the client counts as started
// without waiting for its invoke's answer (an upstream that holds it).
// Prints one JSON line per event on stdout:
//   {"name":"a","event":"connected","connectionId":"..."}
//   {"name":"a","event":"message","target":"t","args":[...]}
//   {"name":"a","event":"invokeOk","target":"Echo","args":[result]}   (the invoke's result)
//   {"name":"a","event":"invokeError","target":"Echo","error":"..."}
//   {"name":"a","event":"closed","error":null}
//   {"name":"a","event":"error","error":"..."}   (connect failed)
// Closes every connection when stdin ends or receives "stop".
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const conns = [];

// tag makes a received value printable as JSON: binary and dates tagged.
function tag(v) {
  if (v instanceof Uint8Array) return { $bin: Buffer.from(v).toString("base64") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(new Uint8Array(v)).toString("base64") };
  if (v instanceof Date) return { $date: v.toISOString() };
  if (Array.isArray(v)) return v.map(tag);
  if (v !== null && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = tag(v[k]);
    return o;
  }
  return v;
}

// untag turns the spec's tagged values into what they stand for.
function untag(v) {
  if (Array.isArray(v)) return v.map(untag);
  if (v !== null && typeof v === "object") {
    if (typeof v.$bin === "string") return new Uint8Array(Buffer.from(v.$bin, "base64"));
    if (typeof v.$date === "string") return new Date(v.$date);
    const o = {};
    for (const k of Object.keys(v)) o[k] = untag(v[k]);
    return o;
  }
  return v;
}

async function invoke(c, conn, inv) {
  try {
    const result = await conn.invoke(inv.target, ...untag(inv.args || []));
    out({ name: c.name, event: "invokeOk", target: inv.target, args: [result === undefined ? null : tag(result)] });
  } catch (err) {
    out({ name: c.name, event: "invokeError", target: inv.target, error: String(err) });
  }
}

async function start(c) {
  const opts = {};
  if (c.headers) opts.headers = c.headers;
  if (c.skipNegotiation) {
    opts.skipNegotiation = true;
    opts.transport = signalR.HttpTransportType.WebSockets;
  }
  if (c.transport === "websockets") opts.transport = signalR.HttpTransportType.WebSockets;
  if (c.transport === "sse") opts.transport = signalR.HttpTransportType.ServerSentEvents;
  if (c.transport === "longpolling") opts.transport = signalR.HttpTransportType.LongPolling;
  if (c.accessToken) opts.accessTokenFactory = () => c.accessToken;
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${spec.base}/${c.hub || "chat"}${c.query ? "?" + c.query : ""}`, opts)
    .configureLogging(signalR.LogLevel.Warning);
  if (c.protocol === "messagepack") builder = builder.withHubProtocol(new MessagePackHubProtocol());
  if (c.reconnect) builder = builder.withAutomaticReconnect([0, 0, 0]);
  const conn = builder.build();
  for (const t of c.targets || ["t"]) {
    conn.on(t, (...args) => { out({ name: c.name, event: "message", target: t, args: tag(args) }); });
  }
  for (const t of c.ignore || []) conn.on(t, () => {});
  conn.onreconnecting(() => out({ name: c.name, event: "reconnecting" }));
  conn.onreconnected((id) => out({ name: c.name, event: "reconnected", connectionId: id }));
  conn.onclose((err) => out({ name: c.name, event: "closed", error: err ? String(err) : null }));
  try {
    await conn.start();
  } catch (err) {
    out({ name: c.name, event: "error", error: String(err) });
    return;
  }
  conns.push(conn);
  out({ name: c.name, event: "connected", connectionId: conn.connectionId });
  if (c.invoke) {
    const call = invoke(c, conn, c.invoke);
    if (!c.invokeAsync) await call;
  }
  for (const inv of c.invokes || []) await invoke(c, conn, inv);
  for (const snd of c.sends || []) await conn.send(snd.target, ...untag(snd.args || []));
  if (c.stopAfterConnect) await conn.stop();
}

(async () => {
  await Promise.all(spec.clients.map(start));
  out({ event: "ready" });
})();

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await Promise.all(conns.map((c) => c.stop().catch(() => {})));
  process.exit(0);
}
process.stdin.on("data", (d) => { if (String(d).includes("stop")) stop(); });
process.stdin.on("end", stop);
