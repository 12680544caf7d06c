package poller_test

// Tests of the epoll backend beyond the conformance suite: partial reads,
// EAGAIN and EPOLLOUT, stale handles after descriptor reuse.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/poller"
	"golang.org/x/sys/unix"
)

// startEpoll serves an epoll poller on a random loopback port (see
// startPoller).
func startEpoll(t testing.TB, cfg poller.Config, h *testHandler) (poller.Poller, string) {
	t.Helper()
	return startPoller(t, "epoll", cfg, h)
}

// waitIdle waits until c's loop has settled after its queue drained.
func waitIdle(t testing.TB, p poller.Poller, c poller.Conn) {
	t.Helper()
	testutil.WaitUntil(t, 5*time.Second, "idle connection state", func() bool { return poller.EpollIdle(p, c) })
}

// smallSndbuf makes the server side of c fill after a few KB, so queueing
// and EAGAIN happen with little data.
func smallSndbuf(c poller.Conn) {
	unix.SetsockoptInt(poller.EpollFD(c), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
}

// numbered returns count frames of size bytes, each starting with its
// sequence number and filled with a pattern derived from it.
func numbered(count, size int) [][]byte {
	out := make([][]byte, count)
	for i := range out {
		b := make([]byte, size)
		binary.BigEndian.PutUint32(b, uint32(i))
		for j := 4; j < size; j++ {
			b[j] = byte(i + j)
		}
		out[i] = b
	}
	return out
}

func TestEpollPartialReadsEveryBoundary(t *testing.T) {
	h := newTestHandler(nil)
	_, addr := startEpoll(t, poller.Config{}, h)
	msg := []byte("GET /chat?id=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
	c, s := h.dial(t, addr)
	var want []byte
	for i := 1; i < len(msg); i++ {
		for _, part := range [][]byte{msg[:i], msg[i:]} {
			if _, err := c.Write(part); err != nil {
				t.Fatal(err)
			}
			want = append(want, part...)
			testutil.WaitUntil(t, 5*time.Second, fmt.Sprintf("split %d", i), func() bool { return len(s.received()) == len(want) })
		}
	}
	s.mu.Lock()
	got, reads := s.data, s.dataOps
	s.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("byte stream differs:\n got %q\nwant %q", got, want)
	}
	if reads != 2*(len(msg)-1) {
		t.Errorf("OnData calls = %d, want %d (one per written part)", reads, 2*(len(msg)-1))
	}
	h.check(t)
}

func TestEpollQueueFullOnEAGAIN(t *testing.T) {
	h := newTestHandler(nil)
	h.onOpen = smallSndbuf
	const maxQ = 256 << 10
	p, addr := startEpoll(t, poller.Config{MaxQueueBytes: maxQ}, h)
	c, s := h.dialSmallWindow(t, addr) // the peer does not read yet

	frames := numbered(200, 16<<10)
	sent := 0
	var sendErr error
	for _, f := range frames {
		if sendErr = s.c.Send(f); sendErr != nil {
			break
		}
		sent++
		if q := s.c.QueuedBytes(); q > maxQ {
			t.Fatalf("QueuedBytes %d over MaxQueueBytes %d", q, maxQ)
		}
	}
	if !errors.Is(sendErr, poller.ErrQueueFull) {
		t.Fatalf("after %d frames Send = %v, want poller.ErrQueueFull", sent, sendErr)
	}
	q := s.c.QueuedBytes()
	if q == 0 || q > maxQ || q+len(frames[0]) <= maxQ {
		t.Fatalf("QueuedBytes = %d at poller.ErrQueueFull (limit %d, frame %d)", q, maxQ, len(frames[0]))
	}
	if err := s.c.Send(frames[sent]); !errors.Is(err, poller.ErrQueueFull) {
		t.Fatalf("second Send over the limit = %v", err)
	}
	if err := s.c.Send(make([]byte, maxQ+1)); !errors.Is(err, poller.ErrQueueFull) {
		t.Fatalf("Send of a frame over the limit = %v", err)
	}

	// The peer drains: exactly the accepted frames arrive, in order.
	want := bytes.Join(frames[:sent], nil)
	got := make([]byte, len(want))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("received bytes differ from the accepted frames")
	}
	testutil.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return s.c.QueuedBytes() == 0 })
	waitIdle(t, p, s.c)
	if err := s.c.Send([]byte("more")); err != nil {
		t.Fatalf("Send after drain = %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "more" {
		t.Fatalf("read after drain = %q, %v", buf, err)
	}
}

// TestEpollSendWritesAtOnce: a Send to a connection with nothing queued
// and a writable socket writes the frame before it returns (as the floor's
// raw write loop does: every recipient of a broadcast), rather than
// queueing it and waking the loop: it arrives while the loop is held in
// another connection's callback. A burst of Sends to one connection right
// after is queued for the loop, which coalesces it. What a connection's
// own callback sends goes out after the callback returns, as before (a
// handshake reply must not overtake the registration that follows it).
func TestEpollSendWritesAtOnce(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	held := make(chan struct{}, 1)
	inCallback := make(chan int, 1)
	h := newTestHandler(func(s *testSession, b []byte) {
		switch b[0] {
		case 'A': // hold the (only) loop
			held <- struct{}{}
			<-release
		case 'B':
			s.c.Send([]byte("in-callback"))
			inCallback <- s.c.QueuedBytes()
		}
	})
	p, addr := startEpoll(t, poller.Config{Loops: 1}, h)
	t.Cleanup(unblock) // before the poller's Close, which waits for the loop
	a, _ := h.dial(t, addr)
	b, sb := h.dial(t, addr)
	c, _ := h.dial(t, addr) // never written to before its callback
	readFrom := func(conn *net.TCPConn, want string) {
		t.Helper()
		got := make([]byte, len(want))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(conn, got); err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}
	read := func(want string) { t.Helper(); readFrom(b, want) }

	if _, err := a.Write([]byte("A")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnData")
	}
	if err := sb.c.Send([]byte("direct")); err != nil {
		t.Fatal(err)
	}
	if q := sb.c.QueuedBytes(); q != 0 {
		t.Fatalf("Send to an idle, writable connection queued %d bytes: want written at once", q)
	}
	read("direct") // the loop is still held: Send wrote it
	for range 5 {
		sb.c.Send([]byte("burst"))
	}
	if sb.c.QueuedBytes() == 0 {
		t.Fatal("a burst of Sends to one connection was written frame by frame: want it queued for the loop")
	}
	unblock()
	read(strings.Repeat("burst", 5))
	waitIdle(t, p, sb.c)

	if _, err := c.Write([]byte("B")); err != nil {
		t.Fatal(err)
	}
	select {
	case q := <-inCallback:
		if q == 0 {
			t.Fatal("a Send from the connection's own callback was written before the callback returned")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnData")
	}
	readFrom(c, "in-callback")
}

func TestEpollOneByteReader(t *testing.T) {
	h := newTestHandler(nil)
	h.onOpen = smallSndbuf
	p, addr := startEpoll(t, poller.Config{}, h)
	c, s := h.dialSmallWindow(t, addr)

	// Several goroutines send; each one's frames must arrive in its order.
	const senders, perSender, size = 4, 40, 700
	var wg sync.WaitGroup
	var maxQueued atomic.Int64
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perSender; i++ {
				f := make([]byte, size)
				f[0], f[1] = byte(g), byte(i)
				for j := 2; j < size; j++ {
					f[j] = byte(g*31 + i + j)
				}
				if !sendWhenRoom(t, s.c, f) {
					return
				}
				if q := int64(s.c.QueuedBytes()); q > maxQueued.Load() {
					maxQueued.Store(q)
				}
			}
		}()
	}
	next := make([]int, senders)
	b := make([]byte, 1)
	frame := make([]byte, 0, size)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for n := 0; n < senders*perSender*size; n++ {
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
		frame = append(frame, b[0])
		if len(frame) < size {
			continue
		}
		g, i := int(frame[0]), int(frame[1])
		if g >= senders || i != next[g] {
			t.Fatalf("frame (sender %d, #%d) out of order, want #%d", g, i, next[g])
		}
		for j := 2; j < size; j++ {
			if frame[j] != byte(g*31+i+j) {
				t.Fatalf("frame (sender %d, #%d) corrupted at byte %d", g, i, j)
			}
		}
		next[g]++
		frame = frame[:0]
	}
	wg.Wait()
	if maxQueued.Load() == 0 {
		t.Error("nothing was ever queued: the test did not exercise EAGAIN")
	}
	testutil.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return s.c.QueuedBytes() == 0 })
	waitIdle(t, p, s.c)
}

func TestEpollHangupWithQueuedData(t *testing.T) {
	for _, mode := range []string{"close", "reset"} {
		t.Run(mode, func(t *testing.T) {
			fds := poller.CountOpenFDs()
			h := newTestHandler(nil)
			h.onOpen = smallSndbuf
			p, addr := startEpoll(t, poller.Config{}, h)
			c, s := h.dialSmallWindow(t, addr)
			frame := make([]byte, 32<<10)
			for s.c.QueuedBytes() == 0 {
				if err := s.c.Send(frame); err != nil {
					t.Fatal(err)
				}
			}
			s.c.Send(frame)
			if mode == "reset" {
				c.SetLinger(0)
			}
			c.Close()
			s.waitClosed(t, 5*time.Second)
			h.check(t)
			if err := s.c.Send(frame); !errors.Is(err, poller.ErrClosed) {
				t.Errorf("Send after hang-up = %v, want poller.ErrClosed", err)
			}
			if q := s.c.QueuedBytes(); q != 0 {
				t.Errorf("QueuedBytes after hang-up = %d", q)
			}
			if n := p.Conns(); n != 0 {
				h.mu.Lock()
				opened := len(h.all)
				h.mu.Unlock()
				t.Errorf("Conns = %d after hang-up (%d sessions opened)", n, opened)
			}
			p.Close()
			if n := poller.CountOpenFDs(); n != fds {
				t.Errorf("open fds %d after close, %d before", n, fds)
			}
		})
	}
}

func TestEpollStaleHandleAfterFDReuse(t *testing.T) {
	h := newTestHandler(nil)
	_, addr := startEpoll(t, poller.Config{}, h)
	a, sa := h.dial(t, addr)
	old := sa.c
	a.Close()
	sa.waitClosed(t, 5*time.Second)

	var sb *testSession
	var b *net.TCPConn
	for try := 0; try < 20 && sb == nil; try++ { // the kernel hands out the lowest free fd
		c, s := h.dial(t, addr)
		if poller.EpollFD(s.c) == poller.EpollFD(old) {
			sb, b = s, c
		}
	}
	if sb == nil {
		t.Fatal("fd was not reused")
	}
	if err := old.Send([]byte("stale")); !errors.Is(err, poller.ErrClosed) {
		t.Errorf("stale Send = %v, want poller.ErrClosed", err)
	}
	old.Shutdown([]byte("stale"))
	if err := old.Close(); !errors.Is(err, poller.ErrClosed) {
		t.Errorf("stale Close = %v, want poller.ErrClosed", err)
	}
	if old.QueuedBytes() != 0 {
		t.Error("stale QueuedBytes != 0")
	}
	// The new connection is untouched: open, and receives only its own bytes.
	if err := sb.c.Send([]byte("fresh")); err != nil {
		t.Fatalf("Send on the new connection = %v", err)
	}
	got := make([]byte, 5)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "fresh" {
		t.Fatalf("new connection read %q, %v", got, err)
	}
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.Read(got); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection got extra bytes or closed: %d, %v", n, err)
	}
	select {
	case <-sb.closed:
		t.Fatal("stale handle closed the new connection")
	default:
	}
}

func TestEpollShutdownAndClose(t *testing.T) {
	t.Run("shutdown drains then closes", func(t *testing.T) {
		h := newTestHandler(nil)
		p, addr := startEpoll(t, poller.Config{}, h)
		c, s := h.dial(t, addr)
		s.c.Send([]byte("hello "))
		s.c.Shutdown([]byte("bye"))
		if err := s.c.Send([]byte("x")); !errors.Is(err, poller.ErrClosed) {
			t.Errorf("Send after Shutdown = %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello bye" {
			t.Fatalf("read %q, %v", got, err)
		}
		s.waitClosed(t, 5*time.Second)
		if s.err != nil {
			t.Errorf("OnClose(%v), want nil", s.err)
		}
		waitConns(t, p, 0)
	})
	t.Run("shutdown times out", func(t *testing.T) {
		h := newTestHandler(nil)
		h.onOpen = smallSndbuf
		_, addr := startEpoll(t, poller.Config{ShutdownTimeout: 100 * time.Millisecond}, h)
		dialSmallWindow(t, addr) // never reads
		s := h.next(t)
		for s.c.QueuedBytes() == 0 {
			s.c.Send(make([]byte, 16<<10))
		}
		queued := s.c.QueuedBytes()
		s.c.Shutdown(nil)
		s.waitClosed(t, 5*time.Second)
		// Closed by the time-out, with the bytes still unsent.
		if s.err == nil || !strings.Contains(s.err.Error(), "shutdown timed out with bytes unsent") {
			t.Errorf("OnClose(%v) after a Shutdown with %d bytes the peer never reads, want the shutdown time-out", s.err, queued)
		}
	})
	t.Run("close", func(t *testing.T) {
		h := newTestHandler(nil)
		_, addr := startEpoll(t, poller.Config{}, h)
		c, s := h.dial(t, addr)
		if err := s.c.Close(); err != nil {
			t.Fatal(err)
		}
		s.waitClosed(t, 5*time.Second)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("client read %d, %v; want EOF", n, err)
		}
		if err := s.c.Close(); !errors.Is(err, poller.ErrClosed) {
			t.Errorf("second Close = %v", err)
		}
		if a, ok := s.c.RemoteAddr().(*net.TCPAddr); !ok || a.String() != c.LocalAddr().String() {
			t.Errorf("RemoteAddr = %v, want %v", s.c.RemoteAddr(), c.LocalAddr())
		}
		h.check(t)
	})
	t.Run("poller close", func(t *testing.T) {
		h := newTestHandler(nil)
		p, addr := startEpoll(t, poller.Config{}, h)
		for i := 0; i < 10; i++ {
			testutil.Dial(t, addr)
			h.next(t)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		for _, s := range h.all {
			s.waitClosed(t, time.Second)
			h.check(t)
			if err := s.c.Send([]byte("x")); !errors.Is(err, poller.ErrClosed) {
				t.Errorf("Send after poller Close = %v", err)
			}
		}
	})
}

func TestEpollGoroutinesFlat(t *testing.T) {
	h := newTestHandler(nil)
	p, addr := startEpoll(t, poller.Config{}, h)
	// Dial in batches: a burst beyond the accept backlog loses idle
	// connections to SYN cookies (the kernel drops the final ACK).
	dialTo := func(n int) {
		for dialed := p.Conns(); dialed < n; {
			batch := min(500, n-dialed)
			for i := 0; i < batch; i++ {
				testutil.Dial(t, addr)
			}
			dialed += batch
			waitConns(t, p, dialed)
		}
	}
	dialTo(100)
	g100 := runtime.NumGoroutine()
	dialTo(5000)
	g5000 := runtime.NumGoroutine()
	if g5000 > g100 {
		t.Fatalf("goroutines %d at 100 connections, %d at 5,000", g100, g5000)
	}
}
