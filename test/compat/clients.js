// Drives unmodified @microsoft/signalr clients against an edgeplane node for
// the Go compatibility tests (test/e2e). Usage:
//   node clients.js '<json spec>'
// spec: {"base":"http://127.0.0.1:PORT","clients":[{"name":"a","hub":"chat",
//        "skipNegotiation":false,"accessToken":"...","targets":["t"],"invoke":{...},
//        "ignore":["noise"],"stopAfterConnect":false,
//        "headers":{"X-Custom":"v"},"query":"room=42","invokeAsync":false}]}
// ignore: targets handled without a line each (a load the test only needs
// the client to survive); stopAfterConnect: stop the connection once it is
// connected (and its invoke answered). headers are sent with negotiate and
// the WebSocket, as withUrl's headers option does under Node; query is
// appended to the hub URL; invokeAsync: the client counts as started
// without waiting for its invoke's answer (an upstream that holds it).
// Prints one JSON line per event on stdout:
//   {"name":"a","event":"connected","connectionId":"..."}
//   {"name":"a","event":"message","target":"t","args":[...]}
//   {"name":"a","event":"invokeOk","args":[result]}   (the invoke's result)
//   {"name":"a","event":"invokeError","error":"..."}
//   {"name":"a","event":"closed","error":null}
//   {"name":"a","event":"error","error":"..."}   (connect failed)
// Closes every connection when stdin ends or receives "stop".
const signalR = require("@microsoft/signalr");

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const conns = [];

async function start(c) {
  const opts = {};
  if (c.headers) opts.headers = c.headers;
  if (c.skipNegotiation) {
    opts.skipNegotiation = true;
    opts.transport = signalR.HttpTransportType.WebSockets;
  }
  if (c.accessToken) opts.accessTokenFactory = () => c.accessToken;
  const conn = new signalR.HubConnectionBuilder()
    .withUrl(`${spec.base}/${c.hub || "chat"}${c.query ? "?" + c.query : ""}`, opts)
    .configureLogging(signalR.LogLevel.Warning)
    .build();
  for (const t of c.targets || ["t"]) {
    conn.on(t, (...args) => { out({ name: c.name, event: "message", target: t, args }); });
  }
  for (const t of c.ignore || []) conn.on(t, () => {});
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
    const call = conn.invoke(c.invoke.target, ...(c.invoke.args || [])).then(
      (result) => out({ name: c.name, event: "invokeOk", args: [result === undefined ? null : result] }),
      (err) => out({ name: c.name, event: "invokeError", error: String(err) }));
    if (!c.invokeAsync) await call;
  }
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
