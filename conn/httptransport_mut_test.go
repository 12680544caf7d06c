package conn

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tests of the HTTP transports (SSE, Long Polling, their POST, the
// keep-alive sockets) in package conn, for what mutation testing
// (docs/MUTATION.md, issue 19) found pinned down only by internal/node and
// test/e2e: answers, what is delivered and when, what ends a connection,
// and the deadlines on the (stopped) wheel.

// htCfg has every HTTP deadline different, to tell them apart on the
// wheel: handshake 15 s, keep-alive 10 s, client time-out 30 s, reconnect
// window 40 s, poll time-out 20 s.
var htCfg = Config{
	HandshakeTimeout:  15 * time.Second,
	KeepAliveInterval: 10 * time.Second,
	ClientTimeout:     30 * time.Second,
	ReconnectWindow:   40 * time.Second,
	PollTimeout:       20 * time.Second,
}

// htDue is the second c is scheduled for on s's stopped wheel, 0 if it is
// not on it.
func htDue(s *Server, c *Conn) int64 {
	s.wheel.mu.Lock()
	defer s.wheel.mu.Unlock()
	sl := int64(c.wslot)
	if sl == 0 || sl == slotTicking {
		return 0
	}
	for at := s.wheel.swept + 1; at < s.wheel.swept+wheelSlots; at++ {
		if at%wheelSlots == sl-1 {
			return at
		}
	}
	return 0
}

// htConn is a connection on an HTTP transport as a test drives it.
type htConn struct {
	s      *Server
	tok    string // the negotiated connection token
	target string // the hub path with ?id=
	lc     *Conn  // the logical connection, once the first GET made it
}

// htNegotiate negotiates a connection of s.
func htNegotiate(t *testing.T, s *Server) *htConn {
	t.Helper()
	resp, body := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &n) != nil {
		t.Fatalf("negotiate: %d %q", resp.StatusCode, body)
	}
	return &htConn{s: s, tok: n.ConnectionToken, target: "/chat?id=" + n.ConnectionToken}
}

// find looks the logical connection up by its token.
func (h *htConn) find(t *testing.T) *Conn {
	t.Helper()
	ti, err := h.s.signer.open("chat", h.tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return h.s.httpConns.get(encodeID(ti.id))
}

func (h *htConn) get() string { return "GET " + h.target + " HTTP/1.1\r\nHost: x\r\n\r\n" }

func (h *htConn) post(body string) string {
	return "POST " + h.target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func (h *htConn) del() string { return "DELETE " + h.target + " HTTP/1.1\r\nHost: x\r\n\r\n" }

const htHandshake = `{"protocol":"json","version":1}` + "\x1e"

// htLongPoll opens a long-polling connection: first poll, and with
// handshake the handshake POST and the poll that gets its answer.
func htLongPoll(t *testing.T, s *Server, handshake bool) *htConn {
	t.Helper()
	h := htNegotiate(t, s)
	if resp, _ := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	if h.lc = h.find(t); h.lc == nil {
		t.Fatal("no connection after the first poll")
	}
	if !handshake {
		return h
	}
	if resp, _ := exchange(t, s, h.post(htHandshake)); resp.StatusCode != http.StatusOK {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	if resp, body := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK || body != "{}\x1e" {
		t.Fatalf("poll after the handshake: %d %q", resp.StatusCode, body)
	}
	if h.lc.state.Load() != stOpen {
		t.Fatalf("state %d after the handshake", h.lc.state.Load())
	}
	return h
}

// htSSE opens an SSE connection; its stream is on the returned socket.
func htSSE(t *testing.T, s *Server) (*htConn, *pollSocket) {
	t.Helper()
	h := htNegotiate(t, s)
	p := openPollSocket(t, s)
	p.poll("GET " + h.target + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	if !bytes.HasPrefix(p.fc.output(), []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"+sseHeaders+"\r\n:\r\n")) { // no Content-Length
		t.Fatalf("SSE GET: %q", p.fc.output())
	}
	if h.lc = h.find(t); h.lc == nil || !h.lc.has(flSSE) {
		t.Fatal("no SSE connection after the GET")
	}
	return h, p
}

// closeRecordOf is the JSON Close record the client reads for cause c.
func closeRecordOf(c *cause) string {
	return `{"type":7,"error":"` + c.text + `","allowReconnect":` + strconv.FormatBool(c.reconnect) + "}\x1e"
}

// TestHTTPTransportsNotServed: with --transports ws, a GET on a hub's path
// (a poll, or an SSE stream by its Accept) is 404 naming the transport, and
// the transport names are read case-blind, each once.
func TestHTTPTransportsNotServed(t *testing.T) {
	s := newTestServer(t, Config{Transports: []string{"ws"}})
	for _, tc := range []struct{ accept, name string }{{"", "LongPolling"}, {"Accept: text/event-stream\r\n", "ServerSentEvents"}} {
		resp, _ := exchange(t, s, "GET /chat?id=x HTTP/1.1\r\nHost: x\r\n"+tc.accept+"\r\n")
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get(ErrorHeader) != tc.name+" transport is not served here (--transports)" {
			t.Errorf("GET for %s: %d %q", tc.name, resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
	}
	set, err := parseTransports([]string{"sse", "SSE", " lp", "ServerSentEvents"})
	if err != nil || !slices.Equal(set, transportSet{tSSE, tLongPoll}) {
		t.Fatalf("parseTransports: %q %v", set, err)
	}
	if set.has(tWebSockets) || !set.has(tLongPoll) {
		t.Fatalf("%q.has: WebSockets %v, LongPolling %v", set, set.has(tWebSockets), set.has(tLongPoll))
	}
}

// TestNegotiateSSEOnlyForText: negotiate offers ServerSentEvents (Text
// only) when a text protocol is served, and not with MessagePack alone.
func TestNegotiateSSEOnlyForText(t *testing.T) {
	for _, tc := range []struct {
		protocols []string
		want      string
	}{
		{nil, "WebSockets:Text,Binary ServerSentEvents:Text LongPolling:Text,Binary"},
		{[]string{"messagepack"}, "WebSockets:Binary LongPolling:Binary"},
	} {
		s := newTestServer(t, Config{Protocols: tc.protocols})
		_, body := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
		var n struct {
			AvailableTransports []struct {
				Transport       string
				TransferFormats []string
			}
		}
		if err := json.Unmarshal([]byte(body), &n); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tr := range n.AvailableTransports {
			got = append(got, tr.Transport+":"+strings.Join(tr.TransferFormats, ","))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("protocols %q: transports %q, want %q", tc.protocols, got, tc.want)
		}
	}
}

// TestLongPollDeleteEndsIt: DELETE answers a held poll 204 and the
// DELETE 202; the connection is gone (a poll or POST gets 404) and its
// token cannot open another (404, reused). DELETE names a long-polling
// connection: an SSE one's id gets 404 and stays.
func TestLongPollDeleteEndsIt(t *testing.T) {
	s := newTestServer(t, Config{})
	h := htLongPoll(t, s, true)
	p := openPollSocket(t, s)
	p.poll(h.get())
	if s.HeldPolls() != 1 {
		t.Fatal("poll not held")
	}
	if resp, _ := exchange(t, s, h.del()); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	wantAnswers(t, "held poll", p, "204 ")
	if n := s.HTTPConns(); n != 0 {
		t.Fatalf("%d HTTP connections after the DELETE", n)
	}
	for _, req := range []string{h.get(), h.post(htHandshake), h.del()} {
		if resp, body := exchange(t, s, req); resp.StatusCode != http.StatusNotFound || body != "No Connection with that ID" {
			t.Errorf("%s after the DELETE: %d %q", req[:strings.IndexByte(req, ' ')], resp.StatusCode, body)
		}
	}
	if resp, _ := exchange(t, s, h.get()); resp.Header.Get(ErrorHeader) != ErrTokenReused.Error() {
		t.Errorf("poll with the ended connection's token: %q, want %q", resp.Header.Get(ErrorHeader), ErrTokenReused)
	}

	sse, _ := htSSE(t, s)
	if resp, _ := exchange(t, s, sse.del()); resp.StatusCode != http.StatusNotFound || resp.Header.Get(ErrorHeader) != "no long-polling connection with that id" {
		t.Errorf("DELETE of an SSE connection: %d %q", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	if sse.find(t) == nil {
		t.Error("DELETE ended an SSE connection")
	}
}

// TestLongPollTokenOfLiveWebSocket: a negotiated token a WebSocket
// connection is using cannot also open a long-polling connection.
func TestLongPollTokenOfLiveWebSocket(t *testing.T) {
	s := newTestServer(t, Config{})
	h := htNegotiate(t, s)
	c, _ := connectHandshake(t, s, upgradeReq(h.target, ""))
	defer c.OnClose(nil)
	resp, _ := exchange(t, s, h.get())
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get(ErrorHeader) != ErrTokenReused.Error() {
		t.Fatalf("poll with a live WebSocket's token: %d %q", resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	if s.HTTPConns() != 0 {
		t.Fatal("a long-polling connection was made")
	}
}

// TestSSEBinaryHandshakeRefused: an SSE connection's handshake asking for
// MessagePack gets the handshake error on its stream and the connection
// ends, as in ASP.NET Core; a JSON one opens it.
func TestSSEBinaryHandshakeRefused(t *testing.T) {
	s := newTestServer(t, Config{})
	h, p := htSSE(t, s)
	if resp, _ := exchange(t, s, h.post(`{"protocol":"messagepack","version":1}`+"\x1e")); resp.StatusCode != http.StatusOK {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	want := "data: {\"error\":\"Cannot use the 'messagepack' protocol on the current transport. The transport does not support the 'Binary' transfer format.\"}\x1e"
	if out := string(afterHTTP(t, p.fc.output())); !strings.Contains(out, want) || !p.fc.isShutdown() {
		t.Fatalf("stream %q (shut down %v), want the handshake error", out, p.fc.isShutdown())
	}
	if h.lc.state.Load() != stClosed {
		t.Fatalf("state %d after the refused handshake", h.lc.state.Load())
	}

	h, p = htSSE(t, s)
	exchange(t, s, h.post(htHandshake))
	if out := string(afterHTTP(t, p.fc.output())); !strings.HasSuffix(out, "data: {}\x1e\r\n\r\n") || h.lc.state.Load() != stOpen {
		t.Fatalf("JSON handshake: stream %q, state %d", out, h.lc.state.Load())
	}
}

// TestSSEStream: the connection's queued bytes are its stream socket's;
// the stream's socket closing ends the connection.
func TestSSEStream(t *testing.T) {
	s := newTestServer(t, Config{})
	h, p := htSSE(t, s)
	exchange(t, s, h.post(htHandshake))
	if q := h.lc.pc.QueuedBytes(); q == 0 || q != p.fc.QueuedBytes() {
		t.Fatalf("connection's QueuedBytes %d, its stream's %d", q, p.fc.QueuedBytes())
	}
	if s.router.Hub("chat").Len() != 1 {
		t.Fatal("not registered")
	}
	p.sess.OnClose(nil)
	if s.HTTPConns() != 0 || h.lc.state.Load() != stClosed || s.router.Hub("chat").Len() != 0 {
		t.Fatalf("after the stream's socket closed: %d HTTP connections, state %d, %d in the hub", s.HTTPConns(), h.lc.state.Load(), s.router.Hub("chat").Len())
	}
}

// TestPostBodyLimit: a POST's body is bounded by --max-message-bytes (not
// negotiate's 4 KiB bound): one of exactly that size is taken.
func TestPostBodyLimit(t *testing.T) {
	const limit = 8 << 10
	s := newTestServer(t, Config{MaxMessageBytes: limit})
	h := htLongPoll(t, s, true)
	ping := `{"type":6,"pad":"` + strings.Repeat("p", limit-len(`{"type":6,"pad":""}`+"\x1e")) + `"}` + "\x1e"
	if resp, _ := exchange(t, s, h.post(ping)); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST of %d bytes: %d %q", len(ping), resp.StatusCode, resp.Header.Get(ErrorHeader))
	}
	if h.lc.state.Load() != stOpen {
		t.Fatalf("state %d after a POST within the limit", h.lc.state.Load())
	}
	if resp, _ := exchange(t, s, h.post(ping+"\x1e")); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST of %d bytes: %d", len(ping)+1, resp.StatusCode)
	}
}

// TestLongPollDeadlinesOnWheel: a long-polling connection is on the wheel
// for the handshake deadline after its first poll, the poll time-out while
// a poll is held, and the reconnect window once a poll is answered or its
// socket is gone; a socket that answered is there for the client time-out.
func TestLongPollDeadlinesOnWheel(t *testing.T) {
	s := clockServer(t, htCfg, 100)
	h := htLongPoll(t, s, false)
	if due := htDue(s, h.lc); due != 115 {
		t.Fatalf("after the first poll: due %d, want 115 (handshake)", due)
	}
	exchange(t, s, h.post(htHandshake))

	setClock(s, 101)
	p := openPollSocket(t, s)
	p.poll(h.get()) // finds the handshake answer queued
	wantAnswers(t, "p", p, "200 {}\x1e")
	if due := htDue(s, h.lc); due != 141 {
		t.Fatalf("after a poll answered at once: due %d, want 141 (reconnect window)", due)
	}
	if due := htDue(s, p.sess.(*Conn)); due != 131 {
		t.Fatalf("socket after its answer: due %d, want 131 (client time-out)", due)
	}

	setClock(s, 102)
	p.poll(h.get())
	if due := htDue(s, h.lc); due != 122 {
		t.Fatalf("poll held: due %d, want 122 (poll time-out)", due)
	}
	if due := htDue(s, p.sess.(*Conn)); due != 0 {
		t.Fatalf("socket of a held poll: due %d, want off the wheel", due)
	}

	setClock(s, 103)
	broadcastTo(s, "m1")
	wantAnswers(t, "p", p, "200 {}\x1e", "200 "+msgBody("m1"))
	if due := htDue(s, h.lc); due != 143 {
		t.Fatalf("held poll answered: due %d, want 143", due)
	}

	setClock(s, 104)
	p.poll(h.get())
	setClock(s, 105)
	p.sess.OnClose(nil)
	if due := htDue(s, h.lc); due != 145 || s.HeldPolls() != 0 || s.HTTPConns() != 1 {
		t.Fatalf("held poll's socket closed: due %d (want 145), %d held, %d connections", due, s.HeldPolls(), s.HTTPConns())
	}

	setClock(s, 106)
	h.lc.closeWith(causeServerClose) // no poll held: the Close message waits
	if due := htDue(s, h.lc); due != 146 || s.HTTPConns() != 1 {
		t.Fatalf("closed between polls: due %d (want 146), %d connections", due, s.HTTPConns())
	}
}

// TestSSEHandshakeDeadlineOnWheel: an SSE connection waits for its
// handshake on the wheel until the earlier of the handshake time-out and
// the keep-alive interval.
func TestSSEHandshakeDeadlineOnWheel(t *testing.T) {
	s := clockServer(t, htCfg, 100)
	h, p := htSSE(t, s)
	if due := htDue(s, h.lc); due != 110 {
		t.Fatalf("SSE connection: due %d, want 110", due)
	}
	if due := htDue(s, p.sess.(*Conn)); due != 0 {
		t.Fatalf("stream socket: due %d, want off the wheel", due)
	}
}

// TestLongPollTicks: a held poll is answered empty at the poll time-out,
// not before; a client with no poll for the reconnect window is gone (a
// time-out), not before; no Ping is sent. A connection that never does the
// handshake ends at the handshake time-out.
func TestLongPollTicks(t *testing.T) {
	s := clockServer(t, htCfg, 100)
	h := htLongPoll(t, s, true)
	p := openPollSocket(t, s)
	p.poll(h.get())
	if next := tickAt(s, h.lc, 119); next != 120 || len(p.answers(t)) != 0 {
		t.Fatalf("tick before the poll time-out: next %d, answers %q", next, p.answers(t))
	}
	if next := tickAt(s, h.lc, 120); next != 160 {
		t.Fatalf("tick at the poll time-out: next %d, want 160", next)
	}
	wantAnswers(t, "p", p, "200 ")
	if next := tickAt(s, h.lc, 159); next != 160 || h.lc.state.Load() != stOpen || s.HTTPConns() != 1 {
		t.Fatalf("tick before the reconnect window's end: next %d, state %d", next, h.lc.state.Load())
	}
	timeouts := s.M.closed[causeTimeout.idx].Get()
	if next := tickAt(s, h.lc, 160); next != 0 || s.HTTPConns() != 0 || h.lc.state.Load() != stClosed {
		t.Fatalf("tick at the reconnect window's end: next %d, %d connections, state %d", next, s.HTTPConns(), h.lc.state.Load())
	}
	if got := s.M.closed[causeTimeout.idx].Get(); got != timeouts+1 {
		t.Fatalf("time-outs counted %d, want %d", got, timeouts+1)
	}

	s = clockServer(t, htCfg, 100)
	h = htLongPoll(t, s, false)
	tickAt(s, h.lc, 114)
	if h.lc.state.Load() != stHandshake {
		t.Fatalf("state %d before the handshake time-out", h.lc.state.Load())
	}
	tickAt(s, h.lc, 115)
	if h.lc.state.Load() != stClosed || s.M.closed[causeHandshakeTimeout.idx].Get() != 1 {
		t.Fatalf("at the handshake time-out: state %d, handshake time-outs %d", h.lc.state.Load(), s.M.closed[causeHandshakeTimeout.idx].Get())
	}
}

// TestKeepAliveSocketIdle: a socket that answered a request (here a CORS
// preflight, counted) reads the next one for the client time-out from the
// last request, then closes.
func TestKeepAliveSocketIdle(t *testing.T) {
	s := clockServer(t, htCfg, 100)
	p := openPollSocket(t, s)
	sc := p.sess.(*Conn)
	p.poll("OPTIONS /chat?id=x HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n\r\n")
	wantAnswers(t, "p", p, "204 ")
	if got := s.M.httpReqs("transport", http.StatusNoContent).Get(); got != 1 {
		t.Fatalf("preflight counted %d times", got)
	}
	if next := tickAt(s, sc, 129); next != 130 || p.fc.isShutdown() {
		t.Fatalf("tick before the idle time-out: next %d, shut down %v", next, p.fc.isShutdown())
	}
	setClock(s, 110)
	p.poll("OPTIONS /chat?id=x HTTP/1.1\r\nHost: x\r\n\r\n")
	if next := tickAt(s, sc, 130); next != 140 || p.fc.isShutdown() {
		t.Fatalf("tick 20 s after the second request: next %d, shut down %v", next, p.fc.isShutdown())
	}
	if next := tickAt(s, sc, 140); next != 0 || !p.fc.isShutdown() {
		t.Fatalf("tick at the idle time-out: next %d, shut down %v", next, p.fc.isShutdown())
	}
}

// TestAuthExpiryToTheSecond: a WebSocket connection whose token's
// authentication expires (asrs.s.coae) closes in the second it expires,
// not later.
func TestAuthExpiryToTheSecond(t *testing.T) {
	s := clockServer(t, Config{AccessKey: testKey, KeepAliveInterval: time.Hour, ClientTimeout: time.Hour}, 100)
	tok := clientToken(t, map[string]any{"asrs.s.coae": "true", "asrs.s.aeo": strconv.FormatInt(time.Now().Unix()+5, 10)})
	c, fc := connectHandshake(t, s, upgradeReq("/chat?access_token="+tok, ""))
	defer c.OnClose(nil)
	at := c.policy().closeAt
	if at < 103 || at > 106 {
		t.Fatalf("closeAt %d", at)
	}
	if tickAt(s, c, at-1); fc.isShutdown() {
		t.Fatal("closed before the expiry")
	}
	if tickAt(s, c, at); !fc.isShutdown() || s.M.closed[causeAuthExpired.idx].Get() != 1 {
		t.Fatalf("at the expiry: shut down %v", fc.isShutdown())
	}
}

// TestResponseHead: the status line, Content-Type when there is one,
// Content-Length when known (0 included), the extra headers.
func TestResponseHead(t *testing.T) {
	for _, tc := range []struct {
		code  int
		ctype string
		n     int
		extra string
		want  string
	}{
		{200, "application/octet-stream", 0, "", "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"},
		{204, "", 0, "", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"},
		{200, "text/event-stream", -1, "X-A: b\r\n", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: b\r\n\r\n"},
	} {
		if got := string(responseHead(tc.code, tc.ctype, tc.n, tc.extra)); got != tc.want {
			t.Errorf("responseHead(%d, %q, %d, %q) = %q, want %q", tc.code, tc.ctype, tc.n, tc.extra, got, tc.want)
		}
	}
}

// TestLongPollCloseMessage: a connection the server closes sends its Close
// message (and nothing of the WebSocket close frame) to the held poll and
// ends; with no poll held it waits for the next poll, which gets it, then
// ends. A shutdown with no final message answers the held poll 204.
func TestLongPollCloseMessage(t *testing.T) {
	s := newTestServer(t, Config{})
	h := htLongPoll(t, s, true)
	p := openPollSocket(t, s)
	p.poll(h.get())
	h.lc.closeWith(causeServerClose)
	wantAnswers(t, "held poll", p, "200 "+closeRecordOf(causeServerClose))
	if s.HTTPConns() != 0 {
		t.Fatal("the connection did not end with its held poll's answer")
	}

	h = htLongPoll(t, s, true)
	h.lc.closeWith(causeServerClose)
	if s.HTTPConns() != 1 {
		t.Fatal("the connection ended before its Close message was polled")
	}
	if resp, body := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK || body != closeRecordOf(causeServerClose) {
		t.Fatalf("poll after the close: %d %q", resp.StatusCode, body)
	}
	if s.HTTPConns() != 0 {
		t.Fatal("the connection did not end once its Close message was polled")
	}

	h = htLongPoll(t, s, true)
	p = openPollSocket(t, s)
	p.poll(h.get())
	h.lc.pc.Shutdown(nil)
	wantAnswers(t, "held poll", p, "204 ")
	if s.HTTPConns() != 0 {
		t.Fatal("the connection did not end")
	}
}

// TestLongPollCloseOnDeadPollSocket: the held poll's socket is gone (its
// close not yet seen) when the connection closes: with nothing to send,
// the connection ends once that socket's close is seen; with a Close
// message, the message waits for the next poll.
func TestLongPollCloseOnDeadPollSocket(t *testing.T) {
	s := newTestServer(t, Config{})
	h := htLongPoll(t, s, true)
	p := openPollSocket(t, s)
	p.poll(h.get())
	p.fc.Close()
	h.lc.pc.Shutdown(nil)
	if s.HTTPConns() != 1 {
		t.Fatal("ended before the dead socket's close was seen")
	}
	p.sess.OnClose(nil)
	if s.HTTPConns() != 0 {
		t.Fatal("the closing connection did not end with its dead poll socket")
	}

	h = htLongPoll(t, s, true)
	p = openPollSocket(t, s)
	p.poll(h.get())
	p.fc.Close()
	h.lc.closeWith(causeServerClose)
	p.sess.OnClose(nil)
	if s.HTTPConns() != 1 {
		t.Fatal("ended with its Close message not delivered")
	}
	if resp, body := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK || body != closeRecordOf(causeServerClose) {
		t.Fatalf("poll after the dead socket: %d %q", resp.StatusCode, body)
	}
}

// TestLongPollQueueBound: messages wait for a poll up to HTTPQueueBytes
// (a message that fills it exactly is taken); the one that would pass it
// closes the connection as a slow client, whose Close message still gets
// out with what was queued.
func TestLongPollQueueBound(t *testing.T) {
	m := len(msgBody("m1"))
	s := newTestServer(t, Config{HTTPQueueBytes: 2 * m})
	h := htLongPoll(t, s, true)
	broadcastTo(s, "m1")
	broadcastTo(s, "m2")
	if h.lc.state.Load() != stOpen {
		t.Fatal("closed with the queue exactly full")
	}
	broadcastTo(s, "m3")
	if h.lc.state.Load() != stClosed || s.M.closed[causeSlowClient.idx].Get() != 1 {
		t.Fatalf("past the bound: state %d, slow clients %d", h.lc.state.Load(), s.M.closed[causeSlowClient.idx].Get())
	}
	if resp, body := exchange(t, s, h.get()); resp.StatusCode != http.StatusOK || body != msgBody("m1", "m2")+closeRecordOf(causeSlowClient) {
		t.Fatalf("poll: %d %q", resp.StatusCode, body)
	}
}

// TestLongPollConnectContext: with an upstream, a long-polling
// connection's connected event carries its first request's context;
// none with ContextMaxBytes < 0.
func TestLongPollConnectContext(t *testing.T) {
	for _, tc := range []struct {
		max  int
		want bool
	}{{0, true}, {-1, false}} {
		up := &upstreamRec{}
		s := newTestServer(t, Config{Upstream: up, ContextMaxBytes: tc.max})
		h := htNegotiate(t, s)
		exchange(t, s, "GET "+h.target+"&room=7 HTTP/1.1\r\nHost: x\r\n\r\n")
		exchange(t, s, h.post(htHandshake))
		cc := up.connected(t)
		if got := cc != nil && cc.Query == "room=7"; got != tc.want {
			t.Errorf("ContextMaxBytes %d: context %+v", tc.max, cc)
		}
	}
}

// TestLongPollSocketReusedAfterAnswer: a socket whose poll was answered
// and that then carried another request is no longer the connection's:
// its close does not disturb the poll held on another socket (answered at
// the poll time-out, not kept to the reconnect window).
func TestLongPollSocketReusedAfterAnswer(t *testing.T) {
	s := clockServer(t, htCfg, 100)
	h := htLongPoll(t, s, true)
	a := openPollSocket(t, s)
	a.poll(h.get())
	broadcastTo(s, "m1")
	wantAnswers(t, "a", a, "200 "+msgBody("m1"))
	a.poll(h.post(`{"type":6}` + "\x1e"))
	setClock(s, 101)
	b := openPollSocket(t, s)
	b.poll(h.get())
	setClock(s, 102)
	a.sess.OnClose(nil)
	if due := htDue(s, h.lc); due != 121 || s.HeldPolls() != 1 {
		t.Fatalf("after the other socket closed: due %d (want 121, the poll time-out), %d held", due, s.HeldPolls())
	}
}

// TestSSEDeliveryAndPing: a message is an event on the stream, and counts
// as output: the keep-alive Ping (an event too) comes after the interval of
// outbound silence, from the last message.
func TestSSEDeliveryAndPing(t *testing.T) {
	s := clockServer(t, htCfg, 100)
	h, p := htSSE(t, s)
	exchange(t, s, h.post(htHandshake))
	setClock(s, 105)
	broadcastTo(s, "m1")
	if next := tickAt(s, h.lc, 110); next != 115 {
		t.Fatalf("tick 5 s after a message: next %d, want 115", next)
	}
	tickAt(s, h.lc, 115)
	want := ":\r\ndata: {}\x1e\r\n\r\n" + "data: " + msgBody("m1") + "\r\n\r\n" + "data: {\"type\":6}\x1e\r\n\r\n"
	if out := string(afterHTTP(t, p.fc.output())); out != want {
		t.Fatalf("stream %q, want %q", out, want)
	}
}

// TestSSECloseMessage: a connection the server closes sends its Close
// message as the stream's last event and ends the stream; a stream that
// cannot take a message (its queue full) closes the connection as a slow
// client.
func TestSSECloseMessage(t *testing.T) {
	s := newTestServer(t, Config{})
	h, p := htSSE(t, s)
	exchange(t, s, h.post(htHandshake))
	h.lc.closeWith(causeServerClose)
	if out := string(afterHTTP(t, p.fc.output())); !strings.HasSuffix(out, "data: {}\x1e\r\n\r\ndata: "+closeRecordOf(causeServerClose)+"\r\n\r\n") || !p.fc.isShutdown() {
		t.Fatalf("stream %q, shut down %v", out, p.fc.isShutdown())
	}

	h, p = htSSE(t, s)
	exchange(t, s, h.post(htHandshake))
	p.fc.mu.Lock()
	p.fc.limit = p.fc.out.Len() + 10
	p.fc.mu.Unlock()
	broadcastTo(s, "m1")
	if h.lc.state.Load() != stClosed || s.M.closed[causeSlowClient.idx].Get() != 1 {
		t.Fatalf("stream full: state %d, slow clients %d", h.lc.state.Load(), s.M.closed[causeSlowClient.idx].Get())
	}
}
