// drive.js opens one page in Debian's chromium with playwright-core and
// reports, one JSON object a line on stdout:
//   {"source":"page",…}     the example page's own events (console lines
//                           `edgeplane-example {…}`)
//   {"source":"ws",…}       the page's WebSockets as the DevTools protocol
//                           sees them: handshake request and response
//                           headers, frames received and sent (opcode)
//   {"source":"console",…}  other console output (the SignalR client's log)
//   {"source":"driver",…}   launched, loaded, done/failed operations,
//                           page errors, failed requests
// Commands arrive as JSON lines on stdin: {"id":1,"op":"fill","selector":…,
// "value":…} or {"id":2,"op":"click","selector":…}; each is answered with
// {"source":"driver","event":"done","id":…} or "failed" with the error. The
// browser closes when stdin ends.
//
// Usage: node drive.js '{"url":…,"executablePath":"/usr/bin/chromium"}'
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

const spec = JSON.parse(process.argv[2]);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const PREFIX = "edgeplane-example ";

async function main() {
  const args = [
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ];
  if (process.getuid && process.getuid() === 0) {
    args.push("--no-sandbox"); // chromium refuses to run its sandbox as root
  }
  const browser = await chromium.launch({ executablePath: spec.executablePath, headless: true, args, timeout: 60000 });
  emit({ source: "driver", event: "launched", version: browser.version() });
  const page = await browser.newPage();

  page.on("console", (msg) => {
    const text = msg.text();
    if (text.startsWith(PREFIX)) {
      emit(Object.assign({ source: "page" }, JSON.parse(text.slice(PREFIX.length))));
    } else {
      emit({ source: "console", event: msg.type(), text });
    }
  });
  page.on("pageerror", (err) => emit({ source: "driver", event: "pageerror", error: String(err) }));
  page.on("requestfailed", (req) =>
    emit({ source: "driver", event: "requestfailed", url: req.url(), error: req.failure() && req.failure().errorText }));

  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const urls = new Map();
  cdp.on("Network.webSocketCreated", (e) => {
    urls.set(e.requestId, e.url);
    emit({ source: "ws", event: "created", ws: e.requestId, url: e.url });
  });
  cdp.on("Network.webSocketWillSendHandshakeRequest", (e) =>
    emit({ source: "ws", event: "request", ws: e.requestId, url: urls.get(e.requestId), headers: e.request.headers }));
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) =>
    emit({ source: "ws", event: "response", ws: e.requestId, status: e.response.status, headers: e.response.headers }));
  const frame = (event) => (e) =>
    emit({ source: "ws", event, ws: e.requestId, opcode: e.response.opcode, payload: e.response.opcode === 1 ? e.response.payloadData : undefined });
  cdp.on("Network.webSocketFrameReceived", frame("frameReceived"));
  cdp.on("Network.webSocketFrameSent", frame("frameSent"));
  cdp.on("Network.webSocketClosed", (e) => emit({ source: "ws", event: "closed", ws: e.requestId }));

  await page.goto(spec.url);
  emit({ source: "driver", event: "loaded" });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const cmd = JSON.parse(line);
    try {
      switch (cmd.op) {
        case "fill":
          await page.fill(cmd.selector, cmd.value, { timeout: 10000 });
          break;
        case "click":
          await page.click(cmd.selector, { timeout: 10000 });
          break;
        default:
          throw new Error("unknown op " + cmd.op);
      }
      emit({ source: "driver", event: "done", id: cmd.id });
    } catch (err) {
      emit({ source: "driver", event: "failed", id: cmd.id, error: String(err) });
    }
  }
  await browser.close();
}

main().catch((err) => {
  emit({ source: "driver", event: "fatal", error: String(err && err.stack || err) });
  process.exit(1);
});
