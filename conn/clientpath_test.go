package conn

import (
	"bytes"
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The client path under faults and hostile input (issue 12, items 5-9):
// the handshake response comes first, drains miss nobody, partial input
// has a deadline, every frame counts toward the message rate, and the
// queue gauge keeps counting clients that are on their way out.

const testUpgrade = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

var testHandshake = []byte(`{"protocol":"json","version":1}` + "\x1e")

// firstFrameAfterUpgrade returns the payload of the first WebSocket frame
// after the HTTP 101 response in out.
func firstFrameAfterUpgrade(t *testing.T, out []byte) string {
	t.Helper()
	i := bytes.Index(out, []byte("\r\n\r\n"))
	if i < 0 || !bytes.HasPrefix(out, []byte("HTTP/1.1 101")) {
		t.Fatalf("no 101 response in %q", out)
	}
	b := out[i+4:]
	if len(b) < 2 {
		t.Fatalf("no frame after the 101 response: %q", out)
	}
	n, hn := int(b[1]&0x7f), 2
	switch n {
	case 126:
		n, hn = int(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		n, hn = int(binary.BigEndian.Uint64(b[2:10])), 10
	}
	if len(b) < hn+n {
		t.Fatalf("truncated first frame: %q", b)
	}
	return string(b[hn : hn+n])
}

// TestHandshakeResponseFirstUnderBroadcast: while broadcasts run without
// pause, every connection's first record is the handshake response. The
// official JS and .NET clients fail a connection with "Expected a
// handshake response from the server" otherwise. (Issue 12 item 5: the
// connection used to become visible to deliveries before {} was queued.)
func TestHandshakeResponseFirstUnderBroadcast(t *testing.T) {
	s := newTestServer(t, Config{MaxMessageRate: -1})
	rec := []byte(`{"type":1,"target":"news","arguments":["x"]}` + "\x1e")
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
		}
	}()
	const connects = 4000
	bad := 0
	var example string
	for range connects {
		fc := &fakeConn{}
		sess := s.OnOpen(fc)
		sess.OnData([]byte(testUpgrade))
		sess.OnData(clientFrame(0x81, testHandshake))
		if first := firstFrameAfterUpgrade(t, fc.output()); first != "{}\x1e" {
			bad++
			example = first
		}
		sess.OnClose(nil)
	}
	close(stop)
	<-done
	if bad > 0 {
		t.Fatalf("%d of %d connections got another record before the handshake response (e.g. %q)", bad, connects, example)
	}
}

// hookConn is a fakeConn that calls onSend (outside its lock) before
// queuing each frame.
type hookConn struct {
	fakeConn
	onSend func(frame []byte)
}

func (h *hookConn) Send(frame []byte) error {
	if h.onSend != nil {
		h.onSend(frame)
	}
	return h.fakeConn.Send(frame)
}

// TestBroadcastRacingTheHandshake: a broadcast that lands just as the
// handshake response is being queued must not reach the connection first.
// The hook plays the broadcast at the last moment before {} is queued:
// the connection must not be visible to deliveries yet. (Issue 12 item 5,
// deterministically; TestHandshakeResponseFirstUnderBroadcast is the same
// under real concurrency.)
func TestBroadcastRacingTheHandshake(t *testing.T) {
	s := newTestServer(t, Config{})
	hc := &hookConn{}
	raced := false
	hc.onSend = func(frame []byte) {
		if !raced && bytes.Equal(frame, handshakeOKFrames[hubproto.IDJSON]) {
			raced = true
			s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: []byte(`{"type":1,"target":"early","arguments":[]}` + "\x1e")})
		}
	}
	sess := s.OnOpen(hc)
	defer sess.OnClose(nil)
	sess.OnData([]byte(testUpgrade))
	sess.OnData(clientFrame(0x81, testHandshake))
	if !raced {
		t.Fatal("the handshake response was never sent")
	}
	if first := firstFrameAfterUpgrade(t, hc.output()); first != "{}\x1e" {
		t.Fatalf("first record %q, want the handshake response", first)
	}
	if s.router.Hub("chat").Len() != 1 {
		t.Fatal("connection not registered after its handshake")
	}
}

// TestDrainDuringHandshake: a drain that starts while a connection is in
// the middle of its handshake (past the draining check, not yet in its
// hub, so not in the drain's snapshot) still closes it. (Issue 12 item 9:
// such a connection used to stay open through the whole drain.)
func TestDrainDuringHandshake(t *testing.T) {
	s := newTestServer(t, Config{})
	hc := &hookConn{}
	drained := false
	hc.onSend = func(frame []byte) {
		if !drained && bytes.Equal(frame, handshakeOKFrames[hubproto.IDJSON]) {
			drained = true
			s.Drain(context.Background(), 0)
		}
	}
	sess := s.OnOpen(hc)
	sess.OnData([]byte(testUpgrade))
	sess.OnData(clientFrame(0x81, testHandshake))
	if !drained {
		t.Fatal("the handshake response was never sent")
	}
	hc.mu.Lock()
	shut := hc.shutdown
	hc.mu.Unlock()
	if !shut || s.router.Hub("chat").Len() != 0 {
		t.Fatalf("connection that completed its handshake during a drain: shut down %v, registered %d; want closed", shut, s.router.Hub("chat").Len())
	}
	out := string(hc.output())
	if !strings.Contains(out, "server is restarting") {
		t.Fatalf("drained connection was not told why: %q", out)
	}
	sess.OnClose(nil)
}

// openConnWith is openConn with a configuration.
func openConnWith(t *testing.T, cfg Config) (*Server, *Conn, *fakeConn) {
	t.Helper()
	s := newTestServer(t, cfg)
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	sess.OnData([]byte(testUpgrade))
	sess.OnData(clientFrame(0x81, testHandshake))
	if s.router.Hub("chat").Len() != 1 {
		t.Fatalf("handshake did not register the connection: %q", fc.output())
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()
	t.Cleanup(func() { sess.OnClose(nil) })
	return s, sess.(*Conn), fc
}

func (f *fakeConn) isShutdown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shutdown
}

// TestPartialInputHasADeadline: bytes that never complete a SignalR record
// do not keep a connection alive past the client timeout, whether they
// trickle in as a partial frame or as fragments of a message that never
// ends (with WebSocket pings between them). (Issue 12 item 8: each byte
// used to count as the client being alive, pinning its buffers forever.)
func TestPartialInputHasADeadline(t *testing.T) {
	t.Parallel()
	hello := []byte(`{"type":1,"target":"a","arguments":["` + strings.Repeat("x", 200) + `"]}` + "\x1e")
	for _, tc := range []struct {
		name  string
		input [][]byte // sent round-robin, one every 200 ms
	}{
		{"trickled frame", func() [][]byte {
			f := clientFrame126(0x81, hello)
			var parts [][]byte
			for i := range f[:len(f)-1] {
				parts = append(parts, f[i:i+1])
			}
			return parts
		}()},
		{"endless fragments", func() [][]byte {
			parts := [][]byte{clientFrame(0x01, hello[:10])}
			for range 100 {
				parts = append(parts, clientFrame(0x00, []byte("x")), clientFrame(0x89, nil))
			}
			return parts
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c, fc := openConnWith(t, Config{ClientTimeout: 2 * time.Second, KeepAliveInterval: time.Second})
			before := s.M.closed[causeTimeout.idx].Get()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// Runs before openConnWith's OnClose (cleanups run last first).
			t.Cleanup(func() { close(stop); wg.Wait() })
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, p := range tc.input {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					c.OnData(append([]byte(nil), p...))
				}
			}()
			testutil.WaitUntil(t, 8*time.Second, "connection closed at the client timeout", fc.isShutdown)
			if got := s.M.closed[causeTimeout.idx].Get(); got != before+1 {
				t.Fatalf("edgeplane_closed_total{reason=\"timeout\"} = %d, want %d (output %q)", got, before+1, fc.output())
			}
		})
	}
}

// clientFrame126 is clientFrame for payloads of 126..65535 bytes.
func clientFrame126(b0 byte, payload []byte) []byte {
	key := [4]byte{9, 8, 7, 6}
	out := []byte{b0, 0x80 | 126, byte(len(payload) >> 8), byte(len(payload))}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// TestEveryFrameCountsTowardTheRate: control frames, empty messages and
// message fragments carry no SignalR record but cost the node work; each
// counts toward --max-message-rate like a record does. (Issue 12 item 8.)
func TestEveryFrameCountsTowardTheRate(t *testing.T) {
	const limit = 20
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"pings", clientFrame(0x89, []byte("hi"))},
		{"pongs", clientFrame(0x8A, nil)},
		{"empty text messages", clientFrame(0x81, nil)},
		{"empty binary messages", clientFrame(0x82, nil)},
		{"fragments", clientFrame(0x00, []byte("x"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c, fc := openConnWith(t, Config{MaxMessageRate: limit})
			before := s.M.closed[causeRateLimited.idx].Get()
			var in []byte
			if tc.frame[0] == 0x00 {
				in = clientFrame(0x01, []byte("{"))
			}
			for range 2 * limit {
				in = append(in, tc.frame...)
			}
			c.OnData(in)
			if !fc.isShutdown() {
				t.Fatalf("%d %s in one second did not close the connection (limit %d/s)", 2*limit, tc.name, limit)
			}
			if got := s.M.closed[causeRateLimited.idx].Get(); got != before+1 {
				t.Fatalf("edgeplane_closed_total{reason=\"rate_limited\"} = %d, want %d (output %q)", got, before+1, fc.output())
			}
		})
	}
}

// queueGauge reads edgeplane_queue_bytes from the server's metrics.
func queueGauge(t *testing.T, s *Server) int {
	t.Helper()
	var b bytes.Buffer
	s.Metrics().WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "edgeplane_queue_bytes "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatalf("no edgeplane_queue_bytes in\n%s", b.String())
	return 0
}

// TestQueueGaugeCountsClosingClients: a slow client leaves its hub at
// once (no more deliveries) but its queue is only freed when the poller
// closes the socket; edgeplane_queue_bytes keeps counting it until then,
// so the gauge does not drop exactly during a slow-client storm. (Issue 12
// item 9.)
func TestQueueGaugeCountsClosingClients(t *testing.T) {
	s, c, fc := openConnWith(t, Config{})
	fc.limit = 64 << 10
	rec := []byte(`{"type":1,"target":"a","arguments":["` + strings.Repeat("x", 20<<10) + `"]}` + "\x1e")
	frame := wsframe.TextFrame(rec)
	for range 3 {
		s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
	}
	queued := fc.QueuedBytes()
	if got := queueGauge(t, s); got != queued || queued < 3*len(frame) {
		t.Fatalf("edgeplane_queue_bytes = %d, want %d (3 frames of %d queued)", got, queued, len(frame))
	}
	// The fourth does not fit: slow client.
	s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
	if !fc.isShutdown() || s.router.Hub("chat").Len() != 0 {
		t.Fatal("the slow client was not closed")
	}
	if got := queueGauge(t, s); got != fc.QueuedBytes() || got < queued {
		t.Fatalf("edgeplane_queue_bytes = %d while the closing slow client still holds %d queued bytes", got, fc.QueuedBytes())
	}
	c.OnClose(nil)
	fc.mu.Lock()
	fc.out.Reset() // the poller freed the queue
	fc.mu.Unlock()
	if got := queueGauge(t, s); got != 0 {
		t.Fatalf("edgeplane_queue_bytes = %d after the connection closed, want 0", got)
	}
}

// upstreamRecorder records the events a server hands its upstream.
type upstreamRecorder struct {
	mu     sync.Mutex
	events []backplane.Event
}

func (u *upstreamRecorder) Send(e *backplane.Event) error {
	u.mu.Lock()
	u.events = append(u.events, *e)
	u.mu.Unlock()
	return nil
}

func (u *upstreamRecorder) invocations() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, e := range u.events {
		if e.Kind == backplane.EventInvocation {
			n++
		}
	}
	return n
}

// TestBinaryMessagesAreUTF8Checked: the JSON hub protocol is text in a
// binary frame too; invalid UTF-8 there closes the connection with 1007
// and nothing reaches the upstream, where it would go on to other clients
// in text frames. A valid binary message is handled as before. (Issue 12
// item 6: binary frames used to skip the check.)
func TestBinaryMessagesAreUTF8Checked(t *testing.T) {
	up := &upstreamRecorder{}
	s, c, fc := openConnWith(t, Config{Upstream: up})
	c.OnData(clientFrame(0x82, []byte(`{"type":1,"target":"ok","arguments":["fine"]}`+"\x1e")))
	if up.invocations() != 1 || fc.isShutdown() {
		t.Fatalf("a valid binary message: %d invocations upstream, shut down %v", up.invocations(), fc.isShutdown())
	}
	before := s.M.closed[causeInvalidUTF8.idx].Get()
	c.OnData(clientFrame(0x82, []byte("{\"type\":1,\"target\":\"bad\",\"arguments\":[\"\xff\xfe\"]}\x1e")))
	if !fc.isShutdown() {
		t.Fatal("invalid UTF-8 in a binary message did not close the connection")
	}
	ops, payloads := serverFrames(t, fc.output())
	last := len(ops) - 1
	if last < 0 || ops[last] != 0x88 || binary.BigEndian.Uint16([]byte(payloads[last][:2])) != uint16(CloseInvalidPayload) {
		t.Fatalf("got frames %x %q, want a close frame with 1007 last", ops, payloads)
	}
	if up.invocations() != 1 {
		t.Fatalf("%d invocations upstream, want only the valid one", up.invocations())
	}
	if got := s.M.closed[causeInvalidUTF8.idx].Get(); got != before+1 {
		t.Fatalf("edgeplane_closed_total{reason=\"invalid_utf8\"} = %d, want %d", got, before+1)
	}
}

// TestCloseReasonsAreUTF8: a close reason from outside (REST DELETE
// ?reason=, percent-decoded to any bytes) reaches the client as valid
// UTF-8 in both the SignalR Close record and the WebSocket close frame;
// browsers and Node fail the connection on invalid UTF-8 in either rather
// than read why it closed. (Issue 12 item 6.)
func TestCloseReasonsAreUTF8(t *testing.T) {
	s, c, fc := openConnWith(t, Config{})
	if !s.CloseConnection("chat", c.entry.ID(), "bye \xff\xfe now") {
		t.Fatal("CloseConnection did not find the connection")
	}
	ops, payloads := serverFrames(t, fc.output())
	if len(ops) != 2 || ops[0] != 0x81 || ops[1] != 0x88 {
		t.Fatalf("got frames %x %q, want a SignalR Close then a close frame", ops, payloads)
	}
	for i, p := range payloads {
		if !utf8.ValidString(p[min(i*2, len(p)):]) {
			t.Errorf("frame %d (op %x) carries invalid UTF-8: %q", i, ops[i], p)
		}
	}
	if reason := payloads[1][2:]; reason != "bye \uFFFD now" {
		t.Errorf("close reason %q, want %q", reason, "bye \uFFFD now")
	}
}
