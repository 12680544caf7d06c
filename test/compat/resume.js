// Drives unmodified @microsoft/signalr clients built withStatefulReconnect()
// for test/e2e/resume_test.go. Usage:
//   node resume.js '<json spec>'
// spec: {"base":"http://127.0.0.1:PORT","clients":[{"name":"a","accessToken":"...",
//        "protocol":"messagepack"}],"retryDelays":[0,0,500]}
// protocol "messagepack": withHubProtocol(new MessagePackHubProtocol())
// (default JSON).
// Each client is built withStatefulReconnect() and
// withAutomaticReconnect(retryDelays): a socket that drops is resumed by
// the transport (invisible to the HubConnection), a failed resume falls
// back to a full reconnect (onreconnecting, onreconnected).
// Prints one JSON line per event on stdout:
//   {"name":"a","event":"connected","connectionId":"...","stateful":true}
//   {"name":"a","event":"message","args":[...]}          (target "t")
//   {"name":"a","event":"reconnecting","error":"..."}
//   {"name":"a","event":"reconnected","connectionId":"..."}
//   {"name":"a","event":"closed","error":null}
//   {"name":"a","event":"error","error":"..."}           (start failed)
//   {"name":"a","event":"putDone","count":N}
//   {"event":"ready"}
// Commands on stdin, one per line:
//   put NAME COUNT EVERYMS   NAME sends Put(i) for i in 0..COUNT-1, one
//                            every EVERYMS ms (send(): no answer awaited)
//   stop                     stop every client and exit
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const conns = new Map();

async function start(c) {
  const opts = {};
  if (c.accessToken) opts.accessTokenFactory = () => c.accessToken;
  let builder = new signalR.HubConnectionBuilder()
    .withUrl(`${spec.base}/${c.hub || "chat"}`, opts)
    .withStatefulReconnect()
    .withAutomaticReconnect(spec.retryDelays || [0, 0, 500, 1000])
    .configureLogging(signalR.LogLevel.Warning);
  if (c.protocol === "messagepack") builder = builder.withHubProtocol(new MessagePackHubProtocol());
  const conn = builder.build();
  conn.on("t", (...args) => { out({ name: c.name, event: "message", args }); });
  conn.onreconnecting((err) => out({ name: c.name, event: "reconnecting", error: err ? String(err) : null }));
  conn.onreconnected((id) => out({ name: c.name, event: "reconnected", connectionId: id }));
  conn.onclose((err) => out({ name: c.name, event: "closed", error: err ? String(err) : null }));
  try {
    await conn.start();
  } catch (err) {
    out({ name: c.name, event: "error", error: String(err) });
    return;
  }
  conns.set(c.name, conn);
  // features.reconnect: the transport resumes by itself (what the server
  // granted in negotiate, WebSockets only).
  out({ name: c.name, event: "connected", connectionId: conn.connectionId, stateful: conn.connection.features.reconnect === true });
}

async function put(name, count, everyMs) {
  const conn = conns.get(name);
  for (let i = 0; i < count; i++) {
    conn.send("Put", i).catch((err) => out({ name, event: "sendError", error: String(err) }));
    await new Promise((r) => setTimeout(r, everyMs));
  }
  out({ name, event: "putDone", count });
}

(async () => {
  for (const c of spec.clients) await start(c); // in order: the tests count connections
  out({ event: "ready" });
})();

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await Promise.all([...conns.values()].map((c) => c.stop().catch(() => {})));
  process.exit(0);
}
let buf = "";
process.stdin.on("data", (d) => {
  buf += String(d);
  let i;
  while ((i = buf.indexOf("\n")) >= 0) {
    const [cmd, ...args] = buf.slice(0, i).trim().split(/\s+/);
    buf = buf.slice(i + 1);
    if (cmd === "stop") stop();
    if (cmd === "put") put(args[0], Number(args[1]), Number(args[2]));
  }
});
process.stdin.on("end", stop);
