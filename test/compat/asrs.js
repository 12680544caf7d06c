// Drives unmodified @microsoft/signalr clients against an app in Azure
// SignalR Service Default mode (the Go fake of the SDK, internal/sdkfake,
// in front of an edgeplane node in --service-mode): each client
// negotiates with the app, follows its redirect to the node and talks to
// the app's hub through it. Used by test/e2e/asrs_test.go. Usage:
//   node asrs.js '<json spec>'
// spec: {"base":"http://127.0.0.1:PORT","clients":[{"name":"a","hub":"ChatHub",
//        "query":"user=alice","targets":["t"],"results":{"ask":"answer"},
//        "reconnect":false,"protocol":"json"}]}
//   base: the app (its negotiate); hub: the hub's path there; query:
//   appended to the hub URL; targets: handlers that print each message;
//   results: handlers that answer client-result invocations with the
//   given value (and print them); reconnect: withAutomaticReconnect([0]);
//   protocol: "messagepack" uses MessagePackHubProtocol from
//   @microsoft/signalr-protocol-msgpack (default JSON).
// Commands on stdin, one JSON line each:
//   {"name":"a","invoke":{"target":"Echo","args":[1],"tag":"t1"}}
//   {"name":"a","send":{"target":"ToAll","args":["x"]}}       (no result)
//   {"name":"a","stop":true}
//   "stop" ends everything.
// Prints one JSON line per event on stdout:
//   {"name":"a","event":"connected","connectionId":"..."}
//   {"name":"a","event":"message","target":"t","args":[...]}
//   {"name":"a","event":"result","target":"ask","args":[...]}   (answered a client result)
//   {"name":"a","event":"invokeOk","tag":"t1","args":[result]}
//   {"name":"a","event":"invokeError","tag":"t1","error":"..."}
//   {"name":"a","event":"reconnecting"|"reconnected"|"closed","error":...}
//   {"name":"a","event":"error","error":"..."}   (connect failed)
//   {"event":"ready"} once every client connected or failed.
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
const readline = require("readline");

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const conns = {};

async function start(c) {
  let b = new signalR.HubConnectionBuilder()
    .withUrl(`${spec.base}/${c.hub || "ChatHub"}${c.query ? "?" + c.query : ""}`)
    .configureLogging(signalR.LogLevel.Warning);
  if (c.reconnect) b = b.withAutomaticReconnect([0, 500, 1000]);
  if (c.protocol === "messagepack") b = b.withHubProtocol(new MessagePackHubProtocol());
  const conn = b.build();
  for (const t of c.targets || ["t"]) {
    conn.on(t, (...args) => { out({ name: c.name, event: "message", target: t, args }); });
  }
  for (const [t, v] of Object.entries(c.results || {})) {
    conn.on(t, (...args) => {
      out({ name: c.name, event: "result", target: t, args });
      return v;
    });
  }
  conn.onreconnecting((err) => out({ name: c.name, event: "reconnecting", error: err ? String(err) : null }));
  conn.onreconnected((id) => out({ name: c.name, event: "reconnected", connectionId: id }));
  conn.onclose((err) => out({ name: c.name, event: "closed", error: err ? String(err) : null }));
  try {
    await conn.start();
  } catch (err) {
    out({ name: c.name, event: "error", error: String(err) });
    return;
  }
  conns[c.name] = conn;
  out({ name: c.name, event: "connected", connectionId: conn.connectionId });
}

async function command(cmd) {
  const conn = conns[cmd.name];
  if (!conn) {
    out({ name: cmd.name, event: "invokeError", tag: cmd.invoke && cmd.invoke.tag, error: "no such client" });
    return;
  }
  if (cmd.stop) {
    await conn.stop();
    return;
  }
  if (cmd.send) {
    await conn.send(cmd.send.target, ...(cmd.send.args || [])).catch(() => {});
    return;
  }
  const inv = cmd.invoke;
  try {
    const result = await conn.invoke(inv.target, ...(inv.args || []));
    out({ name: cmd.name, event: "invokeOk", tag: inv.tag, args: [result === undefined ? null : result] });
  } catch (err) {
    out({ name: cmd.name, event: "invokeError", tag: inv.tag, error: String(err) });
  }
}

let stopping = false;
async function stopAll() {
  if (stopping) return;
  stopping = true;
  await Promise.all(Object.values(conns).map((c) => c.stop().catch(() => {})));
  process.exit(0);
}

(async () => {
  await Promise.all(spec.clients.map(start));
  out({ event: "ready" });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    line = line.trim();
    if (line === "stop") {
      stopAll();
      return;
    }
    if (line) command(JSON.parse(line));
  });
  rl.on("close", stopAll);
})();
