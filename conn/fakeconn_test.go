package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/poller"
)

// fakeConn is an in-memory poller.Conn: it records what the connection
// layer sends, so the state machine can be driven without sockets.
type fakeConn struct {
	mu       sync.Mutex
	out      bytes.Buffer
	shutdown bool
	closed   bool
	limit    int
	onSend   func(frame []byte) // called after each accepted Send, without the lock
}

func (f *fakeConn) Send(frame []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shutdown || f.closed {
		return poller.ErrClosed
	}
	if f.limit > 0 && f.out.Len()+len(frame) > f.limit {
		return poller.ErrQueueFull
	}
	f.out.Write(frame)
	if hook := f.onSend; hook != nil {
		f.mu.Unlock()
		hook(frame)
		f.mu.Lock()
	}
	return nil
}

func (f *fakeConn) Shutdown(final []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.shutdown && !f.closed {
		f.out.Write(final)
	}
	f.shutdown = true
}

func (f *fakeConn) Close() error         { f.mu.Lock(); f.closed = true; f.mu.Unlock(); return nil }
func (f *fakeConn) QueuedBytes() int     { f.mu.Lock(); defer f.mu.Unlock(); return f.out.Len() }
func (f *fakeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func (f *fakeConn) output() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.out.Bytes()...)
}

func newTestServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.AcceptRate == 0 {
		cfg.AcceptRate = -1
	}
	s, err := New(cfg, fanout.NewRouter([]string{"chat"}, nil))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TestHTTPStateMachine drives negotiate and upgrade through OnData with
// every split of the request into two reads.
func TestHTTPStateMachine(t *testing.T) {
	s := newTestServer(t, Config{})
	reqs := []struct {
		name, req string
		status    int
	}{
		{"negotiate", "POST /chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 200},
		{"upgrade", "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 101},
		{"unknown hub", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404},
	}
	for _, tc := range reqs {
		for split := 0; split <= len(tc.req); split++ {
			fc := &fakeConn{}
			sess := s.OnOpen(fc)
			// The poller's read buffer is reused: hand over copies.
			sess.OnData([]byte(tc.req[:split]))
			sess.OnData([]byte(tc.req[split:]))
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
			if err != nil {
				t.Fatalf("%s split %d: no response: %v (%q)", tc.name, split, err, fc.output())
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("%s split %d: status %d, want %d", tc.name, split, resp.StatusCode, tc.status)
			}
			sess.OnClose(nil)
		}
	}
}

// FuzzClientBytes feeds arbitrary bytes, split in two reads, to a fresh
// connection (HTTP negotiate/upgrade, then WebSocket frames and SignalR
// records). It must never panic, and whatever it answers first must be a
// parseable HTTP response.
func FuzzClientBytes(f *testing.F) {
	up := "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	hs := []byte(`{"protocol":"json","version":1}` + "\x1e")
	frame := append([]byte{0x81, 0x80 | byte(len(hs)), 1, 2, 3, 4}, hs...)
	for i := range hs {
		frame[6+i] ^= []byte{1, 2, 3, 4}[i&3]
	}
	mp := clientFrame(0x81, []byte(`{"protocol":"messagepack","version":1}`+"\x1e"))
	mpInv := clientFrame(0x82, []byte{0x0a, 0x95, 0x01, 0x80, 0xc0, 0xa1, 'T', 0x92, 0x01, 0xc4, 0x00, 0x02, 0x91, 0x06})
	for _, seed := range []string{
		up + string(mp) + string(mpInv),
		up + string(mp) + "\x82\x83\x00\x00\x00\x00\xff\xff\x7f",
		"POST /chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"POST /chat/negotiate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"OPTIONS /chat/negotiate HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n\r\n",
		up,
		up + string(frame),
		up + string(frame) + "\x81\x85\x00\x00\x00\x00{\"ty",
		"GET /chat?id=AAAA HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"\x00\x01\x02\r\n\r\n",
	} {
		f.Add([]byte(seed), uint16(len(seed)/2))
	}
	s := newTestServer(f, Config{MaxMessageBytes: 1024, MaxHeaderBytes: 2048})
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		fc := &fakeConn{limit: 1 << 20}
		sess := s.OnOpen(fc)
		k := int(split) % (len(data) + 1)
		sess.OnData(append([]byte(nil), data[:k]...))
		sess.OnData(append([]byte(nil), data[k:]...))
		sess.OnClose(nil)
		out := fc.output()
		if len(out) == 0 {
			return // incomplete request: nothing answered yet
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("answer is not an HTTP response: %v: %q", err, out)
		}
		if resp.StatusCode < 100 || resp.StatusCode > 599 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestDisconnectReason(t *testing.T) {
	for _, tc := range []struct {
		cause *cause
		err   error
		want  string
	}{
		{causeClientClose, nil, ""},
		{causeSlowClient, nil, "slow_client"},
		{causeTimeout, nil, "timeout"},
		{&cause{}, nil, "peer_gone"},
		{&cause{}, net.ErrClosed, "peer_gone: " + net.ErrClosed.Error()},
	} {
		if got := disconnectReason(tc.cause.idx, tc.err); got != tc.want {
			t.Errorf("disconnectReason(%q, %v) = %q, want %q", tc.cause.label, tc.err, got, tc.want)
		}
	}
}

// TestAcceptRateSparesNegotiatedUpgrade: the accept-rate limit applies to
// new SignalR connections (negotiate, skipNegotiation upgrade), never to
// the upgrade that completes a negotiate.
func TestAcceptRateSparesNegotiatedUpgrade(t *testing.T) {
	s := newTestServer(t, Config{AcceptRate: 0.001, AcceptBurst: 1})
	do := func(req string) *http.Response {
		t.Helper()
		fc := &fakeConn{}
		sess := s.OnOpen(fc)
		sess.OnData([]byte(req))
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		sess.OnClose(nil)
		return resp
	}
	neg := "POST /chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
	resp := do(neg)
	if resp.StatusCode != 200 {
		t.Fatalf("first negotiate: %d", resp.StatusCode)
	}
	var body struct{ ConnectionToken string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if r := do(neg); r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second negotiate: %d, want 503 with Retry-After", r.StatusCode)
	}
	up := "GET /chat%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if r := do(fmt.Sprintf(up, "")); r.StatusCode != 503 {
		t.Fatalf("skipNegotiation upgrade over the limit: %d, want 503", r.StatusCode)
	}
	if r := do(fmt.Sprintf(up, "?id="+body.ConnectionToken)); r.StatusCode != 101 {
		t.Fatalf("negotiated upgrade: %d, want 101", r.StatusCode)
	}
}

// clientFrame builds a masked client frame.
func clientFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{9, 8, 7, 6}
	out := []byte{b0, 0x80 | byte(len(payload))}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// serverFrames splits unmasked server frames (payloads < 126 bytes).
func serverFrames(t *testing.T, b []byte) (ops []byte, payloads []string) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 2 || b[1]&0x80 != 0 || int(b[1]&0x7f) > 125 || len(b) < 2+int(b[1]&0x7f) {
			t.Fatalf("bad server frame bytes %q", b)
		}
		n := int(b[1] & 0x7f)
		ops = append(ops, b[0])
		payloads = append(payloads, string(b[2:2+n]))
		b = b[2+n:]
	}
	return ops, payloads
}

func TestWebSocketFramesThroughOnData(t *testing.T) {
	s := newTestServer(t, Config{})
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	up := "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	sess.OnData([]byte(up))
	resp := fc.output()
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101")) {
		t.Fatalf("upgrade: %q", resp)
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()

	// The handshake in three fragments, the middle one with a ping between
	// fragments (control frames may interleave), each written byte by byte.
	hs := []byte(`{"protocol":"json","version":1}` + "\x1e")
	var in []byte
	in = append(in, clientFrame(0x01, hs[:5])...)
	in = append(in, clientFrame(0x89, []byte("hi"))...)
	in = append(in, clientFrame(0x00, hs[5:20])...)
	in = append(in, clientFrame(0x80, hs[20:])...)
	for i := range in {
		sess.OnData([]byte{in[i]})
	}
	ops, payloads := serverFrames(t, fc.output())
	if len(ops) != 2 || ops[0] != 0x8A || payloads[0] != "hi" || ops[1] != 0x81 || payloads[1] != "{}\x1e" {
		t.Fatalf("got ops %x payloads %q, want pong \"hi\" then the handshake response", ops, payloads)
	}
	if s.router.Hub("chat").Len() != 1 {
		t.Fatal("connection not registered after the handshake")
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()

	// Close handshake: the server echoes the code and closes.
	sess.OnData(clientFrame(0x88, []byte{0x03, 0xE8, 'b', 'y', 'e'}))
	ops, payloads = serverFrames(t, fc.output())
	if len(ops) != 1 || ops[0] != 0x88 || payloads[0][:2] != "\x03\xe8" {
		t.Fatalf("close echo: ops %x payloads %q", ops, payloads)
	}
	fc.mu.Lock()
	shut := fc.shutdown
	fc.mu.Unlock()
	if !shut {
		t.Fatal("connection not shut down after the close handshake")
	}
	if s.router.Hub("chat").Len() != 0 {
		t.Fatal("closed connection still registered")
	}
	sess.OnClose(nil)
}

// TestClosedConnLeavesWheel: OnClose takes the connection off the timing
// wheel at once, so a closed connection (a finished negotiate, say) and
// its poller state are garbage immediately, not when the handshake
// deadline's slot is swept seconds later.
func TestClosedConnLeavesWheel(t *testing.T) {
	s := newTestServer(t, Config{})
	base := s.wheel.len()
	var sess []poller.Session
	for range 10 {
		sess = append(sess, s.OnOpen(&fakeConn{}))
	}
	if got := s.wheel.len(); got != base+10 {
		t.Fatalf("wheel holds %d items after 10 opens, want %d", got, base+10)
	}
	for i, se := range sess {
		se.OnClose(nil)
		if got := s.wheel.len(); got != base+10-i-1 {
			t.Fatalf("wheel holds %d items after %d closes, want %d", got, i+1, base+10-i-1)
		}
	}
}
