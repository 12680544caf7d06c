// Package conn is the per-connection state machine of an edgeplane node:
// HTTP/1.1 on the client port (POST /{hub}/negotiate answered with a
// signed, self-validating connection token; GET /{hub} WebSocket upgrades
// through github.com/gobwas/ws), WebSocket frames parsed without blocking
// (a partial frame is kept aside in a pooled buffer until the rest
// arrives), and the SignalR JSON hub protocol (handshake, records split on
// 0x1e, Ping, Close, invocations to an Upstream). The wire formats are
// internal/wsframe's (RFC 6455) and internal/hubproto's (SignalR); conn
// keeps the policy: states, limits, keep-alive and why a connection closes.
//
// Deadlines (handshake 15 s, keep-alive Ping after 15 s of outbound
// silence, client time-out after 30 s of inbound silence) run on one
// timing wheel swept once a second, not a timer per connection.
//
// Bad input closes only the offending connection, with the close code
// chosen where the error is detected: 1002 protocol errors, 1007 invalid
// UTF-8, 1009 messages over MaxMessageBytes, 1008 slow clients and
// handshake time-outs; malformed HTTP gets 400.
//
// HTTP errors answer as ASP.NET Core does, the standard reason phrase and
// an empty body (the SignalR clients show a non-empty body in place of the
// status text), with the detail for operators in the X-Edgeplane-Error
// header (ErrorHeader). With an access key, a client's token must be for
// its hub's client endpoint (auth.Claims.CheckClient) and carry exp.
//
// With an Upstream, the upgrade request's context (headers without
// credentials, query string, remote address, claims; connctx.go) rides on
// the connected event. It waits in the connection's pooled buffers from
// the upgrade to the SignalR handshake and is never held by an
// established connection.
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
