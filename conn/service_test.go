package conn

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/poller"
)

// recService records what conn hands to service mode.
type recService struct {
	mu       sync.Mutex
	reject   error
	openErr  error
	sessions []*recSession
	opened   []string // handshake bytes
	ctx      []*backplane.ConnectContext
	data     []string
	closed   []string // reasons
	// answer: RelayOpen queues the app's handshake response and accepts
	// the client before it returns, as an app answering at once does
	// from its server connection's goroutine; accepted records
	// RelayAccept's results.
	answer   bool
	accepted []bool
}

type recSession struct {
	pc     poller.Conn
	data   bytes.Buffer
	closed bool
	req    *http.Request
}

func (s *recSession) Start(pc poller.Conn) { s.pc = pc }
func (s *recSession) OnData(b []byte)      { s.data.Write(b) }
func (s *recSession) OnClose(error)        { s.closed = true }

func (r *recService) AcceptServer(req *http.Request, hub string) (ServerSession, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reject != nil {
		return nil, r.reject
	}
	s := &recSession{req: req}
	r.sessions = append(r.sessions, s)
	return s, nil
}

func (r *recService) RelayOpen(c *Conn, h hubproto.Handshake, hs []byte, ctx *backplane.ConnectContext) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opened = append(r.opened, string(hs))
	r.ctx = append(r.ctx, ctx)
	if r.answer && r.openErr == nil {
		c.RelaySend([]byte{0x81, 0x03, '{', '}', 0x1e})
		r.accepted = append(r.accepted, c.RelayAccept())
	}
	return r.openErr
}

func (r *recService) RelayData(c *Conn, msg []byte) {
	r.mu.Lock()
	r.data = append(r.data, string(msg))
	r.mu.Unlock()
}

func (r *recService) RelayClosed(c *Conn, reason string) {
	r.mu.Lock()
	r.closed = append(r.closed, reason)
	r.mu.Unlock()
}

// TestServiceServerPath: /server/ is the Service's to accept: its
// refusals answer with their status; an accepted connection gets 101 and
// every byte after the request (in the same read too) goes to its
// session, then the close. Without a Service the path is unknown.
func TestServiceServerPath(t *testing.T) {
	req := upgradeReq("/server/?hub=ChatHub&cid=1", "")
	if resp, _ := exchange(t, newTestServer(t, Config{}), req); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("without a Service: %d", resp.StatusCode)
	}
	svc := &recService{}
	s := newTestServer(t, Config{Service: svc})
	for _, tc := range []struct {
		reject error
		status int
	}{
		{&RejectError{Status: http.StatusUnauthorized, Reason: "bad token"}, http.StatusUnauthorized},
		{&RejectError{Status: http.StatusNotFound, Reason: "unknown hub"}, http.StatusNotFound},
		{errors.New("anything else"), http.StatusBadRequest},
	} {
		svc.reject = tc.reject
		resp, _ := exchange(t, s, req)
		if resp.StatusCode != tc.status || resp.Header.Get(ErrorHeader) == "" {
			t.Fatalf("refused with %v: %d %q", tc.reject, resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
		if tc.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
	}
	svc.reject = nil
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	sess.OnData([]byte(req + "abc")) // the first bytes of the stream come with the request
	sess.OnData([]byte("def"))
	if !bytes.HasPrefix(fc.output(), []byte("HTTP/1.1 101")) || len(svc.sessions) != 1 {
		t.Fatalf("answer %q, %d sessions", fc.output(), len(svc.sessions))
	}
	got := svc.sessions[0]
	if got.pc == nil || got.data.String() != "abcdef" || got.req.URL.Query().Get("cid") != "1" {
		t.Fatalf("session started %v, got %q", got.pc != nil, got.data.String())
	}
	sess.OnClose(nil)
	if !got.closed {
		t.Fatal("the session did not hear of the close")
	}
	if _, ok := s.foreign.Load(sess.(*Conn)); ok {
		t.Fatal("the session is still registered")
	}
}

// TestServiceRelay: a /client/ connection (hub matched ignoring case)
// is negotiated and upgraded as /{hub} ones, then relayed: conn answers
// no handshake, the Service gets the handshake and what follows; it joins
// its hub only when the Service accepts it; RelayClose closes it with a
// SignalR Close and 1000; the Service hears of its end once.
func TestServiceRelay(t *testing.T) {
	svc := &recService{}
	s := newTestServer(t, Config{Service: svc, AccessKey: testKey})
	tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat", "asrs.s.uid": "alice"})
	if resp, body := exchange(t, s, negotiateReq("/client/negotiate?hub=CHAT&negotiateVersion=1", "Authorization: Bearer "+tok+"\r\n")); resp.StatusCode != 200 || !strings.Contains(body, "connectionToken") {
		t.Fatalf("negotiate: %d %s", resp.StatusCode, body)
	}
	if resp, _ := exchange(t, s, negotiateReq("/client/negotiate?hub=nope", "")); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown hub: %d", resp.StatusCode)
	}
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	c := sess.(*Conn)
	sess.OnData([]byte(upgradeReq("/client/?hub=chat&asrs.op=%2Fchat&access_token="+tok, "X-Custom: 1\r\n")))
	sess.OnData(clientFrame(0x81, append(append([]byte(nil), testHandshake...), `{"type":6}`+"\x1e"...)))
	if len(svc.opened) != 1 || svc.opened[0] != string(testHandshake) {
		t.Fatalf("RelayOpen got %q", svc.opened)
	}
	if ctx := svc.ctx[0]; ctx == nil || !strings.Contains(string(ctx.Claims), `"asrs.s.uid":"alice"`) ||
		ctx.Query != "hub=chat&asrs.op=%2Fchat" || http.Header(ctx.Headers).Get("X-Custom") != "1" || http.Header(ctx.Headers).Get("Authorization") != "" {
		t.Fatalf("context %+v", svc.ctx[0])
	}
	if len(svc.data) != 1 || svc.data[0] != `{"type":6}`+"\x1e" {
		t.Fatalf("data after the handshake: %q", svc.data)
	}
	if c.UserID() != "alice" || c.Hub() != "chat" {
		t.Fatalf("user %q hub %q", c.UserID(), c.Hub())
	}
	_, payloads := serverFrames(t, afterHTTP(t, fc.output()))
	if len(payloads) != 0 {
		t.Fatalf("conn answered the handshake itself: %q", payloads)
	}
	h := s.router.Hub("chat")
	if h.Lookup(c.ID()) {
		t.Fatal("in the hub before the app accepted it")
	}
	c.RelaySend([]byte{0x81, 0x03, '{', '}', 0x1e})
	if !c.RelayAccept() || !h.Lookup(c.ID()) {
		t.Fatal("RelayAccept")
	}
	sess.OnData(clientFrame(0x81, []byte(`{"type":1,"target":"x","arguments":[]}`+"\x1e")))
	if len(svc.data) != 2 {
		t.Fatalf("data: %q", svc.data)
	}
	c.RelayClose("bye", false)
	_, payloads = serverFrames(t, afterHTTP(t, fc.output()))
	if len(payloads) != 3 || payloads[1] != `{"type":7,"error":"bye"}`+"\x1e" || !strings.HasPrefix(payloads[2], "\x03\xe8") {
		t.Fatalf("frames after RelayClose: %q", payloads)
	}
	if h.Lookup(c.ID()) {
		t.Fatal("still in the hub")
	}
	sess.OnClose(nil)
	if len(svc.closed) != 1 || svc.closed[0] != "server_close" {
		t.Fatalf("RelayClosed %q", svc.closed)
	}
	// A Service that cannot take the client: the handshake error.
	svc.openErr = errors.New("no app server is connected")
	fc = &fakeConn{}
	sess = s.OnOpen(fc)
	sess.OnData([]byte(upgradeReq("/client/?hub=chat&access_token="+tok, "")))
	sess.OnData(clientFrame(0x81, testHandshake))
	if _, payloads := serverFrames(t, afterHTTP(t, fc.output())); len(payloads) == 0 || payloads[0] != `{"error":"no app server is connected"}`+"\x1e" {
		t.Fatalf("handshake error: %q", payloads)
	}
	sess.OnClose(nil)
	if len(svc.closed) != 1 {
		t.Fatal("RelayClosed for a relay never opened")
	}
}

// TestServiceRelayAcceptedBeforeOpen: the app's handshake response may be
// relayed, and the client accepted, before relayHandshake has marked the
// connection open (RelayOpen has sent OpenConnection; the event loop has
// not yet returned from it). The client still joins its hub, opens and
// leaves the hub when it closes. Before the fix RelayAccept refused it:
// the client was relayed but got no broadcasts and its group joins were
// NotFound (TestCompatServiceMode's "Join: false").
func TestServiceRelayAcceptedBeforeOpen(t *testing.T) {
	svc := &recService{answer: true}
	s, _, c := relayedClient(t, svc, clientFrame(0x81, testHandshake))
	sess := c
	h := s.router.Hub("chat")
	if len(svc.accepted) != 1 || !svc.accepted[0] || !h.Lookup(c.ID()) {
		t.Fatalf("accepted %v, in the hub %v", svc.accepted, h.Lookup(c.ID()))
	}
	if c.state.Load() != stOpen {
		t.Fatalf("state %d, want open", c.state.Load())
	}
	sess.OnData(clientFrame(0x81, []byte(`{"type":6}`+"\x1e")))
	if len(svc.data) != 1 {
		t.Fatalf("data: %q", svc.data)
	}
	c.RelayClose("", false)
	sess.OnClose(nil)
	if h.Lookup(c.ID()) || len(svc.closed) != 1 {
		t.Fatalf("after the close: in the hub %v, RelayClosed %q", h.Lookup(c.ID()), svc.closed)
	}
}

// afterHTTP returns what follows the HTTP response head in out.
func afterHTTP(t *testing.T, out []byte) []byte {
	t.Helper()
	i := bytes.Index(out, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no HTTP response in %q", out)
	}
	return out[i+4:]
}
