package conn

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// Tests for behaviours that mutation testing (docs/MUTATION.md, issue 19)
// found no test pinned down: deadlines to the second, what a slow client
// receives, Deliver, drain pacing, defaults.

// clockServer is a server whose timing wheel is stopped at second sec:
// the test moves the clock (setClock) and calls a connection's tick as the
// sweep of that second would, so deadlines are checked to the second
// without waiting for them.
func clockServer(t *testing.T, cfg Config, sec int64) *Server {
	t.Helper()
	s := newTestServer(t, cfg)
	s.Close() // stops the wheel's goroutine; the cleanup's Close is a no-op
	setClock(s, sec)
	return s
}

// setClock sets the stopped wheel's clock to sec, as during its sweep.
func setClock(s *Server, sec int64) {
	s.wheel.mu.Lock()
	s.wheel.now.Store(sec)
	s.wheel.swept = sec
	s.wheel.mu.Unlock()
}

// tickAt runs c's tick for second sec and returns its next deadline.
func tickAt(s *Server, c *Conn, sec int64) int64 {
	setClock(s, sec)
	return c.tick(sec)
}

// serverFrame is one frame the server sent.
type serverFrame struct {
	op      byte
	payload string
}

// readServerFrames splits the server's frames (unmasked, any length).
func readServerFrames(t *testing.T, b []byte) []serverFrame {
	t.Helper()
	var out []serverFrame
	for len(b) > 0 {
		if len(b) < 2 || b[1]&0x80 != 0 {
			t.Fatalf("bad server frame bytes %q", b)
		}
		n, hn := int(b[1]&0x7f), 2
		switch {
		case n == 126 && len(b) >= 4:
			n, hn = int(binary.BigEndian.Uint16(b[2:4])), 4
		case n == 127 && len(b) >= 10:
			n, hn = int(binary.BigEndian.Uint64(b[2:10])), 10
		}
		if len(b) < hn+n {
			t.Fatalf("truncated server frame %q", b)
		}
		out = append(out, serverFrame{b[0] & 0x0f, string(b[hn : hn+n])})
		b = b[hn+n:]
	}
	return out
}

// closeRecord is a SignalR Close record as the client reads it.
type closeRecord struct {
	Type           int    `json:"type"`
	Error          string `json:"error"`
	AllowReconnect bool   `json:"allowReconnect"`
}

// checkClosed checks that frames end in a SignalR Close record (text,
// allowReconnect) and then a close frame (code, text); it returns the
// frames before them.
func checkClosed(t *testing.T, frames []serverFrame, code CloseCode, text string, reconnect bool) []serverFrame {
	t.Helper()
	n := len(frames)
	if n < 2 || frames[n-2].op != byte(wsframe.OpText) || frames[n-1].op != byte(wsframe.OpClose) {
		t.Fatalf("frames %q: want a SignalR Close record then a close frame last", frames)
	}
	var rec closeRecord
	p := frames[n-2].payload
	if !strings.HasSuffix(p, "\x1e") || json.Unmarshal([]byte(strings.TrimSuffix(p, "\x1e")), &rec) != nil ||
		rec.Type != 7 || rec.Error != text || rec.AllowReconnect != reconnect {
		t.Fatalf("SignalR Close record %q, want error %q allowReconnect %v", p, text, reconnect)
	}
	cp := frames[n-1].payload
	if len(cp) < 2 || CloseCode(binary.BigEndian.Uint16([]byte(cp[:2]))) != code || cp[2:] != text {
		t.Fatalf("close frame %q, want %d %q", cp, code, text)
	}
	return frames[:n-2]
}

// TestHandshakeDeadline: a connection that has not completed its SignalR
// handshake (HTTP request still coming, or WebSocket open without the
// handshake) is closed at the handshake deadline to the second: not a
// second before, not at the client time-out (which is longer here, 7 s
// against 5 s, and shorter in the second case). Until then the wheel looks
// at it again by the keep-alive interval at the latest, so the first Ping
// after a late handshake is on time.
func TestHandshakeDeadline(t *testing.T) {
	cfg := Config{HandshakeTimeout: 5 * time.Second, KeepAliveInterval: 3 * time.Second, ClientTimeout: 7 * time.Second}
	t.Run("WebSocket open, no handshake", func(t *testing.T) {
		s := clockServer(t, cfg, 100)
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		defer c.OnClose(nil)
		if c.wslot != 103%wheelSlots+1 {
			t.Fatalf("opened in second 100: scheduled in slot %d, want second 103's (the keep-alive interval, before the 5 s deadline)", c.wslot-1)
		}
		c.OnData([]byte(testUpgrade))
		if c.state.Load() != stHandshake {
			t.Fatalf("upgrade: %q", fc.output())
		}
		fc.mu.Lock()
		fc.out.Reset()
		fc.mu.Unlock()
		before := s.M.closed[causeHandshakeTimeout.idx].Get()
		for sec, want := range map[int64]int64{101: 104, 102: 105, 103: 105, 104: 105} {
			if next := tickAt(s, c, sec); next != want || fc.isShutdown() {
				t.Fatalf("tick in second %d: next %d (want %d), closed %v", sec, next, want, fc.isShutdown())
			}
		}
		if next := tickAt(s, c, 105); next != 106 || !fc.isShutdown() {
			t.Fatalf("tick at the deadline (second 105): next %d, closed %v", next, fc.isShutdown())
		}
		f := readServerFrames(t, fc.output())
		if len(f) != 1 || f[0].op != byte(wsframe.OpClose) || f[0].payload != "\x03\xf0handshake timed out" {
			t.Fatalf("handshake time-out sent %q, want only close 1008 \"handshake timed out\"", f)
		}
		if got := s.M.closed[causeHandshakeTimeout.idx].Get(); got != before+1 {
			t.Fatalf("edgeplane_closed_total{reason=\"handshake_timeout\"} = %d, want %d", got, before+1)
		}
		// Closed but not gone yet: watched until the poller closes it.
		if next := tickAt(s, c, 106); next != 106+1+5 {
			t.Fatalf("tick of a closing connection: next %d, want %d", next, 106+1+5)
		}
		c.OnClose(nil)
		if next := tickAt(s, c, 112); next != 0 {
			t.Fatalf("tick after OnClose: next %d, want 0 (leave the wheel)", next)
		}
	})
	t.Run("HTTP request trickling", func(t *testing.T) {
		s := clockServer(t, cfg, 100)
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		defer c.OnClose(nil)
		c.OnData([]byte("GET /chat HTTP/1.1\r\n"))
		tickAt(s, c, 104)
		if fc.isShutdown() {
			t.Fatal("closed before the handshake deadline")
		}
		tickAt(s, c, 105)
		if !fc.isShutdown() || len(fc.output()) != 0 {
			t.Fatalf("at the deadline: closed %v, sent %q (want closed, nothing sent)", fc.isShutdown(), fc.output())
		}
	})
	t.Run("handshake deadline longer than the client time-out", func(t *testing.T) {
		s := clockServer(t, Config{HandshakeTimeout: 9 * time.Second, KeepAliveInterval: 2 * time.Second, ClientTimeout: 4 * time.Second}, 100)
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		defer c.OnClose(nil)
		c.OnData([]byte(testUpgrade))
		for sec := int64(101); sec < 109; sec++ {
			tickAt(s, c, sec)
		}
		if fc.isShutdown() {
			t.Fatalf("closed before its 9 s handshake deadline: %q", fc.output())
		}
		setClock(s, 108)
		c.OnData(clientFrame(0x81, testHandshake))
		if c.state.Load() != stOpen {
			t.Fatalf("late handshake refused: %q", fc.output())
		}
		// The client time-out counts from the handshake.
		if next := tickAt(s, c, 109); next != 110 || fc.isShutdown() {
			t.Fatalf("first tick after the handshake: next %d (want the keep-alive, 110), closed %v", next, fc.isShutdown())
		}
	})
}

// TestKeepAliveTicks: on an open connection the tick sends a Ping after
// the keep-alive interval of outbound silence (anything sent, a delivery
// or the connection's own frame, counts), closes it after the client
// time-out without a record from the client (SignalR Close with
// allowReconnect, then close 1000), and returns the earlier of the two
// next deadlines.
func TestKeepAliveTicks(t *testing.T) {
	cfg := Config{HandshakeTimeout: 5 * time.Second, KeepAliveInterval: 3 * time.Second, ClientTimeout: 7 * time.Second}
	s := clockServer(t, cfg, 100)
	fc := &fakeConn{}
	c := s.OnOpen(fc).(*Conn)
	defer c.OnClose(nil)
	c.OnData([]byte(testUpgrade))
	c.OnData(clientFrame(0x81, testHandshake))
	if c.state.Load() != stOpen {
		t.Fatalf("handshake: %q", fc.output())
	}
	if c.lastRead.Load() != 100 || c.lastWrite.Load() != 100 {
		t.Fatalf("after the handshake in second 100: lastRead %d, lastWrite %d", c.lastRead.Load(), c.lastWrite.Load())
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()
	pings := func() int { return strings.Count(string(fc.output()), "{\"type\":6}\x1e") }
	ownOut, ownBytes := s.M.ownOut.Get(), s.M.ownBytes.Get()

	if next := tickAt(s, c, 102); next != 103 || pings() != 0 {
		t.Fatalf("second 102: next %d (want 103), %d pings", next, pings())
	}
	if next := tickAt(s, c, 103); next != 106 || pings() != 1 {
		t.Fatalf("second 103, 3 s silent: next %d (want 106), %d pings (want 1)", next, pings())
	}
	if s.M.ownOut.Get() != ownOut+1 || s.M.ownBytes.Get() != ownBytes+uint64(len(pingFrames[hubproto.IDJSON])) || c.lastWrite.Load() != 103 {
		t.Fatalf("the Ping: control frames %d (+%d), bytes %d (+%d), lastWrite %d", s.M.ownOut.Get(), s.M.ownOut.Get()-ownOut,
			s.M.ownBytes.Get(), s.M.ownBytes.Get()-ownBytes, c.lastWrite.Load())
	}
	// A delivery in second 105 is outbound traffic: no Ping in 106.
	setClock(s, 105)
	c.Deliver(fanout.NewFrames([]byte(`{"type":1,"target":"x","arguments":[]}`+"\x1e"), nil))
	if next := tickAt(s, c, 106); next != 107 || pings() != 1 {
		t.Fatalf("second 106, a delivery in 105: next %d (want the time-out, 107), %d pings (want 1)", next, pings())
	}
	// A client record in second 106 pushes the time-out to 113.
	setClock(s, 106)
	c.OnData(clientFrame(0x81, []byte(`{"type":6}`+"\x1e")))
	if next := tickAt(s, c, 107); next != 108 || fc.isShutdown() {
		t.Fatalf("second 107, a record in 106: next %d (want the keep-alive, 108), closed %v", next, fc.isShutdown())
	}
	if next := tickAt(s, c, 112); next != 113 || fc.isShutdown() {
		t.Fatalf("second 112: next %d (want 113), closed %v", next, fc.isShutdown())
	}
	fc.mu.Lock()
	fc.out.Reset()
	fc.mu.Unlock()
	before := s.M.closed[causeTimeout.idx].Get()
	if next := tickAt(s, c, 113); next != 114 || !fc.isShutdown() {
		t.Fatalf("second 113, 7 s without a record: next %d, closed %v", next, fc.isShutdown())
	}
	if rest := checkClosed(t, readServerFrames(t, fc.output()), CloseNormal, causeTimeout.text, true); len(rest) != 0 {
		t.Fatalf("sent %q before the close", rest)
	}
	if got := s.M.closed[causeTimeout.idx].Get(); got != before+1 {
		t.Fatalf("edgeplane_closed_total{reason=\"timeout\"} = %d, want %d", got, before+1)
	}
}

// TestHandshakeTimeoutOnTheWheel: the handshake deadline through the
// running wheel, with a client time-out and keep-alive of an hour: a
// WebSocket that never sends its handshake is closed by the 1 s deadline.
func TestHandshakeTimeoutOnTheWheel(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{HandshakeTimeout: time.Second, KeepAliveInterval: time.Hour, ClientTimeout: time.Hour})
	fc := &fakeConn{}
	c := s.OnOpen(fc).(*Conn)
	defer c.OnClose(nil)
	c.OnData([]byte(testUpgrade))
	testutil.WaitUntil(t, 10*time.Second, "the handshake deadline to close the connection", fc.isShutdown)
	if got := s.M.closed[causeHandshakeTimeout.idx].Get(); got != 1 {
		t.Fatalf("edgeplane_closed_total{reason=\"handshake_timeout\"} = %d, want 1", got)
	}
}

// TestSlowClientThroughDeliver: deliveries that overflow a client's
// outbound queue close it. The client receives what fitted, in order, then
// a SignalR Close with allowReconnect and the slow-client text, then close
// 1008; nothing of the overflowing delivery; it leaves its hub at once and
// is counted as slow_client.
func TestSlowClientThroughDeliver(t *testing.T) {
	s, c, fc := openConn(t)
	rec := func(i int) []byte {
		return []byte(`{"type":1,"target":"m","arguments":[` + string(rune('0'+i)) + `]}` + "\x1e")
	}
	frame := wsframe.TextFrame(rec(0))
	fc.limit = 3*len(frame) + len(frame)/2
	before := s.M.closed[causeSlowClient.idx].Get()
	for i := range 5 {
		s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec(i)})
	}
	got := checkClosed(t, readServerFrames(t, fc.output()), ClosePolicyViolation, causeSlowClient.text, true)
	if len(got) != 3 {
		t.Fatalf("%d records before the close, want the 3 that fitted: %q", len(got), got)
	}
	for i, f := range got {
		if f.op != byte(wsframe.OpText) || f.payload != string(rec(i)) {
			t.Fatalf("frame %d: %q, want %q", i, f.payload, rec(i))
		}
	}
	if s.router.Hub("chat").Len() != 0 {
		t.Fatal("slow client still in its hub")
	}
	if got := s.M.closed[causeSlowClient.idx].Get(); got != before+1 {
		t.Fatalf("edgeplane_closed_total{reason=\"slow_client\"} = %d, want %d", got, before+1)
	}
	if got := disconnectReason(c.cause(), nil); got != "slow_client" {
		t.Fatalf("upstream disconnect reason %q", got)
	}
}

// TestDeliver: a delivery is queued as given and counts as outbound
// traffic (it postpones the keep-alive Ping); one the socket refuses
// because it is already closed (the peer went away, OnClose not run yet)
// is dropped without closing the connection as a slow client. A frame the
// connection sends itself (a Pong) that overflows the queue closes it as
// a slow client too.
func TestDeliver(t *testing.T) {
	t.Run("queued and counted as traffic", func(t *testing.T) {
		s, c, fc := openConn(t)
		s.Close()
		setClock(s, 50)
		rec := []byte(`{"type":1,"target":"a","arguments":[]}` + "\x1e")
		frame := wsframe.TextFrame(rec)
		c.Deliver(fanout.NewFrames(rec, nil))
		if string(fc.output()) != string(frame) || c.lastWrite.Load() != 50 {
			t.Fatalf("sent %q, lastWrite %d; want the frame and second 50", fc.output(), c.lastWrite.Load())
		}
	})
	t.Run("socket already closed", func(t *testing.T) {
		s, c, fc := openConn(t)
		s.Close()
		setClock(s, 50)
		fc.Close() // the poller saw the peer go; OnClose comes next
		c.Deliver(fanout.NewFrames([]byte(`{"type":6}`+"\x1e"), nil))
		if c.state.Load() != stOpen || s.M.closed[causeSlowClient.idx].Get() != 0 || c.lastWrite.Load() == 50 {
			t.Fatalf("delivery to a closed socket: state %d, slow_client %d, lastWrite %d; want none of it",
				c.state.Load(), s.M.closed[causeSlowClient.idx].Get(), c.lastWrite.Load())
		}
	})
	t.Run("own frame overflows", func(t *testing.T) {
		s, c, fc := openConn(t)
		fc.limit = 8
		own := s.M.ownOut.Get()
		c.OnData(clientFrame(0x89, []byte("0123456789")))
		if !fc.isShutdown() || s.M.closed[causeSlowClient.idx].Get() != 1 {
			t.Fatalf("a Pong over the queue limit: closed %v, slow_client %d", fc.isShutdown(), s.M.closed[causeSlowClient.idx].Get())
		}
		if s.M.ownOut.Get() != own {
			t.Fatalf("control frames counted %d, want %d (the refused Pong is not)", s.M.ownOut.Get(), own)
		}
	})
}

// TestDrainPacesCloses: Drain closes the connections spread over its
// window: the first at once, the next a quarter of the window later (of
// four); the ones not yet due keep receiving until their turn, then get a
// SignalR Close with allowReconnect and close 1012 after what was queued.
// A context that ends closes the rest at once.
func TestDrainPacesCloses(t *testing.T) {
	t.Parallel()
	connect := func(t *testing.T, s *Server, n int) []*fakeConn {
		var fcs []*fakeConn
		for range n {
			fc := &fakeConn{}
			sess := s.OnOpen(fc)
			t.Cleanup(func() { sess.OnClose(nil) })
			sess.OnData([]byte(testUpgrade))
			sess.OnData(clientFrame(0x81, testHandshake))
			fc.mu.Lock()
			fc.out.Reset()
			fc.mu.Unlock()
			fcs = append(fcs, fc)
		}
		if s.router.Hub("chat").Len() != n {
			t.Fatalf("%d connections registered, want %d", s.router.Hub("chat").Len(), n)
		}
		return fcs
	}
	shut := func(fcs []*fakeConn) int {
		n := 0
		for _, fc := range fcs {
			if fc.isShutdown() {
				n++
			}
		}
		return n
	}
	t.Run("one hour window", func(t *testing.T) {
		t.Parallel()
		s := newTestServer(t, Config{})
		fcs := connect(t, s, 4)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() { defer close(done); s.Drain(ctx, time.Hour) }()
		testutil.WaitUntil(t, 10*time.Second, "the first close of the drain", func() bool { return shut(fcs) > 0 })
		// The next is due in 15 minutes: the other three are open.
		mid := []byte(`{"type":1,"target":"mid","arguments":[]}` + "\x1e")
		s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: mid})
		if n := shut(fcs); n != 1 {
			t.Fatalf("%d of 4 closed at once with a window of an hour, want 1", n)
		}
		cancel()
		testutil.WaitUntil(t, 10*time.Second, "Drain to return once its context ended", func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		})
		gotMid := 0
		for i, fc := range fcs {
			if !fc.isShutdown() {
				t.Fatalf("connection %d open after the drain", i)
			}
			rest := checkClosed(t, readServerFrames(t, fc.output()), CloseServiceRestart, causeShutdown.text, true)
			if len(rest) == 1 && rest[0].payload == string(mid) {
				gotMid++
			} else if len(rest) != 0 {
				t.Fatalf("connection %d got %q before its close", i, rest)
			}
		}
		if gotMid != 3 {
			t.Fatalf("%d connections got the message sent after the first close, want the 3 still open", gotMid)
		}
	})
	t.Run("window ends", func(t *testing.T) {
		t.Parallel()
		// Twenty over one second: the last is due 950 ms after the first
		// (the deadline is ten times that: pacing over twenty windows, or
		// twenty times twenty, would miss it).
		s := newTestServer(t, Config{})
		fcs := connect(t, s, 20)
		done := make(chan struct{})
		go func() { defer close(done); s.Drain(context.Background(), time.Second) }()
		testutil.WaitUntil(t, 10*time.Second, "a one-second drain to close all twenty", func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		})
		if n := shut(fcs); n != 20 {
			t.Fatalf("%d of 20 closed", n)
		}
	})
}

// TestConfigWithDefaults: every unset (zero) field gets its default, and
// so does every negative duration or size; a negative accept rate or
// message rate (disabled) and context size (no context) are kept.
func TestConfigWithDefaults(t *testing.T) {
	want := Config{
		TokenTTL: DefaultTokenTTL, MaxMessageBytes: DefaultMaxMessageBytes, MaxHeaderBytes: DefaultMaxHeaderBytes,
		HandshakeTimeout: DefaultHandshakeTimeout, KeepAliveInterval: DefaultKeepAliveInterval, ClientTimeout: DefaultClientTimeout,
		AcceptRate: DefaultAcceptRate, AcceptBurst: DefaultAcceptRate, RetryAfter: DefaultRetryAfter,
		MaxMessageRate: DefaultMaxMessageRate, ContextMaxBytes: DefaultContextMaxBytes,
		ReconnectWindow: DefaultReconnectWindow, ReconnectBufferBytes: DefaultReconnectBufferBytes,
		PollTimeout: DefaultPollTimeout, HTTPQueueBytes: DefaultHTTPQueueBytes,
	}
	check := func(name string, got Config, want Config) {
		t.Helper()
		if got.Logger == nil {
			t.Errorf("%s: no logger", name)
		}
		got.Logger = nil
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Errorf("%s:\n got %s\nwant %s", name, gj, wj)
		}
	}
	check("zero", Config{}.WithDefaults(), want)
	neg := Config{
		TokenTTL: -1, MaxMessageBytes: -1, MaxHeaderBytes: -1, HandshakeTimeout: -1, KeepAliveInterval: -1, ClientTimeout: -1,
		AcceptRate: -1, AcceptBurst: -1, RetryAfter: -1, MaxMessageRate: -1, ContextMaxBytes: -1,
	}.WithDefaults()
	wantNeg := want
	wantNeg.AcceptRate, wantNeg.AcceptBurst, wantNeg.MaxMessageRate, wantNeg.ContextMaxBytes = -1, 1, -1, -1
	check("negative", neg, wantNeg)
	set := Config{
		TokenTTL: 1, MaxMessageBytes: 1, MaxHeaderBytes: 1, HandshakeTimeout: 1, KeepAliveInterval: 1, ClientTimeout: 1,
		AcceptRate: 0.5, AcceptBurst: 1, RetryAfter: 1, MaxMessageRate: 1, ContextMaxBytes: 1,
		ReconnectWindow: 1, ReconnectBufferBytes: 1, PollTimeout: 1, HTTPQueueBytes: 1,
	}
	check("set", set.WithDefaults(), set)
	if got := (Config{AcceptRate: 250.7}).WithDefaults().AcceptBurst; got != 250 {
		t.Errorf("AcceptBurst defaults to the rate: %d, want 250", got)
	}
	for d, want := range map[time.Duration]int64{
		0: 1, 1: 1, time.Second - 1: 1, time.Second: 1, time.Second + 1: 2, 1500 * time.Millisecond: 2, 2 * time.Second: 2, time.Hour: 3600,
	} {
		if got := secs(d); got != want {
			t.Errorf("secs(%v) = %d, want %d", d, got, want)
		}
	}
}

// TestOnCloseAccounting: a socket that goes away under an open connection
// is counted as peer_gone once; one the node closed itself is counted
// under its cause only. OnClose frees the partial input the connection
// held (a fragmented message that never ended): no buffers are left.
func TestOnCloseAccounting(t *testing.T) {
	t.Run("peer gone", func(t *testing.T) {
		s, c, _ := openConn(t)
		c.OnData(clientFrame(0x01, []byte(`{"type":1,`))) // a fragment, never finished
		if c.bufs == nil || c.bufs.frag == nil {
			t.Fatal("the fragment is not kept")
		}
		c.OnClose(nil)
		if got := s.M.closed[causePeerGone.idx].Get(); got != 1 {
			t.Fatalf("edgeplane_closed_total{reason=\"peer_gone\"} = %d, want 1", got)
		}
		if c.bufs != nil {
			t.Fatalf("buffers held after OnClose: %+v", c.bufs)
		}
	})
	t.Run("closed by the node", func(t *testing.T) {
		s, c, _ := openConn(t)
		c.closeWith(causeServerClose)
		c.OnClose(nil)
		if got := s.M.closed[causePeerGone.idx].Get(); got != 0 {
			t.Fatalf("edgeplane_closed_total{reason=\"peer_gone\"} = %d after a close by the node, want 0", got)
		}
		if got := s.M.closed[causeServerClose.idx].Get(); got != 1 {
			t.Fatalf("edgeplane_closed_total{reason=\"server_close\"} = %d, want 1", got)
		}
	})
}

// failingUpstream refuses every event, recording them.
type failingUpstream struct{ upstreamRec }

func (u *failingUpstream) Send(e *backplane.Event) error {
	u.upstreamRec.Send(e)
	return errors.New("upstream full")
}

func (u *upstreamRec) kinds() []backplane.EventKind {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []backplane.EventKind
	for _, e := range u.events {
		out = append(out, e.Kind)
	}
	return out
}

// TestUpstreamEvents: an open connection gives its upstream one connected
// event, its invocations and one disconnected event with the reason; a
// connection that never completed its handshake gives none. Events the
// upstream refuses are counted, and a refused invocation that expects an
// answer gets a Completion with the upstream's error.
func TestUpstreamEvents(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		up := &upstreamRec{}
		s, c, _ := openConnWith(t, Config{Upstream: up})
		c.OnData(clientFrame(0x81, []byte(`{"type":1,"target":"a","arguments":[]}`+"\x1e")))
		c.closeWith(causeServerClose)
		c.OnClose(nil)
		if got := up.kinds(); !slices.Equal(got, []backplane.EventKind{backplane.EventConnected, backplane.EventInvocation, backplane.EventDisconnected}) {
			t.Fatalf("events %v, want connected, invocation, disconnected", got)
		}
		if r := up.events[2].Reason; r != "server_close" {
			t.Fatalf("disconnected reason %q, want server_close", r)
		}
		if s.M.upstreamErr.Get() != 0 || s.M.dropped.Get() != 0 {
			t.Fatalf("upstream errors %d, dropped %d; want 0", s.M.upstreamErr.Get(), s.M.dropped.Get())
		}
		// Not registered: no events.
		fc := &fakeConn{}
		hc := s.OnOpen(fc)
		hc.OnData([]byte(testUpgrade))
		hc.OnClose(nil)
		if n := len(up.kinds()); n != 3 {
			t.Fatalf("a connection that never completed its handshake gave %d events", n-3)
		}
	})
	t.Run("refused", func(t *testing.T) {
		up := &failingUpstream{}
		s, c, fc := openConnWith(t, Config{Upstream: up})
		if got := s.M.upstreamErr.Get(); got != 1 {
			t.Fatalf("refused connected event: upstream errors %d, want 1", got)
		}
		c.OnData(clientFrame(0x81, []byte(`{"type":1,"invocationId":"9","target":"a","arguments":[]}`+"\x1e")))
		f := readServerFrames(t, fc.output())
		if len(f) != 1 || f[0].payload != `{"type":3,"invocationId":"9","error":"upstream full"}`+"\x1e" {
			t.Fatalf("answer to a refused invocation: %q", f)
		}
		if s.M.upstreamErr.Get() != 2 || s.M.dropped.Get() != 1 {
			t.Fatalf("after a refused invocation: upstream errors %d (want 2), dropped %d (want 1)", s.M.upstreamErr.Get(), s.M.dropped.Get())
		}
		c.OnClose(nil)
		if got := s.M.upstreamErr.Get(); got != 3 {
			t.Fatalf("refused disconnected event: upstream errors %d, want 3", got)
		}
	})
}

// TestDepartedTokenRefused: a negotiated connection that leaves makes its
// token unusable until the token expires (the used set holds its expiry);
// a skipNegotiation connection, which had no token, leaves nothing.
func TestDepartedTokenRefused(t *testing.T) {
	s := newTestServer(t, Config{})
	_, body := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatal(err)
	}
	id, exp, err := s.signer.verify("chat", n.ConnectionToken, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := connectHandshake(t, s, upgradeReq("/chat?id="+n.ConnectionToken, ""))
	c.OnClose(nil)
	s.usedMu.Lock()
	got, ok := s.used[id]
	s.usedMu.Unlock()
	if !ok || got != exp.Unix() {
		t.Fatalf("used set: %v %d, want the token's expiry %d", ok, got, exp.Unix())
	}
	if resp, _ := exchange(t, s, upgradeReq("/chat?id="+n.ConnectionToken, "")); resp.StatusCode != 409 {
		t.Fatalf("reconnect with a departed token: %d, want 409", resp.StatusCode)
	}
	c, _ = connectHandshake(t, s, upgradeReq("/chat", ""))
	c.OnClose(nil)
	s.usedMu.Lock()
	defer s.usedMu.Unlock()
	if len(s.used) != 1 {
		t.Fatalf("used set holds %d ids after a skipNegotiation connection left, want 1", len(s.used))
	}
}

// TestTokenPreviousKeyWindow: after a key change the previous key is
// accepted for one token lifetime and a second (a token it signed just
// before the change is valid to its end), and no longer.
func TestTokenPreviousKeyWindow(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	s := &tokenSigner{key: []byte("old-key"), ttl: time.Minute}
	last := s.issue("chat", newConnID(), t0)
	old := &tokenSigner{key: []byte("old-key"), ttl: time.Hour}
	late := old.issue("chat", newConnID(), t0) // a node still on the old key
	if !s.setKey([]byte("new-key"), t0) {
		t.Fatal("setKey reported no change")
	}
	if _, _, err := s.verify("chat", last, t0.Add(time.Minute)); err != nil {
		t.Fatalf("the last token of the old key at the end of its lifetime: %v", err)
	}
	if _, _, err := s.verify("chat", late, t0.Add(time.Minute+time.Second-1)); err != nil {
		t.Fatalf("an old-key token within a lifetime and a second of the change: %v", err)
	}
	if _, _, err := s.verify("chat", late, t0.Add(time.Minute+time.Second)); err != ErrBadToken {
		t.Fatalf("an old-key token a lifetime and a second after the change: %v, want ErrBadToken", err)
	}
}

// TestCloseConnectionNotLocal: a REST close for an unknown hub or a
// connection not on this node reports false and closes nothing.
func TestCloseConnectionNotLocal(t *testing.T) {
	s, c, fc := openConn(t)
	if s.CloseConnection("nope", c.entry.ID(), "") || s.CloseConnection("chat", "AAAAAAAAAAAAAAAAAAAAAA", "") {
		t.Fatal("CloseConnection reported a connection that is not here")
	}
	if fc.isShutdown() {
		t.Fatal("another connection was closed")
	}
}

// TestConnectContextBudget: what fits ContextMaxBytes, to the byte: the
// remote address always, then the query, the claims and the headers in
// name order, each counted as the JSON it becomes ("k":["v"], plus the
// braces); one byte less leaves the last part out and marks the context
// truncated.
func TestConnectContextBudget(t *testing.T) {
	const remote = len("127.0.0.1:1")
	ctxFor := func(t *testing.T, cfg Config, req string) *backplane.ConnectContext {
		t.Helper()
		up := &upstreamRec{}
		cfg.Upstream = up
		s := newTestServer(t, cfg)
		c, _ := connectHandshake(t, s, req)
		defer c.OnClose(nil)
		return up.connected(t)
	}
	// Headers: Host (4+6 + 21+3 = 34) and X-A (3+6 + 4+3 = 16).
	req := upgradeReq("/chat", "X-A: vvvv\r\n")
	full := remote + 2 + 34 + 16
	if cc := ctxFor(t, Config{ContextMaxBytes: full}, req); cc.Truncated || len(cc.Headers) != 2 {
		t.Fatalf("budget %d: headers %v, truncated %v; want both, not truncated", full, cc.Headers, cc.Truncated)
	}
	if cc := ctxFor(t, Config{ContextMaxBytes: full - 1}, req); !cc.Truncated || len(cc.Headers) != 1 || cc.Headers["Host"] == nil {
		t.Fatalf("budget %d: headers %v, truncated %v; want Host only, truncated", full-1, cc.Headers, cc.Truncated)
	}
	// The query (q=12345: 7 bytes), and nothing left for headers.
	qreq := upgradeReq("/chat?q=12345", "")
	if cc := ctxFor(t, Config{ContextMaxBytes: remote + 7}, qreq); cc.Query != "q=12345" || cc.Headers != nil || !cc.Truncated {
		t.Fatalf("budget for the query exactly: %+v", cc)
	}
	if cc := ctxFor(t, Config{ContextMaxBytes: remote + 6}, qreq); cc.Query != "" || !cc.Truncated {
		t.Fatalf("budget a byte short of the query: %+v", cc)
	}
	// The claims.
	tok := clientToken(t, map[string]any{"nameid": "alice"})
	creq := upgradeReq("/chat?access_token="+tok, "")
	raw := len(ctxFor(t, Config{AccessKey: testKey}, creq).Claims)
	if raw == 0 {
		t.Fatal("no claims in the context")
	}
	if cc := ctxFor(t, Config{AccessKey: testKey, ContextMaxBytes: remote + raw}, creq); len(cc.Claims) != raw {
		t.Fatalf("budget for the claims exactly: %+v", cc)
	}
	if cc := ctxFor(t, Config{AccessKey: testKey, ContextMaxBytes: remote + raw - 1}, creq); cc.Claims != nil || !cc.Truncated {
		t.Fatalf("budget a byte short of the claims: %+v", cc)
	}
}

// TestAckAndWindowTicks: stateful reconnect on the tick, to the second
// (TestAckCadence and TestResumeExpiry check the same through the running
// wheel, in real seconds). The client's messages are acknowledged at the
// next tick, once for the burst, with the last id; a tick with nothing new
// sends no Ack; a detached connection is kept until the second its window
// ends, not one before, then ends as reconnect_expired.
func TestAckAndWindowTicks(t *testing.T) {
	s := clockServer(t, Config{KeepAliveInterval: 3 * time.Second, ClientTimeout: 30 * time.Second, ReconnectWindow: 5 * time.Second}, 100)
	sc := openStateful(t, s, "")
	c := sc.c
	sc.send(inv("i1"), inv("i2"))
	sc.send(inv("i3"))
	if r := sc.records(); len(r) != 0 {
		t.Fatalf("sent %q from the input path, want nothing before the tick", r)
	}
	if next := tickAt(s, c, 101); next != 104 || !slices.Equal(sc.records(), []string{`{"type":8,"sequenceId":3}`}) {
		t.Fatalf("tick in second 101: next %d (want the keep-alive after the Ack, 104), sent %q (want Ack{3})", next, sc.records())
	}
	if next := tickAt(s, c, 102); next != 104 || len(sc.records()) != 1 {
		t.Fatalf("tick in second 102, nothing new: next %d (want 104), sent %q", next, sc.records())
	}
	sc.send(inv("i4"))
	if next := tickAt(s, c, 103); next != 106 || !slices.Equal(sc.records(), []string{`{"type":8,"sequenceId":3}`, `{"type":8,"sequenceId":4}`}) {
		t.Fatalf("tick in second 103 after i4: next %d (want 106), sent %q (want Ack{4} after Ack{3})", next, sc.records())
	}
	if next := tickAt(s, c, 106); next != 109 || sc.records()[2] != `{"type":6}` || len(sc.records()) != 3 {
		t.Fatalf("tick in second 106, 3 s after the Ack: next %d (want 109), sent %q (want a Ping, no Ack)", next, sc.records())
	}

	setClock(s, 110)
	sc.drop()
	if c.state.Load() != stDetached {
		t.Fatalf("dropped socket: state %d, want detached", c.state.Load())
	}
	if next := tickAt(s, c, 114); next != 115 || c.state.Load() != stDetached {
		t.Fatalf("tick in second 114 of a window ending in 115: next %d, state %d (want 115, still detached)", next, c.state.Load())
	}
	if next := tickAt(s, c, 115); next != 0 || c.state.Load() != stClosed {
		t.Fatalf("tick at the end of the window: next %d, state %d (want 0, closed)", next, c.state.Load())
	}
	if got := s.M.closed[causeReconnectExpired.idx].Get(); got != 1 || s.router.Hub("chat").Len() != 0 {
		t.Fatalf("reconnect_expired %d, registered %d; want 1 and 0", got, s.router.Hub("chat").Len())
	}
}

// TestSequenceWithoutDuplicatesKeepsNothing: a Sequence naming the next
// message the node expects (nothing to skip) on a connection that holds no
// replay state leaves it holding none: an idle stateful connection costs
// no more than its counters.
func TestSequenceWithoutDuplicatesKeepsNothing(t *testing.T) {
	s := newTestServer(t, Config{})
	sc := openStateful(t, s, "")
	broadcast(s, "m1")
	sc.send(inv("i1"), `{"type":8,"sequenceId":1}`)
	if rs := sc.c.rs.Load(); rs.x != nil {
		t.Fatalf("replay state kept after everything was acknowledged: %+v", rs.x)
	}
	sc.send(`{"type":9,"sequenceId":2}`)
	if sc.fc.isShutdown() {
		t.Fatalf("Sequence{2} after message 1 closed the connection: %q", sc.records())
	}
	if rs := sc.c.rs.Load(); rs.x != nil {
		t.Fatalf("replay state allocated by a Sequence with nothing to skip: %+v", rs.x)
	}
	sc.send(inv("i2"))
	if rs := sc.c.rs.Load(); rs.recv != 2 {
		t.Fatalf("message after the Sequence: recv %d, want 2 (not taken for a duplicate)", rs.recv)
	}
}

// TestServiceRelayNotStateful: a client relayed to an app server (service
// mode, /client/negotiate) is not offered stateful reconnect even when it
// asks (the app's connection has no window to keep it in); a client of
// the same node on its hub's own path is.
func TestServiceRelayNotStateful(t *testing.T) {
	s := newTestServer(t, Config{Service: &recService{}})
	const ask = "negotiateVersion=1&useStatefulReconnect=true"
	resp, body := exchange(t, s, negotiateReq("/client/negotiate?hub=chat&"+ask, ""))
	if resp.StatusCode != 200 || !strings.Contains(body, "connectionToken") || strings.Contains(body, "useStatefulReconnect") {
		t.Fatalf("relayed negotiate: %d %s; want a token and no stateful reconnect", resp.StatusCode, body)
	}
	resp, body = exchange(t, s, negotiateReq("/chat/negotiate?"+ask, ""))
	if resp.StatusCode != 200 || !strings.Contains(body, `"useStatefulReconnect":true`) {
		t.Fatalf("negotiate on the hub's path: %d %s; want stateful reconnect", resp.StatusCode, body)
	}
}
