// The browser example: an unmodified @microsoft/signalr client (its browser
// bundle) connected to an edgeplane hub. It shows what arrives, joins
// groups through the app server (which calls the REST API: the page never
// holds the access key), rejoins them after withAutomaticReconnect() has
// brought the connection back, and sends through the app server.
//
// Query parameters: protocol=json (default) | messagepack, user=NAME,
// transport=sse | longpolling (default: negotiate's first, WebSockets).
// Every event is also logged to the console as
// `edgeplane-example {"event":…}` (test/e2e/browser_test.go reads these).
"use strict";

const params = new URLSearchParams(location.search);
const protocol = params.get("protocol") || "json";
const transport = params.get("transport") || "";
const user = params.get("user") || "guest-" + Math.random().toString(36).slice(2, 8);
const joined = new Set();
let connection;

const $ = (id) => document.getElementById(id);

function report(event, fields) {
  const entry = Object.assign({ event }, fields);
  console.log("edgeplane-example " + JSON.stringify(entry));
  const li = document.createElement("li");
  li.textContent = new Date().toLocaleTimeString() + " " + event + " " + JSON.stringify(fields || {});
  $("log").prepend(li);
}

function setState(state) {
  $("state").textContent = state;
  $("state").className = "state-" + state;
  $("connection-id").textContent = connection.connectionId || "-";
}

async function post(path, body) {
  const res = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: body && JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) {
    throw new Error(`${path}: ${res.status} ${text.trim()}`);
  }
}

// join asks the app server to add this connection to group. Group
// membership belongs to a connection: a reconnect is a new connection, so
// the page joins its groups again (onreconnected below).
async function join(group) {
  const id = connection.connectionId;
  await post("join?" + new URLSearchParams({ group, connectionId: id }));
  joined.add(group);
  $("groups").textContent = [...joined].join(", ");
  report("joined", { group, connectionId: id });
}

function buildConnection(hubUrl) {
  const builder = new signalR.HubConnectionBuilder()
    .withUrl(hubUrl, {
      // Called on every (re)connect: the app server issues the token.
      accessTokenFactory: async () => {
        const res = await fetch("token?" + new URLSearchParams({ user }));
        if (!res.ok) {
          throw new Error("token: " + res.status);
        }
        return res.text();
      },
      // transport=sse|longpolling forces that transport (default: the
      // first negotiate offers, WebSockets).
      transport: { sse: signalR.HttpTransportType.ServerSentEvents, longpolling: signalR.HttpTransportType.LongPolling }[transport],
    })
    .withAutomaticReconnect() // after 0, 2, 10, 30 s, then gives up
    .configureLogging(signalR.LogLevel.Information);
  if (protocol === "messagepack") {
    builder.withHubProtocol(new signalR.protocols.msgpack.MessagePackHubProtocol());
  } else if (protocol !== "json") {
    throw new Error(`unknown protocol ${JSON.stringify(protocol)}: json or messagepack`);
  }
  return builder.build();
}

async function main() {
  $("protocol").textContent = protocol;
  const config = await (await fetch("config.json")).json();
  connection = buildConnection(config.hubUrl);
  connection.on("message", (...args) => report("message", { args }));
  connection.onreconnecting((err) => {
    setState("reconnecting");
    report("reconnecting", { error: err ? String(err) : null });
  });
  connection.onreconnected(async (id) => {
    setState("connected");
    report("reconnected", { connectionId: id });
    for (const group of joined) {
      try {
        await join(group);
      } catch (err) {
        report("error", { error: "rejoin " + group + ": " + err });
      }
    }
  });
  connection.onclose((err) => {
    setState("closed");
    report("closed", { error: err ? String(err) : null });
  });

  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    join($("group").value).catch((err) => report("error", { error: String(err) }));
  });
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    post("send", { text: $("text").value, group: $("send-group").value })
      .then(() => report("sent", { text: $("text").value }))
      .catch((err) => report("error", { error: String(err) }));
  });

  await connection.start();
  setState("connected");
  report("connected", { connectionId: connection.connectionId, protocol });
}

main().catch((err) => {
  if (connection) {
    setState("closed");
  }
  report("error", { error: String(err) });
});
