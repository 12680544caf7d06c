package conn

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The HTTP transports, Server-Sent Events (sse.go) and Long Polling
// (longpoll.go), and the POST that carries their client-to-server
// messages (httpsend.go), as TransportProtocols.md of dotnet/aspnetcore
// describes them.
//
// A connection on an HTTP transport is a Conn of its own, the logical
// connection, that no socket owns: it does the handshake, records,
// limits, its hub membership and its close causes exactly as a WebSocket
// connection, and writes through an httpSink (its poller.Conn) that turns
// the WebSocket frames it is given back into the messages they carry and
// hands them to the transport's response: the open SSE stream, or the
// held long poll (kept in the sink between polls). The sockets the
// requests come on are ordinary sessions: HTTP/1.1 with keep-alive
// (stKeep) between requests, and stHeld while their response is a held
// poll or an SSE stream. Nothing is a goroutine or a timer: the poll
// time-out and the reaping of a client that stopped polling run on the
// timing wheel, on the logical connection.
//
// The connection is created by the first GET with a negotiated token and
// is found again by id in Server.httpConns: the HTTP transports need the
// client's requests to reach the node that holds it (sticky sessions, as
// ASP.NET Core needs), WebSockets do not.

// Socket states of the HTTP transports (beside those of conn.go).
const (
	stKeep uint32 = 16 + iota // HTTP/1.1 keep-alive: reading the next request
	stHeld                    // the response is a held long poll or an SSE stream
)

// Conn.flags bits of a logical connection on an HTTP transport.
const (
	flSSE      uint32 = 1 << 28
	flLongPoll uint32 = 1 << 29
	flHTTPConn        = flSSE | flLongPoll
)

// Transport names, as negotiate lists them.
const (
	tWebSockets = "WebSockets"
	tSSE        = "ServerSentEvents"
	tLongPoll   = "LongPolling"
)

// transportSet is the transports a server serves, in negotiate's order.
type transportSet []string

// parseTransports reads Config.Transports; none means all three.
func parseTransports(names []string) (transportSet, error) {
	if len(names) == 0 {
		return transportSet{tWebSockets, tSSE, tLongPoll}, nil
	}
	var set transportSet
	for _, n := range names {
		var t string
		switch strings.ToLower(strings.TrimSpace(n)) {
		case "websockets", "websocket", "ws":
			t = tWebSockets
		case "serversentevents", "sse":
			t = tSSE
		case "longpolling", "longpoll", "lp":
			t = tLongPoll
		default:
			return nil, fmt.Errorf("conn: unknown transport %q (WebSockets, ServerSentEvents, LongPolling)", n)
		}
		if !set.has(t) {
			set = append(set, t)
		}
	}
	return set, nil
}

func (set transportSet) has(t string) bool {
	for _, x := range set {
		if x == t {
			return true
		}
	}
	return false
}

// list is negotiate's availableTransports: SSE only with a text protocol.
func (set transportSet) list(p protocolSet) []transport {
	formats := p.transferFormats()
	var out []transport
	for _, t := range set {
		f := formats
		if t == tSSE {
			if formats[0] != "Text" {
				continue
			}
			f = []string{"Text"}
		}
		out = append(out, transport{t, f})
	}
	return out
}

// httpConnTable finds the logical connections of the HTTP transports by
// connection id.
type httpConnTable struct {
	mu sync.Mutex
	m  map[string]*Conn
}

func (t *httpConnTable) get(id string) *Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

// add inserts c unless its id is there already.
func (t *httpConnTable) add(c *Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*Conn)
	}
	if _, dup := t.m[c.entry.ID()]; dup {
		return false
	}
	t.m[c.entry.ID()] = c
	return true
}

func (t *httpConnTable) remove(c *Conn) {
	t.mu.Lock()
	if t.m[c.entry.ID()] == c {
		delete(t.m, c.entry.ID())
	}
	t.mu.Unlock()
}

// Len is the number of connections on the HTTP transports.
func (t *httpConnTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// isWebSocketUpgrade reports whether req asks for the WebSockets transport.
func isWebSocketUpgrade(req *http.Request) bool {
	return req.Method == http.MethodGet && strings.EqualFold(req.Header.Get("Upgrade"), "websocket")
}

// wantsSSE reports whether a GET asks for the SSE transport.
func wantsSSE(req *http.Request) bool {
	return strings.Contains(req.Header.Get("Accept"), "text/event-stream")
}

// httpTransport serves a request on a hub's path that is not a WebSocket
// upgrade: GET (SSE or a poll), POST (client messages), DELETE (end a
// long-polling connection), OPTIONS (CORS preflight).
func (c *Conn) httpTransport(req *http.Request, hubName string) {
	c.touchRead() // an HTTP request: the keep-alive idle time-out counts from here
	if c.bufs != nil && c.state.Load() == stKeep {
		c.bufs.link = nil // the last poll on this socket was answered
	}
	switch req.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	case http.MethodOptions:
		c.respondKeep("transport", http.StatusNoContent, "", nil, c.corsHeaders(req, true))
		return
	default:
		c.httpError(req, "transport", http.StatusMethodNotAllowed, "use GET, POST or DELETE, or a WebSocket upgrade")
		return
	}
	if req.Method == http.MethodGet {
		t := tLongPoll
		if wantsSSE(req) {
			t = tSSE
		}
		if !c.srv.served.has(t) {
			c.httpError(req, "transport", http.StatusNotFound, t+" transport is not served here (--transports)")
			return
		}
	}
	tok := req.URL.Query().Get("id")
	if tok == "" {
		c.httpError(req, "transport", http.StatusBadRequest, "connection id required")
		return
	}
	claims, err := c.authenticate(req, hubName)
	if err != nil {
		c.unauthorized(req, "transport", err)
		return
	}
	ti, err := c.srv.signer.open(hubName, tok, time.Now())
	if err != nil && !errors.Is(err, ErrTokenExpired) {
		c.respondNoConnection(req, err.Error())
		return
	}
	id := encodeID(ti.id)
	lc := c.srv.httpConns.get(id)
	if lc != nil && claims != nil && claims.UserID() != lc.entry.User() {
		c.httpError(req, "transport", http.StatusForbidden, "the access token's user is not the connection's")
		return
	}
	switch req.Method {
	case http.MethodPost:
		if lc == nil {
			c.respondNoConnection(req, "no connection with that id")
			return
		}
		c.post(req, lc)
		return
	case http.MethodDelete:
		if lc == nil || !lc.has(flLongPoll) {
			c.respondNoConnection(req, "no long-polling connection with that id")
			return
		}
		lc.sink().delete()
		c.srv.M.httpReqs("delete", http.StatusAccepted).Inc()
		c.respondKeep("", http.StatusAccepted, "text/plain", nil, c.corsHeaders(req, false))
		return
	}
	sse := wantsSSE(req)
	if lc == nil {
		if err != nil { // expired: a new connection needs a fresh token
			c.respondNoConnection(req, err.Error())
			return
		}
		if c.srv.hubLookup(hubName, id) || c.srv.wasUsed(ti.id) {
			c.respondNoConnection(req, ErrTokenReused.Error())
			return
		}
		t := tLongPoll
		if sse {
			t = tSSE
		}
		policy, ok := c.checkPolicy(req, claims, t, "transport") // the token's asrs.s.* claims (client_endpoint_claims.go)
		if !ok {
			return
		}
		if lc = c.newHTTPConn(req, hubName, id, ti.exp, claims, sse); lc == nil {
			c.respondNoConnection(req, ErrTokenReused.Error())
			return
		}
		lc.applyPolicy(policy)
		if sse {
			c.openSSE(req, lc)
		} else {
			c.srv.M.httpReqs("poll", http.StatusOK).Inc()
			lc.sink().firstPoll()
			c.respondKeep("", http.StatusOK, "application/octet-stream", nil, c.corsHeaders(req, false))
		}
		return
	}
	if sse || !lc.has(flLongPoll) {
		// An SSE stream is opened once, with the connection.
		c.httpError(req, "transport", http.StatusBadRequest, "cannot change transports mid-connection")
		return
	}
	lc.sink().newPoll(c, c.corsHeaders(req, false), pollKey(req.URL.RawQuery))
}

// respondNoConnection answers 404 as ASP.NET Core does for an unknown or
// terminated connection.
func (c *Conn) respondNoConnection(req *http.Request, detail string) {
	c.respond("transport", http.StatusNotFound, "text/plain", []byte("No Connection with that ID"), errorHeader(detail)+c.corsHeaders(req, false))
}

// hubLookup reports whether id is a registered connection of hub.
func (s *Server) hubLookup(hub, id string) bool {
	h := s.router.Hub(hub)
	return h != nil && h.Lookup(id)
}

// newHTTPConn creates the logical connection of an HTTP transport, in
// the handshake state, on the wheel with the handshake deadline. nil if
// the id is taken (two first requests racing).
func (c *Conn) newHTTPConn(req *http.Request, hubName, id string, exp time.Time, claims *auth.Claims, sse bool) *Conn {
	s := c.srv
	lc := &Conn{srv: s}
	sk := &httpSink{lc: lc, addr: c.pc.RemoteAddr()}
	lc.pc = sk
	copy(lc.idBuf[:], id)
	var user string
	if claims != nil {
		user = claims.UserID()
	}
	lc.entry.Init(lc, unsafe.String(&lc.idBuf[0], len(lc.idBuf)), user)
	lc.hub = s.router.Hub(hubName)
	if sse {
		lc.flags.Or(flSSE)
		sk.stream = c
	} else {
		lc.flags.Or(flLongPoll)
	}
	if !exp.IsZero() {
		lc.tokenExp = int32(exp.Unix() - s.epoch)
	}
	if s.cfg.Upstream != nil && s.cfg.ContextMaxBytes > 0 {
		lc.buffers().connect = c.connectContext(req, claims, s.cfg.ContextMaxBytes)
	}
	now := s.wheel.Now()
	lc.opened = int32(now)
	lc.lastRead.Store(int32(now))
	lc.lastWrite.Store(int32(now))
	lc.state.Store(stHandshake)
	if !s.httpConns.add(lc) {
		return nil
	}
	s.M.accepted.Inc()
	s.wheel.add(lc, now+min(s.handshakeSec, s.keepAliveSec))
	return lc
}

// sink is the logical connection's httpSink.
func (c *Conn) sink() *httpSink { return c.pc.(*httpSink) }

// respondKeep writes a complete response and keeps the socket for the
// next request (HTTP/1.1 keep-alive): the socket's idle time-out is the
// client time-out.
func (c *Conn) respondKeep(route string, code int, ctype string, body []byte, extra string) {
	if route != "" {
		c.srv.M.httpReqs(route, code).Inc()
	}
	c.keepAlive() // before the response: the client's next request may follow it at once
	c.pc.Send(responseHead(code, ctype, len(body), extra))
	if len(body) > 0 {
		c.pc.Send(body)
	}
}

// keepAlive makes a socket read its next request (after a response),
// with the client time-out as its idle time-out.
func (c *Conn) keepAlive() {
	for {
		st := c.state.Load()
		if st != stHTTP && st != stHeld && st != stKeep {
			return
		}
		if c.state.CompareAndSwap(st, stKeep) {
			break
		}
	}
	c.srv.wheel.add(c, c.srv.wheel.Now()+c.srv.timeoutSec)
}

// responseHead is a response's status line and headers, with
// Content-Length n (n < 0: none, the body ends with the connection).
func responseHead(code int, ctype string, n int, extra string) []byte {
	b := make([]byte, 0, 128+len(extra))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reasonPhrase(code)...)
	b = append(b, "\r\n"...)
	if ctype != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, ctype...)
		b = append(b, "\r\n"...)
	}
	if n >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, extra...)
	return append(b, "\r\n"...)
}

// keepTick is a keep-alive socket's tick: closed when idle for the
// client time-out.
func (c *Conn) keepTick(now int64) int64 {
	lr := int64(c.lastRead.Load())
	if now-lr >= c.srv.timeoutSec {
		c.shutdown(causeHTTPDone, nil)
		return 0
	}
	return lr + c.srv.timeoutSec
}

// heldClosed tells the logical connection that a socket holding one of
// its responses closed (from the socket's OnClose).
func (c *Conn) heldClosed(err error) {
	if c.bufs == nil || c.bufs.link == nil {
		return
	}
	lc := c.bufs.link
	c.bufs.link = nil
	lc.sink().socketClosed(c, err)
}

// httpSink is a logical connection's poller.Conn: what the connection
// layer sends (WebSocket frames) goes, as the messages they carry, to
// the transport's response.
//
// Lock order: httpSink.mu → wheel.mu. poller.Conn methods never block.
type httpSink struct {
	lc     *Conn
	addr   net.Addr
	stream *Conn // SSE: the socket of the event stream (fixed)

	posting atomic.Bool // a POST is being processed (a second one gets 409)

	mu      sync.Mutex
	ended   bool     // the logical connection is finished
	closing bool     // Shutdown: the final messages go out, then it ends
	polled  bool     // long polling: the first poll was answered
	poll    *Conn    // long polling: the socket of the held poll, nil between polls
	cors    string   // the held poll's CORS headers
	since   int64    // long polling: wheel second the held poll began, or the last one ended
	queue   [][]byte // long polling: messages waiting for a poll (shared, never modified)
	qbytes  int

	// Long polling: a poll sent again (longpoll.go, "Polls sent again").
	pollKey uint32    // the held poll's key
	keys    [3]uint32 // the keys of the latest new polls, newest first
	sentKey uint32    // the key of the last poll answered with messages
	sentOn  *Conn     // the socket that answer went out on
	sent    [][]byte  // the messages it carried, until a newer poll comes
}

// payloads appends the data messages of the server frames in b (the
// connection layer's output) to dst; close frames are left out.
func payloads(dst [][]byte, b []byte) [][]byte {
	for len(b) > 0 {
		f, n, err := wsframe.ParseFrame(b, int64(len(b)))
		if err != nil || n == 0 {
			return dst
		}
		if f.Op == wsframe.OpText || f.Op == wsframe.OpBinary {
			dst = append(dst, f.Payload)
		}
		b = b[n:]
	}
	return dst
}

// payload is the message of one server data frame.
func payload(frame []byte) []byte {
	f, n, err := wsframe.ParseFrame(frame, int64(len(frame)))
	if err != nil || n == 0 {
		return nil
	}
	return f.Payload
}

// Send implements poller.Conn.
func (s *httpSink) Send(frame []byte) error {
	if s.lc.has(flSSE) {
		return s.sendSSE(payload(frame))
	}
	return s.enqueue(payload(frame))
}

// Shutdown implements poller.Conn: the final messages go out (SSE: on
// the stream, which then closes; long polling: to the held poll or the
// next one), then the connection ends.
func (s *httpSink) Shutdown(final []byte) {
	msgs := payloads(nil, final)
	if s.lc.has(flSSE) {
		s.shutdownSSE(msgs)
		return
	}
	s.shutdownLongPoll(msgs)
}

// Close implements poller.Conn.
func (s *httpSink) Close() error { s.Shutdown(nil); return nil }

// QueuedBytes implements poller.Conn.
func (s *httpSink) QueuedBytes() int {
	if s.stream != nil {
		return s.stream.pc.QueuedBytes()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.qbytes
}

// RemoteAddr implements poller.Conn: the address of the first request.
func (s *httpSink) RemoteAddr() net.Addr { return s.addr }

// end finishes the logical connection (once).
func (s *httpSink) end(err error) {
	s.mu.Lock()
	done := s.ended
	s.ended = true
	clear(s.queue)
	s.queue, s.qbytes = nil, 0
	s.forgetSent()
	s.mu.Unlock()
	if done {
		return
	}
	s.lc.srv.httpConns.remove(s.lc)
	s.lc.finish(err)
}

// op is the frame type a POST body is handed to the SignalR layer as: a
// binary message, so that a MessagePack body and a handshake followed by
// MessagePack records pass; the JSON protocol checks UTF-8 either way.
const postOp = wsframe.OpBinary

// HTTPConns is the number of connections on the SSE and Long Polling
// transports.
func (s *Server) HTTPConns() int { return s.httpConns.Len() }

// HeldPolls is the number of long polls held open now.
func (s *Server) HeldPolls() int {
	s.httpConns.mu.Lock()
	all := make([]*Conn, 0, len(s.httpConns.m))
	for _, c := range s.httpConns.m {
		all = append(all, c)
	}
	s.httpConns.mu.Unlock()
	n := 0
	for _, c := range all {
		sk := c.sink()
		sk.mu.Lock()
		if sk.poll != nil {
			n++
		}
		sk.mu.Unlock()
	}
	return n
}
