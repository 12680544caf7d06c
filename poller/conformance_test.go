package poller_test

// Backend conformance suite: every test runs against every registered
// backend (poller.Backends()), over real loopback TCP sockets, using only
// the contracts documented in poller.go.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/poller"
)

// testSession records what the poller does to one connection and flags
// contract violations: OnData or OnClose running concurrently, OnData after
// OnClose, OnClose more than once.
type testSession struct {
	h *testHandler
	c poller.Conn

	inCall  atomic.Int32
	mu      sync.Mutex
	data    []byte
	dataOps int
	closes  int
	err     error
	closed  chan struct{}
}

func (s *testSession) enter() {
	if s.inCall.Add(1) != 1 {
		s.h.violation("OnData/OnClose ran concurrently")
	}
}

func (s *testSession) leave() { s.inCall.Add(-1) }

func (s *testSession) OnData(b []byte) {
	s.enter()
	defer s.leave()
	s.mu.Lock()
	if s.closes > 0 {
		s.h.violation("OnData after OnClose")
	}
	s.data = append(s.data, b...)
	s.dataOps++
	s.mu.Unlock()
	if s.h.onData != nil {
		s.h.onData(s, b)
	}
	// The session may modify data in place: scribble over it.
	for i := range b {
		b[i] = 0xEE
	}
	runtime.Gosched() // widen the window for a concurrent OnClose
}

func (s *testSession) OnClose(err error) {
	s.enter()
	defer s.leave()
	s.mu.Lock()
	s.closes++
	n := s.closes
	s.err = err
	s.mu.Unlock()
	if n > 1 {
		s.h.violation("OnClose called more than once")
		return
	}
	close(s.closed)
}

func (s *testSession) received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.data...)
}

func (s *testSession) closeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closes
}

func (s *testSession) waitClosed(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(d):
		t.Fatalf("OnClose not called within %v", d)
	}
}

type testHandler struct {
	onData func(s *testSession, b []byte)
	onOpen func(c poller.Conn) // if set, called first by OnOpen
	opened chan *testSession

	mu         sync.Mutex
	violations []string
	all        []*testSession
}

func newTestHandler(onData func(*testSession, []byte)) *testHandler {
	return &testHandler{onData: onData, opened: make(chan *testSession, 8192)}
}

func (h *testHandler) OnOpen(c poller.Conn) poller.Session {
	if h.onOpen != nil {
		h.onOpen(c)
	}
	s := &testSession{h: h, c: c, closed: make(chan struct{})}
	h.mu.Lock()
	h.all = append(h.all, s)
	h.mu.Unlock()
	h.opened <- s
	return s
}

func (h *testHandler) violation(v string) {
	h.mu.Lock()
	h.violations = append(h.violations, v)
	h.mu.Unlock()
}

func (h *testHandler) check(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.violations) > 0 {
		t.Fatalf("contract violations: %v", h.violations)
	}
}

func (h *testHandler) next(t testing.TB) *testSession {
	t.Helper()
	select {
	case s := <-h.opened:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no OnOpen within 10s")
		return nil
	}
}

// dial connects a client to addr and returns it with its session.
func (h *testHandler) dial(t testing.TB, addr string) (*net.TCPConn, *testSession) {
	t.Helper()
	c := testutil.Dial(t, addr)
	return c, h.next(t)
}

// dialSmallWindow is dial with a 4 KiB receive buffer (dialSmallWindow).
func (h *testHandler) dialSmallWindow(t testing.TB, addr string) (*net.TCPConn, *testSession) {
	t.Helper()
	c := dialSmallWindow(t, addr)
	return c, h.next(t)
}

// waitReceived waits until s has received exactly want.
func waitReceived(t testing.TB, s *testSession, want []byte) {
	t.Helper()
	testutil.WaitNoError(t, 10*time.Second, func() error {
		if got := s.received(); !bytes.Equal(got, want) {
			return fmt.Errorf("received %d of %d bytes (or different bytes)", len(got), len(want))
		}
		return nil
	})
}

// waitConns waits until p counts n open connections.
func waitConns(t testing.TB, p poller.Poller, n int) {
	t.Helper()
	testutil.WaitNoError(t, 20*time.Second, func() error {
		if got := p.Conns(); got != n {
			return fmt.Errorf("Conns() = %d, want %d", got, n)
		}
		return nil
	})
}

// sendWhenRoom sends f on c, retrying while its queue is full. On any
// other error it fails t and returns false; it may run on any goroutine.
func sendWhenRoom(t testing.TB, c poller.Conn, f []byte) bool {
	for {
		err := c.Send(f)
		if err == nil {
			return true
		}
		if !errors.Is(err, poller.ErrQueueFull) {
			t.Errorf("Send: %v", err)
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// echo sends a copy of every OnData back.
func echo(s *testSession, b []byte) {
	_ = s.c.Send(append([]byte(nil), b...))
}

// startPoller serves a fresh poller on a random loopback port; it is
// closed (and the handler checked for violations) when the test ends.
func startPoller(t testing.TB, backend string, cfg poller.Config, h *testHandler) (poller.Poller, string) {
	t.Helper()
	p, err := poller.New(backend, cfg, h)
	if err != nil {
		t.Fatalf("New(%q): %v", backend, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := p.Serve(ln); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got := p.Addr(); got == nil || got.String() != addr {
		t.Fatalf("Addr() = %v, want %s", got, addr)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		h.check(t)
	})
	return p, addr
}

// dialSmallWindow dials addr with a 4 KiB receive buffer, so that what
// the server sends backs up after a few kilobytes when the client does not
// read; it is closed when the test ends.
func dialSmallWindow(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// warmUp serves one connection on a poller of backend and closes it, so
// that process-wide machinery started once (netpoll's pollers) exists
// before a test counts goroutines or descriptors.
func warmUp(t *testing.T, backend string) {
	t.Helper()
	h := newTestHandler(nil)
	p, addr := startPoller(t, backend, poller.Config{}, h)
	c, _ := h.dial(t, addr)
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectEOF(t, c)
	c.Close()
}

// readN reads exactly n bytes with a deadline.
func readN(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// expectEOF reads until EOF (or a reset) and returns what came first.
func expectEOF(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("waiting for EOF: %v (after %d bytes)", err, len(b))
	}
	return b
}

func TestConformanceDataArrives(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		_, addr := startPoller(t, backend, poller.Config{}, h)

		rng := rand.New(rand.NewPCG(1, 2))
		big := make([]byte, 256<<10)
		for i := range big {
			big[i] = byte(rng.Uint32())
		}

		t.Run("one write", func(t *testing.T) {
			c, s := h.dial(t, addr)
			if _, err := c.Write(big); err != nil {
				t.Fatal(err)
			}
			waitReceived(t, s, big)
		})
		t.Run("many small pieces", func(t *testing.T) {
			c := testutil.Dial(t, addr)
			c.SetNoDelay(true)
			s := h.next(t)
			want := big[:20000]
			for off := 0; off < len(want); {
				n := min(1+rng.IntN(13), len(want)-off)
				if _, err := c.Write(want[off : off+n]); err != nil {
					t.Fatal(err)
				}
				off += n
				if off%997 < 13 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			waitReceived(t, s, want)
			t.Logf("%d bytes in %d OnData calls", len(want), s.dataOps)
		})
	})
}

func TestConformanceEcho(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(echo)
		_, addr := startPoller(t, backend, poller.Config{}, h)
		c, s := h.dial(t, addr)
		if s.c.RemoteAddr() == nil || s.c.RemoteAddr().String() != c.LocalAddr().String() {
			t.Fatalf("RemoteAddr() = %v, want %v", s.c.RemoteAddr(), c.LocalAddr())
		}
		for i := range 50 {
			msg := []byte(fmt.Sprintf("message %d|", i))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if got := readN(t, c, len(msg)); !bytes.Equal(got, msg) {
				t.Fatalf("echo %q, want %q", got, msg)
			}
		}
		// More than one read and one socket buffer, echoed while it is
		// still being written.
		big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
		go c.Write(big)
		if got := readN(t, c, len(big)); !bytes.Equal(got, big) {
			t.Fatal("echo of 256 KiB differs")
		}
	})
}

// TestConformanceCloseOnce races peer hang-ups, Close from another
// goroutine and incoming data: OnClose exactly once, never concurrently
// with OnData, never followed by OnData.
func TestConformanceCloseOnce(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(echo)
		p, addr := startPoller(t, backend, poller.Config{}, h)
		const n = 60
		var wg sync.WaitGroup
		for i := range n {
			c, s := h.dial(t, addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := bytes.Repeat([]byte{byte(i)}, 1000)
				for range 5 {
					c.Write(payload)
				}
				switch i % 3 {
				case 0: // peer hang-up while data is in flight
					c.Close()
				case 1: // server Close while data is in flight
					s.c.Close()
					s.c.Close() // idempotent
				case 2: // both at once
					go c.Close()
					s.c.Close()
				}
			}()
		}
		wg.Wait()
		h.mu.Lock()
		all := append([]*testSession(nil), h.all...)
		h.mu.Unlock()
		for _, s := range all {
			s.waitClosed(t, 10*time.Second)
			if err := s.c.Send([]byte("late")); !errors.Is(err, poller.ErrClosed) {
				t.Errorf("Send after close = %v, want ErrClosed", err)
			}
		}
		waitConns(t, p, 0)
		time.Sleep(50 * time.Millisecond) // a late second OnClose would show now
		for _, s := range all {
			if got := s.closeCount(); got != 1 {
				t.Errorf("OnClose called %d times", got)
			}
		}
	})
}

func TestConformancePeerHangup(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		p, addr := startPoller(t, backend, poller.Config{}, h)
		c, s := h.dial(t, addr)
		c.Write([]byte("last words"))
		c.Close()
		s.waitClosed(t, 10*time.Second)
		if got := string(s.received()); got != "last words" {
			t.Errorf("received %q before close, want %q", got, "last words")
		}
		waitConns(t, p, 0)
	})
}

// TestConformanceSendOrder: frames Sent from many goroutines arrive whole,
// and each goroutine's frames arrive in the order it sent them.
func TestConformanceSendOrder(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		_, addr := startPoller(t, backend, poller.Config{}, h)
		c, s := h.dial(t, addr)

		const senders, perSender, frameLen = 16, 300, 24
		var wg sync.WaitGroup
		for g := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perSender {
					f := make([]byte, frameLen)
					binary.BigEndian.PutUint32(f[0:], uint32(g))
					binary.BigEndian.PutUint32(f[4:], uint32(i))
					copy(f[8:], "0123456789abcdef")
					if !sendWhenRoom(t, s.c, f) {
						return
					}
				}
			}()
		}
		r := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		next := make([]uint32, senders)
		for range senders * perSender {
			f := make([]byte, frameLen)
			if _, err := io.ReadFull(r, f); err != nil {
				t.Fatalf("read: %v", err)
			}
			g, i := binary.BigEndian.Uint32(f[0:]), binary.BigEndian.Uint32(f[4:])
			if g >= senders || string(f[8:]) != "0123456789abcdef" {
				t.Fatalf("torn frame %x", f)
			}
			if i != next[g] {
				t.Fatalf("sender %d: frame %d arrived, want %d", g, i, next[g])
			}
			next[g]++
		}
		wg.Wait()
		testutil.WaitNoError(t, 5*time.Second, func() error {
			if q := s.c.QueuedBytes(); q != 0 {
				return fmt.Errorf("QueuedBytes() = %d after everything arrived", q)
			}
			return nil
		})
	})
}

// TestConformanceCoalesce: thousands of tiny frames queued at once arrive
// intact; the client needs far fewer reads than frames when the backend
// coalesces (logged, not asserted: timing-dependent).
func TestConformanceCoalesce(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		_, addr := startPoller(t, backend, poller.Config{}, h)
		c, s := h.dial(t, addr)
		const frames = 5000
		var want bytes.Buffer
		for i := range frames {
			f := []byte(fmt.Sprintf("%05d,", i))
			want.Write(f)
			if err := s.c.Send(f); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, 0, want.Len())
		buf := make([]byte, 64<<10)
		reads := 0
		for len(got) < want.Len() {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
			reads++
			got = append(got, buf[:n]...)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatal("coalesced frames arrived altered or out of order")
		}
		t.Logf("%d frames arrived in %d reads", frames, reads)
	})
}

func TestConformanceQueueFull(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		const limit = 64 << 10
		_, addr := startPoller(t, backend, poller.Config{MaxQueueBytes: limit}, h)
		dialSmallWindow(t, addr) // a client that never reads
		s := h.next(t)

		frame := bytes.Repeat([]byte("x"), 16<<10)
		deadline := time.Now().Add(20 * time.Second)
		sent := 0
		for {
			err := s.c.Send(frame)
			if errors.Is(err, poller.ErrQueueFull) {
				break
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			sent++
			if time.Now().After(deadline) {
				t.Fatalf("no ErrQueueFull after %d frames of %d bytes", sent, len(frame))
			}
			time.Sleep(200 * time.Microsecond)
		}
		q := s.c.QueuedBytes()
		if q > limit || q+len(frame) <= limit {
			t.Fatalf("ErrQueueFull with QueuedBytes() = %d, frame %d, limit %d", q, len(frame), limit)
		}
		// The refused frame was not queued; a frame that fits still is.
		if err := s.c.Send([]byte("y")); err != nil && q+1 <= limit {
			t.Fatalf("Send of a fitting frame after ErrQueueFull: %v", err)
		}
		t.Logf("ErrQueueFull after %d frames (%d bytes); %d queued", sent, sent*len(frame), q)
		// Close drops the queue at once even though the peer does not read.
		s.c.Close()
		s.waitClosed(t, 10*time.Second)
		if q := s.c.QueuedBytes(); q != 0 {
			t.Errorf("QueuedBytes() = %d after Close", q)
		}
	})
}

func TestConformanceShutdown(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		t.Run("final frame then EOF", func(t *testing.T) {
			h := newTestHandler(nil)
			_, addr := startPoller(t, backend, poller.Config{}, h)
			c, s := h.dial(t, addr)
			big := bytes.Repeat([]byte("z"), 300<<10) // more than one socket buffer's worth
			if err := s.c.Send(big); err != nil {
				t.Fatal(err)
			}
			if err := s.c.Send([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			s.c.Shutdown([]byte("bye"))
			if err := s.c.Send([]byte("late")); !errors.Is(err, poller.ErrClosed) {
				t.Fatalf("Send after Shutdown = %v, want ErrClosed", err)
			}
			s.c.Shutdown([]byte("again")) // no effect
			got := expectEOF(t, c)
			want := string(big) + "hellobye"
			if string(got) != want {
				t.Fatalf("client got %d bytes ending %q, want %d ending %q", len(got),
					got[max(0, len(got)-10):], len(want), want[len(want)-10:])
			}
			s.waitClosed(t, 10*time.Second)
			if s.err != nil {
				t.Errorf("OnClose(%v), want nil after Shutdown", s.err)
			}
		})
		t.Run("nil final", func(t *testing.T) {
			h := newTestHandler(nil)
			_, addr := startPoller(t, backend, poller.Config{}, h)
			c, s := h.dial(t, addr)
			s.c.Send([]byte("only"))
			s.c.Shutdown(nil)
			if got := string(expectEOF(t, c)); got != "only" {
				t.Fatalf("client got %q, want %q", got, "only")
			}
			s.waitClosed(t, 10*time.Second)
		})
		t.Run("timeout when peer does not read", func(t *testing.T) {
			h := newTestHandler(nil)
			_, addr := startPoller(t, backend, poller.Config{ShutdownTimeout: 200 * time.Millisecond, MaxQueueBytes: 64 << 20}, h)
			testutil.Dial(t, addr) // never reads
			s := h.next(t)
			frame := bytes.Repeat([]byte("q"), 1<<20)
			for range 40 { // far more than the socket buffers hold
				if err := s.c.Send(frame); err != nil {
					t.Fatal(err)
				}
			}
			s.c.Shutdown([]byte("bye"))
			s.waitClosed(t, 10*time.Second)
		})
	})
}

func TestConformanceCloseDrops(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		p, addr := startPoller(t, backend, poller.Config{}, h)
		c, s := h.dial(t, addr)
		if err := s.c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := s.c.Send([]byte("dropped")); !errors.Is(err, poller.ErrClosed) {
			t.Fatalf("Send after Close = %v, want ErrClosed", err)
		}
		if got := expectEOF(t, c); len(got) != 0 {
			t.Fatalf("client got %q after Close", got)
		}
		s.waitClosed(t, 10*time.Second)
		if s.err != nil {
			t.Errorf("OnClose(%v), want nil after Close", s.err)
		}
		waitConns(t, p, 0)
	})
}

// rejected reads a whole 503 from c and returns it.
func rejected(t testing.TB, c net.Conn) string {
	t.Helper()
	got := string(expectEOF(t, c))
	if !strings.HasPrefix(got, "HTTP/1.1 503 ") || !strings.Contains(got, "\r\nRetry-After: 7\r\n") {
		t.Fatalf("want a 503 with Retry-After: 7, got %q", got)
	}
	return got
}

func TestConformanceMaxConns(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(echo)
		var rejects sync.Map
		cfg := poller.Config{MaxConns: 3, RetryAfter: 7, OnReject: func(r poller.RejectReason) {
			n, _ := rejects.LoadOrStore(r, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}}
		p, addr := startPoller(t, backend, cfg, h)
		var first []net.Conn
		for range 3 {
			c := testutil.Dial(t, addr)
			h.next(t)
			first = append(first, c)
		}
		for range 2 {
			got := rejected(t, testutil.Dial(t, addr))
			if !strings.Contains(got, string(poller.RejectMaxConns)) {
				t.Errorf("503 body does not name the reason: %q", got)
			}
		}
		n, _ := rejects.Load(poller.RejectMaxConns)
		if n == nil || n.(*atomic.Int32).Load() != 2 {
			t.Errorf("OnReject(max_conns) count = %v, want 2", n)
		}
		if got := p.Conns(); got != 3 {
			t.Errorf("Conns() = %d, want 3", got)
		}
		for i, c := range first {
			msg := []byte(fmt.Sprintf("still here %d", i))
			c.Write(msg)
			if got := readN(t, c, len(msg)); !bytes.Equal(got, msg) {
				t.Fatalf("admitted connection %d: echo %q", i, got)
			}
		}
		// A slot freed is a slot available again.
		first[0].Close()
		waitConns(t, p, 2)
		c := testutil.Dial(t, addr)
		h.next(t)
		c.Write([]byte("again"))
		if got := readN(t, c, 5); string(got) != "again" {
			t.Fatalf("echo %q", got)
		}
	})
}

func TestConformanceFDReserve(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		var n atomic.Int32
		cfg := poller.Config{FDReserve: 1 << 30, RetryAfter: 7, OnReject: func(r poller.RejectReason) {
			if r == poller.RejectFDReserve {
				n.Add(1)
			}
		}}
		p, addr := startPoller(t, backend, cfg, h)
		for range 3 {
			got := rejected(t, testutil.Dial(t, addr))
			if !strings.Contains(got, string(poller.RejectFDReserve)) {
				t.Errorf("503 body does not name the reason: %q", got)
			}
		}
		if n.Load() != 3 {
			t.Errorf("OnReject(fd_reserve) called %d times, want 3", n.Load())
		}
		if p.Conns() != 0 || len(h.opened) != 0 {
			t.Errorf("rejected connections were opened: Conns()=%d, OnOpen %d", p.Conns(), len(h.opened))
		}
	})
}

func TestConformanceStopAccepting(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(echo)
		p, addr := startPoller(t, backend, poller.Config{}, h)
		c, _ := h.dial(t, addr)
		if err := p.StopAccepting(); err != nil {
			t.Fatalf("StopAccepting: %v", err)
		}
		if err := p.StopAccepting(); err != nil {
			t.Fatalf("second StopAccepting: %v", err)
		}
		if got := p.Addr(); got == nil || got.String() != addr {
			t.Errorf("Addr() = %v after StopAccepting, want %s", got, addr)
		}
		testutil.WaitNoError(t, 5*time.Second, func() error {
			nc, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return nil // refused: not listening any more
			}
			defer nc.Close()
			nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := nc.Read(make([]byte, 1)); err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
				return nil // accepted by a dying backlog, then dropped
			}
			return fmt.Errorf("still accepting connections")
		})
		c.Write([]byte("open"))
		if got := readN(t, c, 4); string(got) != "open" {
			t.Fatalf("existing connection after StopAccepting: echo %q", got)
		}
		if p.Conns() != 1 {
			t.Fatalf("Conns() = %d, want 1", p.Conns())
		}
	})
}

// TestConformanceIdleGoroutines: no goroutine per connection. The count
// with 2,000 idle connections is compared to the count with 100.
func TestConformanceIdleGoroutines(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		h := newTestHandler(nil)
		p, addr := startPoller(t, backend, poller.Config{}, h)
		var conns []net.Conn
		open := func(n int) int {
			for len(conns) < n {
				conns = append(conns, testutil.Dial(t, addr))
			}
			testutil.WaitNoError(t, 20*time.Second, func() error {
				if got := p.Conns(); got != n {
					return fmt.Errorf("Conns() = %d, want %d", got, n)
				}
				if got := len(h.opened); got != n {
					return fmt.Errorf("%d OnOpen, want %d", got, n)
				}
				return nil
			})
			time.Sleep(100 * time.Millisecond) // let transient workers exit
			runtime.GC()
			return runtime.NumGoroutine()
		}
		g100 := open(100)
		g2000 := open(2000)
		t.Logf("goroutines: %d with 100 idle connections, %d with 2000", g100, g2000)
		if g2000-g100 > 20 {
			t.Fatalf("goroutines grow with idle connections: %d with 100, %d with 2000", g100, g2000)
		}
		for _, c := range conns {
			c.Close()
		}
	})
}

// TestConformanceNoLeak: after Close, the goroutines the poller started
// are gone and every connection got OnClose.
func TestConformanceNoLeak(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		warmUp(t, backend)
		before := testutil.Snapshot()

		h := newTestHandler(echo)
		p, err := poller.New(backend, poller.Config{}, h)
		if err != nil {
			t.Fatal(err)
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		if err := p.Serve(ln); err != nil {
			t.Fatal(err)
		}
		var clients []net.Conn
		for i := range 20 {
			c := testutil.Dial(t, ln.Addr().String())
			clients = append(clients, c)
			s := h.next(t)
			c.Write([]byte("ping"))
			readN(t, c, 4)
			if i%2 == 0 {
				s.c.Send(bytes.Repeat([]byte("p"), 100<<10)) // Close with output pending
			}
		}
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for _, s := range h.all {
			s.waitClosed(t, 10*time.Second)
		}
		for _, c := range clients {
			expectEOF(t, c)
		}
		h.check(t)
		testutil.WaitNoError(t, 10*time.Second, func() error {
			if leaked := testutil.Leaks(before); len(leaked) > 0 {
				return fmt.Errorf("%d goroutines outlived Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			}
			return nil
		})
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// BenchmarkSend measures queue + flush throughput: Send of one frame to a
// connection whose client reads as fast as it can.
func BenchmarkSend(b *testing.B) {
	for _, backend := range testutil.Backends(b) {
		for _, size := range []int{64, 1024, 16 << 10} {
			b.Run(fmt.Sprintf("%s/frame=%d", backend, size), func(b *testing.B) {
				h := newTestHandler(nil)
				_, addr := startPoller(b, backend, poller.Config{MaxQueueBytes: 4 << 20}, h)
				c, s := h.dial(b, addr)
				var got atomic.Int64
				go func() {
					n, _ := io.Copy(io.Discard, c)
					got.Add(n)
				}()
				frame := bytes.Repeat([]byte("b"), size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for {
						err := s.c.Send(frame)
						if err == nil {
							break
						}
						if !errors.Is(err, poller.ErrQueueFull) {
							b.Fatal(err)
						}
						runtime.Gosched()
					}
				}
				for s.c.QueuedBytes() > 0 {
					runtime.Gosched()
				}
				b.StopTimer()
			})
		}
	}
}

// BenchmarkBroadcast queues one shared frame to many idle connections
// (the fan-out path); allocations per op should be ~0.
func BenchmarkBroadcast(b *testing.B) {
	for _, backend := range testutil.Backends(b) {
		b.Run(fmt.Sprintf("%s/conns=1000", backend), func(b *testing.B) {
			h := newTestHandler(nil)
			_, addr := startPoller(b, backend, poller.Config{}, h)
			var sess []*testSession
			for range 1000 {
				c := testutil.Dial(b, addr)
				go io.Copy(io.Discard, c)
				sess = append(sess, h.next(b))
			}
			frame := []byte(`{"type":1,"target":"tick","arguments":[42]}` + "\x1e")
			b.SetBytes(int64(len(frame) * len(sess)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, s := range sess {
					for s.c.Send(frame) != nil {
						runtime.Gosched()
					}
				}
			}
			for _, s := range sess {
				for s.c.QueuedBytes() > 0 {
					runtime.Gosched()
				}
			}
		})
	}
}
