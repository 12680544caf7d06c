// Streams, cancellation, upload streams and client results with an
// unmodified @microsoft/signalr client, for the Go test
// TestCompatStreams (test/e2e). Usage:
//   node streams.js '{"base":"http://127.0.0.1:PORT","hub":"chat","protocol":"json"|"messagepack",
//                     "transport":"websockets"|"sse"|"longpolling"}'
// transport forces the client onto that transport (default: negotiated).
// Against a node whose upstream is examples/upstream (Counter, Sum,
// Echo), it runs in turn, printing one JSON line per outcome:
//   {"event":"connected","connectionId":"...","transport":"LongPollingTransport"}
//   {"event":"echo","result":...}                       invoke("Echo", ...)
//   {"event":"send","args":[...]}                       send("Broadcast", "sent", 7) (no
//                                                       answer); the app's broadcast(...)
//                                                       back to this client
//   {"event":"stream","items":[0,1,2],"error":null}     stream("Counter", 3, 0)
//   {"event":"cancelled","items":[...],"id":"..."}      stream("Counter", 1000, 20) disposed
//                                                       after 2 items; id from the
//                                                       app's streamCancelled message
//   {"event":"upload","result":6.5}                     invoke("Sum", subject 1, 2.5, 3)
//   {"event":"ready"}
// and serves client results: "double" answers its argument times two,
// "fail" throws "no can do", "hang" never answers; each call prints
//   {"event":"invoked","target":"double","args":[...]}
// Closes the connection when stdin ends or receives "stop", prints
// {"event":"closed"} and exits.
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

function streamAll(conn, target, args, cancelAfter) {
  return new Promise((resolve) => {
    const items = [];
    let sub;
    sub = conn.stream(target, ...args).subscribe({
      next: (v) => {
        items.push(v);
        if (cancelAfter && items.length === cancelAfter) {
          sub.dispose();
          resolve({ items, error: null, disposed: true });
        }
      },
      complete: () => resolve({ items, error: null }),
      error: (err) => resolve({ items, error: String(err) }),
    });
  });
}

(async () => {
  const opts = {};
  if (spec.transport === "websockets") opts.transport = signalR.HttpTransportType.WebSockets;
  if (spec.transport === "sse") opts.transport = signalR.HttpTransportType.ServerSentEvents;
  if (spec.transport === "longpolling") opts.transport = signalR.HttpTransportType.LongPolling;
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${spec.base}/${spec.hub || "chat"}`, opts)
    .configureLogging(signalR.LogLevel.Warning);
  if (spec.protocol === "messagepack") builder = builder.withHubProtocol(new MessagePackHubProtocol());
  const conn = builder.build();
  let cancelledId = null;
  let onCancelled = null;
  let onBroadcast = null;
  conn.on("broadcast", (...args) => { if (onBroadcast) onBroadcast(args); });
  conn.on("streamCancelled", (id) => { cancelledId = id; if (onCancelled) onCancelled(); });
  conn.on("double", (x) => { out({ event: "invoked", target: "double", args: [x] }); return x * 2; });
  conn.on("fail", () => { out({ event: "invoked", target: "fail", args: [] }); throw new Error("no can do"); });
  conn.on("hang", () => { out({ event: "invoked", target: "hang", args: [] }); return new Promise(() => {}); });
  conn.onclose(() => out({ event: "closed" }));
  try {
    await conn.start();
  } catch (err) {
    out({ event: "error", error: String(err) });
    process.exit(1);
  }
  // The transport in use (the client's own class: WebSocketTransport,
  // ServerSentEventsTransport, LongPollingTransport), so the test knows
  // what it ran on.
  const tr = conn.connection && conn.connection.transport;
  out({ event: "connected", connectionId: conn.connectionId, transport: tr ? tr.constructor.name : null });
  try {
    out({ event: "echo", result: await conn.invoke("Echo", { a: [1, "x"] }) });
  } catch (err) {
    out({ event: "echo", error: String(err) });
  }
  const sent = new Promise((resolve) => {
    onBroadcast = resolve;
    setTimeout(() => resolve(null), 10000);
  });
  try {
    await conn.send("Broadcast", "sent", 7);
    out({ event: "send", args: await sent });
  } catch (err) {
    out({ event: "send", error: String(err) });
  }
  const s = await streamAll(conn, "Counter", [3, 0]);
  out({ event: "stream", items: s.items, error: s.error });
  const bad = await streamAll(conn, "Nope", []);
  out({ event: "streamError", items: bad.items, error: bad.error });
  const c = await streamAll(conn, "Counter", [1000, 20], 2);
  await new Promise((resolve) => {
    if (cancelledId) return resolve();
    onCancelled = resolve;
    setTimeout(resolve, 10000);
  });
  out({ event: "cancelled", items: c.items, id: cancelledId });
  const subject = new signalR.Subject();
  const sum = conn.invoke("Sum", subject);
  subject.next(1);
  subject.next(2.5);
  subject.next(3);
  subject.complete();
  try {
    out({ event: "upload", result: await sum });
  } catch (err) {
    out({ event: "upload", error: String(err) });
  }
  out({ event: "ready" });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await conn.stop().catch(() => {});
    process.exit(0);
  };
  process.stdin.on("data", (d) => { if (String(d).includes("stop")) stop(); });
  process.stdin.on("end", stop);
})();
