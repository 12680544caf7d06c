// Runs probes that fail on purpose with the unmodified @microsoft/signalr
// client and prints, one JSON line each, the error message the client
// surfaces to the app, for test/e2e to compare with what ASP.NET Core's
// answers produce. Usage:
//   node errors.js '<json spec>'
// spec: {"probes":[
//   {"name":"a","start":{"url":"http://127.0.0.1:PORT/chat","accessToken":"...","headers":{...}}},
//   {"name":"b","http":{"method":"GET","url":"...","content":"...","headers":{...}}},
//   {"name":"keep","start":{...},"keep":true}   (stays connected until the end)
// ]}
// Prints {"name":"a","ok":false,"error":"<message>","statusCode":N} (or
// "ok":true), then {"event":"done"}. Probes run one after the other.
const signalR = require("@microsoft/signalr");

const spec = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const kept = [];

async function probe(p) {
  if (p.start) {
    const opts = { headers: p.start.headers || {} };
    if (p.start.accessToken) opts.accessTokenFactory = () => p.start.accessToken;
    if (p.start.skipNegotiation) {
      opts.skipNegotiation = true;
      opts.transport = signalR.HttpTransportType.WebSockets;
    }
    const conn = new signalR.HubConnectionBuilder()
      .withUrl(p.start.url, opts)
      .configureLogging(signalR.LogLevel.None)
      .build();
    await conn.start();
    if (p.keep) kept.push(conn);
    else await conn.stop();
    return;
  }
  const client = new signalR.DefaultHttpClient(signalR.NullLogger.instance);
  await client.send({ method: p.http.method, url: p.http.url, content: p.http.content, headers: p.http.headers || {} });
}

(async () => {
  for (const p of spec.probes) {
    try {
      await probe(p);
      out({ name: p.name, ok: true });
    } catch (err) {
      out({ name: p.name, ok: false, error: err.message, statusCode: err.statusCode || 0 });
    }
  }
  out({ event: "done" });
  await Promise.all(kept.map((c) => c.stop().catch(() => {})));
  process.exit(0);
})();
