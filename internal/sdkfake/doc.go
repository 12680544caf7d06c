// Package sdkfake is a Go fake of an ASP.NET Core app server running the
// Microsoft.Azure.SignalR SDK in Default mode (AddSignalR().AddAzureSignalR):
// the peer edgeplane's service mode is tested against, since the real SDK
// cannot run here (no .NET). It hosts hubs whose methods are Go funcs,
// keeps ConnectionsPerHub server connections per hub to the service,
// serves the app's negotiate redirect, and speaks the service protocol
// (internal/serviceproto) and the hub protocols (internal/hubproto) as
// the SDK does.
//
//	app, _ := sdkfake.Start(sdkfake.Config{Endpoint: "http://127.0.0.1:8080", AccessKey: key,
//		Hubs: []*sdkfake.Hub{{Name: "ChatHub", Methods: map[string]sdkfake.Method{
//			"Echo": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { return args[0], nil },
//		}}}})
//	defer app.Close()
//	negotiate, _ := app.ListenNegotiate("127.0.0.1:0") // clients: withUrl(negotiate + "/ChatHub")
//	app.Hub("ChatHub").All().Send("news", "hello")
//
// # What it follows (read in the SDK's source)
//
//   - Connecting: ws(s)://{endpoint}/server/?hub={lower-cased hub, app
//     name prefix}&cid={GUID}; Authorization: Bearer JWT (HS256 or HS512
//     keyed with the access key's UTF-8 bytes, aud
//     {scheme}://{host}/server/?hub={hub} without the port, nameid = the
//     server id), X-ASRS-Server-Id, Asrs-User-Agent (ConnectionFactory,
//     ServiceEndpointProvider, SignalRJwtSecurityTokenHandler).
//   - The 7-item HandshakeRequest first; a HandshakeResponse within 15 s
//     or the attempt fails; any other message first is an error; an error
//     text fails it (ServiceConnectionBase.HandshakeAsync). Failed and
//     dropped connections come back after 1, 2, 4 … 32 s, then each
//     minute, plus up to 1 s (GetRetryDelay).
//   - Keep-alive: a ping ["#clientInHub", n, "#client", m] only when
//     something is received and the last ping went 5 s ago
//     (TrySendPingAsync); the connection drops after 30 s without
//     receiving anything; an "echo" ping is written back, "offline" drops
//     that instance's clients; ["status","1"] every 10 s on some
//     connection.
//   - Clients: OpenConnection registers one; a client without the ext
//     protocol is never served (current SDKs' GetProtocol(null) throws).
//     Its first ConnectionData is its handshake, answered `{}` + 0x1e;
//     then one record per ConnectionData typed Handshake, Invocation or
//     Other (LegacyRawData: untyped, as the March-2024 snapshot). The
//     hub's keep-alive Ping after 15 s of silence, abort after 30 s
//     without a record. When the app ends a client (Context.Abort, the
//     client's Close, an error) it sends CloseConnection (nil error
//     text for a normal end) after OnDisconnected; when the service
//     closes one, nothing goes back.
//   - Sends: multicast payloads for every protocol of Config.Protocols
//     (DefaultHubMessageSerializer); Clients.Client of a client this app
//     hosts gets its protocol only on its own connection
//     (ServiceLifetimeManager.SendConnectionAsync); inside a hub method
//     writes go to the client's connection, elsewhere to a random one
//     (WriteToScopedOrRandomAvailableConnection).
//   - Acks: ids from 1 per hub container, shared by its connections; an
//     Ack Ok is true, NotFound false, none within 10 s (checked every
//     3 s) a time-out error (AckHandler).
//   - Client results: ClientInvocation with the caller's server id;
//     the client's Completion completes it on the host server, which
//     sends ClientCompletion (empty payload when it is the caller, the
//     Completion record when routed) with its own server id
//     (ServiceLifetimeManager.SetConnectionResultAsync writes _callerId,
//     the writer's name); ErrorCompletion fails it.
//
// # What it infers or leaves out
//
//   - Service-side behaviour is not the SDK's to define: where the
//     reference marks a point [inferred] (claims mapped to long names,
//     headers and query forwarded) the fake only reads what it gets.
//   - Leaves out: streaming hub methods (answered with an error),
//     graceful shutdown (fin pings, migration), stateful reconnect
//     (ConnectionReconnect), Entra ID (AccessKeyRequest), OnDemand
//     connections on "target" pings, multiple endpoints, and the exact
//     texts of ASP.NET's less common errors.
package sdkfake
