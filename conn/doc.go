// Package conn is the per-connection state machine of an edgeplane node:
// HTTP/1.1 on the client port (POST /{hub}/negotiate answered with a
// signed, self-validating connection token; GET /{hub} WebSocket upgrades
// through github.com/gobwas/ws), WebSocket frames parsed without blocking
// (a partial frame is kept aside in a pooled buffer until the rest
// arrives), and the SignalR hub protocols, JSON and MessagePack (handshake,
// records, Ping, Close, invocations to an Upstream). The wire formats are
// internal/wsframe's (RFC 6455) and internal/hubproto's (SignalR); conn
// keeps the policy: states, limits, keep-alive and why a connection closes.
//
// The hub protocol is chosen per connection at the handshake and kept in
// two bits of its flags (protocol.go): no byte more per connection. A
// MessagePack connection gets every frame binary (the handshake response
// too, as ASP.NET Core sends it), its records split on VarInt lengths, and
// the canned records (Ping, Close per cause) precompiled in MessagePack.
// Its invocations reach the upstream with their arguments converted to
// JSON once (hubproto.MessagePackToJSON), so the upstream app reads one
// format whatever its clients speak; arguments JSON cannot express (an
// unknown extension type, NaN) are refused with a Completion error and
// counted as dropped invocations. Config.Protocols limits the protocols
// offered; negotiate lists the Binary transfer format only when a binary
// one is.
//
// Streams and client results (stream.go, results.go): a
// StreamInvocation reaches the upstream marked as one, an invocation with
// its streamIds, and the client's StreamItems, Completions and
// CancelInvocations as events of their own, in order. A Completion that
// answers a client result (Server.ExpectResult, called by the node for a
// backplane message with a return channel) goes back through
// Config.Returner instead, published by one goroutine per Server from a
// bounded queue; pending results end in an error Completion when the
// connection ends or Config.ResultTimeout passes (swept once a second),
// and there are at most Config.MaxPendingResults. A connection that
// streams keeps its open stream ids (at most 32) in a table beside it for
// its disconnected event; one that does not keeps nothing.
//
// Deadlines (handshake 15 s, keep-alive Ping after 15 s of outbound
// silence, client time-out after 30 s without a complete record from the
// client) run on one timing wheel swept once a second, not a timer per
// connection. Bytes that never complete a record (a trickled frame, a
// fragmented message that never ends, WebSocket pings) do not reset the
// client time-out, so partial input has the same deadline; and every
// frame that carries no record (control frames, fragments, empty
// messages) counts toward the message rate like a record.
//
// The handshake response is always the first record a client gets: it is
// queued before the connection joins its hub and becomes visible to
// deliveries.
//
// Bad input closes only the offending connection, with the close code
// chosen where the error is detected: 1002 protocol errors (a MessagePack
// record that does not decode too, after a SignalR Close carrying the
// decoder's error), 1007 invalid UTF-8 (in text and binary messages of a
// JSON connection: the JSON hub protocol is text either way; in text
// messages only for MessagePack), 1009 messages over MaxMessageBytes, 1008 slow clients,
// rate limits and handshake time-outs; malformed HTTP gets 400. Close
// texts that come from outside (a REST close reason) are made valid UTF-8
// before they reach the client.
//
// Stateful reconnect (resume.go): a client that negotiated it
// (useStatefulReconnect, hub protocol version 2) has its trackable
// messages numbered and kept until acknowledged, as references to the
// shared fanout frames. When its socket drops without a close, the
// connection stays in its hub for Config.ReconnectWindow; the client's
// new socket with the same token resumes it without a handshake:
// Sequence, then every unacknowledged message. The node Acks from the
// timing wheel, about once a second while messages arrive.
//
// A connection token connects once on the whole fleet: with
// Config.TokenClaims (the Redis backplane) the upgrade claims its id there
// before it is answered, from one goroutine that batches the claims off the
// event loop; Redis down or slow, the node's own check alone decides
// (token.go says why).
//
// HTTP errors answer as ASP.NET Core does, the standard reason phrase and
// an empty body (the SignalR clients show a non-empty body in place of the
// status text), with the detail for operators in the X-Edgeplane-Error
// header (ErrorHeader). With an access key, a client's token must be for
// its hub's client endpoint (auth.Claims.CheckClient) and carry exp.
//
// Azure SignalR's client endpoints, POST /client/negotiate?hub=HUB and
// GET /client/?hub=HUB, serve the hub as its own path does outside
// service mode (client_endpoint.go), for the clients a serverless app's
// negotiate redirects there. A client token's asrs.s.* claims that mean
// something here are honoured: allowed transports (htt), the handshake
// time-out (cht), closing at the user's authentication expiry
// (coae/aeo); a connection that has either of the latter keeps them in a
// side table, so the others pay nothing (client_endpoint_claims.go).
//
// With an Upstream, the upgrade request's context (headers without
// credentials, query string, remote address, claims; connctx.go) rides on
// the connected event. It waits in the connection's pooled buffers from
// the upgrade to the SignalR handshake and is never held by an
// established connection.
//
// Server-Sent Events and Long Polling (httptransport.go, sse.go,
// longpoll.go, httpsend.go) are HTTP/1.1 on the same sockets, kept alive
// between requests: a connection on them is a Conn that no socket owns,
// writing through a sink to the held SSE response or poll; between polls
// it is that Conn, its sink and the references to the shared frames
// queued for it, with the poll time-out and the reaping of a client that
// stopped polling on the timing wheel. Config.Transports chooses the
// transports and negotiate's order.
//
// conn owns client policy only: the handler, the timing wheel, connection
// tokens, the accept bucket, the per-IP table, drain and close. It
// registers connections in a fanout.Router and hands invocations to an
// Upstream that it is given; internal/node builds those and the backplane.
//
//	router := fanout.NewRouter([]string{"chat"}, backplane)
//	srv, err := conn.New(conn.Config{}, router)
//	p, err := poller.New("epoll", poller.Config{}, srv)
//	err = p.Serve(ln)
package conn
