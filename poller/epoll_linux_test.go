package poller

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recHandler records every connection and what its Session saw.
type recHandler struct {
	echo   bool
	onOpen func(c Conn)

	mu    sync.Mutex
	sess  []*recSession
	opens chan *recSession
}

func newRecHandler() *recHandler { return &recHandler{opens: make(chan *recSession, 16384)} }

func (h *recHandler) OnOpen(c Conn) Session {
	s := &recSession{h: h, c: c, closed: make(chan struct{})}
	if h.onOpen != nil {
		h.onOpen(c)
	}
	h.mu.Lock()
	h.sess = append(h.sess, s)
	h.mu.Unlock()
	h.opens <- s
	return s
}

type recSession struct {
	h *recHandler
	c Conn

	busy   atomic.Bool // set during callbacks: detects concurrent OnData/OnClose
	mu     sync.Mutex
	data   []byte
	reads  int
	nClose int
	err    error
	bad    string
	closed chan struct{}
}

func (s *recSession) enter() {
	if s.busy.Swap(true) {
		s.mu.Lock()
		s.bad = "callbacks ran concurrently"
		s.mu.Unlock()
	}
}

func (s *recSession) OnData(b []byte) {
	s.enter()
	defer s.busy.Store(false)
	s.mu.Lock()
	if s.nClose > 0 {
		s.bad = "OnData after OnClose"
	}
	s.data = append(s.data, b...)
	s.reads++
	s.mu.Unlock()
	if s.h.echo {
		s.c.Send(append([]byte(nil), b...))
	}
}

func (s *recSession) OnClose(err error) {
	s.enter()
	defer s.busy.Store(false)
	s.mu.Lock()
	s.nClose++
	s.err = err
	s.mu.Unlock()
	if s.nClose == 1 {
		close(s.closed)
	}
}

func (s *recSession) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

// check fails t if the session saw a contract violation.
func (s *recSession) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad != "" {
		t.Errorf("session: %s", s.bad)
	}
	if s.nClose > 1 {
		t.Errorf("OnClose called %d times", s.nClose)
	}
}

func (s *recSession) waitClosed(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(d):
		t.Fatalf("OnClose not called within %v", d)
	}
}

// checkFor polls cond until it holds or d passes.
func checkFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startEpoll runs an epoll poller on a random loopback port.
func startEpoll(t testing.TB, cfg Config, h Handler) Poller {
	t.Helper()
	return startBackend(t, "epoll", cfg, h)
}

func dial(t testing.TB, addr net.Addr, rcvbuf int) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			})
		}
	}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func (h *recHandler) next(t *testing.T) *recSession {
	t.Helper()
	select {
	case s := <-h.opens:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no connection opened within 5s")
		return nil
	}
}

// smallSndbuf makes the server side of c fill after a few KB, so queueing
// and EAGAIN happen with little data.
func smallSndbuf(c Conn) {
	unix.SetsockoptInt(c.(econn).fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
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
	h := newRecHandler()
	p := startEpoll(t, Config{}, h)
	msg := []byte("GET /chat?id=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
	c := dial(t, p.Addr(), 0)
	s := h.next(t)
	var want []byte
	for i := 1; i < len(msg); i++ {
		for _, part := range [][]byte{msg[:i], msg[i:]} {
			if _, err := c.Write(part); err != nil {
				t.Fatal(err)
			}
			want = append(want, part...)
			checkFor(t, 5*time.Second, fmt.Sprintf("split %d", i), func() bool { return s.received() == len(want) })
		}
	}
	s.mu.Lock()
	got, reads := s.data, s.reads
	s.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("byte stream differs:\n got %q\nwant %q", got, want)
	}
	if reads != 2*(len(msg)-1) {
		t.Errorf("OnData calls = %d, want %d (one per written part)", reads, 2*(len(msg)-1))
	}
	s.check(t)
}

func TestEpollEcho(t *testing.T) {
	h := newRecHandler()
	h.echo = true
	p := startEpoll(t, Config{}, h)
	c := dial(t, p.Addr(), 0)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<12) // 64 KiB, larger than a read
	go c.Write(msg)
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}
}

func TestEpollQueueFullOnEAGAIN(t *testing.T) {
	h := newRecHandler()
	h.onOpen = smallSndbuf
	const maxQ = 256 << 10
	p := startEpoll(t, Config{MaxQueueBytes: maxQ}, h)
	c := dial(t, p.Addr(), 4096) // the peer does not read yet
	s := h.next(t)

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
	if !errors.Is(sendErr, ErrQueueFull) {
		t.Fatalf("after %d frames Send = %v, want ErrQueueFull", sent, sendErr)
	}
	q := s.c.QueuedBytes()
	if q == 0 || q > maxQ || q+len(frames[0]) <= maxQ {
		t.Fatalf("QueuedBytes = %d at ErrQueueFull (limit %d, frame %d)", q, maxQ, len(frames[0]))
	}
	if err := s.c.Send(frames[sent]); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second Send over the limit = %v", err)
	}
	if err := s.c.Send(make([]byte, maxQ+1)); !errors.Is(err, ErrQueueFull) {
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
	checkFor(t, 5*time.Second, "queue drained", func() bool { return s.c.QueuedBytes() == 0 })
	checkIdle(t, p, s.c)
	if err := s.c.Send([]byte("more")); err != nil {
		t.Fatalf("Send after drain = %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "more" {
		t.Fatalf("read after drain = %q, %v", buf, err)
	}
}

// checkIdle waits until c's loop has settled after its queue drained:
// EPOLLOUT unregistered, not dirty, and no queue held.
func checkIdle(t *testing.T, p Poller, c Conn) {
	t.Helper()
	sl, rf := p.(*epollPoller).slab.get(c.(econn).fd())
	checkFor(t, 5*time.Second, "idle connection state", func() bool {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		return sl.flags.Load() == fOpen && rf.q == nil
	})
}

func TestEpollOneByteReader(t *testing.T) {
	h := newRecHandler()
	h.onOpen = smallSndbuf
	p := startEpoll(t, Config{}, h)
	c := dial(t, p.Addr(), 4096)
	s := h.next(t)

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
				for {
					err := s.c.Send(f)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						t.Errorf("Send: %v", err)
						return
					}
					time.Sleep(time.Millisecond)
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
	checkFor(t, 5*time.Second, "queue drained", func() bool { return s.c.QueuedBytes() == 0 })
	checkIdle(t, p, s.c)
}

func TestEpollHangupWithQueuedData(t *testing.T) {
	for _, mode := range []string{"close", "reset"} {
		t.Run(mode, func(t *testing.T) {
			fds := CountOpenFDs()
			h := newRecHandler()
			h.onOpen = smallSndbuf
			p := startEpoll(t, Config{}, h)
			c := dial(t, p.Addr(), 4096)
			s := h.next(t)
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
			s.check(t)
			if err := s.c.Send(frame); !errors.Is(err, ErrClosed) {
				t.Errorf("Send after hang-up = %v, want ErrClosed", err)
			}
			if q := s.c.QueuedBytes(); q != 0 {
				t.Errorf("QueuedBytes after hang-up = %d", q)
			}
			if n := p.Conns(); n != 0 {
				t.Errorf("Conns = %d after hang-up", n)
			}
			p.Close()
			if n := CountOpenFDs(); n != fds {
				t.Errorf("open fds %d after close, %d before", n, fds)
			}
		})
	}
}

func TestEpollStaleHandleAfterFDReuse(t *testing.T) {
	h := newRecHandler()
	p := startEpoll(t, Config{}, h)
	a := dial(t, p.Addr(), 0)
	sa := h.next(t)
	old := sa.c
	a.Close()
	sa.waitClosed(t, 5*time.Second)

	var sb *recSession
	var b *net.TCPConn
	for try := 0; try < 20 && sb == nil; try++ { // the kernel hands out the lowest free fd
		c := dial(t, p.Addr(), 0)
		s := h.next(t)
		if s.c.(econn).fd() == old.(econn).fd() {
			sb, b = s, c
		}
	}
	if sb == nil {
		t.Fatal("fd was not reused")
	}
	if err := old.Send([]byte("stale")); !errors.Is(err, ErrClosed) {
		t.Errorf("stale Send = %v, want ErrClosed", err)
	}
	old.Shutdown([]byte("stale"))
	if err := old.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("stale Close = %v, want ErrClosed", err)
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
		h := newRecHandler()
		p := startEpoll(t, Config{}, h)
		c := dial(t, p.Addr(), 0)
		s := h.next(t)
		s.c.Send([]byte("hello "))
		s.c.Shutdown([]byte("bye"))
		if err := s.c.Send([]byte("x")); !errors.Is(err, ErrClosed) {
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
		checkFor(t, time.Second, "Conns 0", func() bool { return p.Conns() == 0 })
	})
	t.Run("shutdown times out", func(t *testing.T) {
		h := newRecHandler()
		h.onOpen = smallSndbuf
		p := startEpoll(t, Config{ShutdownTimeout: 100 * time.Millisecond}, h)
		dial(t, p.Addr(), 4096) // never reads
		s := h.next(t)
		for s.c.QueuedBytes() == 0 {
			s.c.Send(make([]byte, 16<<10))
		}
		start := time.Now()
		s.c.Shutdown(nil)
		s.waitClosed(t, 5*time.Second)
		if s.err == nil {
			t.Error("OnClose(nil) after a timed-out Shutdown")
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("closed after %v, before the timeout", d)
		}
	})
	t.Run("close", func(t *testing.T) {
		h := newRecHandler()
		p := startEpoll(t, Config{}, h)
		c := dial(t, p.Addr(), 0)
		s := h.next(t)
		if err := s.c.Close(); err != nil {
			t.Fatal(err)
		}
		s.waitClosed(t, 5*time.Second)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("client read %d, %v; want EOF", n, err)
		}
		if err := s.c.Close(); !errors.Is(err, ErrClosed) {
			t.Errorf("second Close = %v", err)
		}
		if a, ok := s.c.RemoteAddr().(*net.TCPAddr); !ok || a.String() != c.LocalAddr().String() {
			t.Errorf("RemoteAddr = %v, want %v", s.c.RemoteAddr(), c.LocalAddr())
		}
		s.check(t)
		_ = p
	})
	t.Run("poller close", func(t *testing.T) {
		h := newRecHandler()
		p := startEpoll(t, Config{}, h)
		for i := 0; i < 10; i++ {
			dial(t, p.Addr(), 0)
			h.next(t)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		for _, s := range h.sess {
			s.waitClosed(t, time.Second)
			s.check(t)
			if err := s.c.Send([]byte("x")); !errors.Is(err, ErrClosed) {
				t.Errorf("Send after poller Close = %v", err)
			}
		}
	})
}

func TestEpollAdmissionRejects(t *testing.T) {
	var rejects atomic.Int32
	h := newRecHandler()
	p := startEpoll(t, Config{MaxConns: 2, RetryAfter: 7, OnReject: func(r RejectReason) {
		if r == RejectMaxConns {
			rejects.Add(1)
		}
	}}, h)
	dial(t, p.Addr(), 0)
	dial(t, p.Addr(), 0)
	h.next(t)
	h.next(t)
	c := dial(t, p.Addr(), 0)
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	if want := RejectResponse(7, RejectMaxConns); !bytes.Equal(got, want) {
		t.Fatalf("rejected client read %q, want %q", got, want)
	}
	if rejects.Load() != 1 || p.Conns() != 2 {
		t.Fatalf("rejects %d, conns %d", rejects.Load(), p.Conns())
	}
	select {
	case <-h.opens:
		t.Fatal("OnOpen called for a rejected connection")
	default:
	}
}

func TestEpollGoroutinesFlat(t *testing.T) {
	h := newRecHandler()
	p := startEpoll(t, Config{}, h)
	// Dial in batches: a burst beyond the accept backlog loses idle
	// connections to SYN cookies (the kernel drops the final ACK).
	dialTo := func(n int) {
		for dialed := p.Conns(); dialed < n; {
			batch := min(500, n-dialed)
			for i := 0; i < batch; i++ {
				dial(t, p.Addr(), 0)
			}
			dialed += batch
			checkFor(t, 20*time.Second, "connections admitted", func() bool { return p.Conns() == dialed })
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

// readPrefixed reads lines from a child process until one starts with
// prefix (the test framework may print its own lines first) and returns
// the rest of it.
func readPrefixed(r *bufio.Reader, prefix string) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix)), nil
		}
		if err != nil {
			return "", fmt.Errorf("child exited before printing %q: %w", prefix, err)
		}
	}
}

// TestEpollStateSize pins the per-connection cost stated in
// epoll_slab_linux.go, and that the slot and the handle hold no pointers
// (so the GC does not scan them).
func TestEpollStateSize(t *testing.T) {
	if s := unsafe.Sizeof(slot{}); s != 40 {
		t.Errorf("slot is %d bytes, documented 40", s)
	}
	if s := unsafe.Sizeof(refs{}); s != 24 {
		t.Errorf("refs is %d bytes, documented 24", s)
	}
	if s := unsafe.Sizeof(econn(0)); s != 8 {
		t.Errorf("econn is %d bytes, documented 8", s)
	}
	for _, v := range []any{slot{}, econn(0)} {
		if p := pointerPath(reflect.TypeOf(v), ""); p != "" {
			t.Errorf("%T holds a pointer at %s", v, p)
		}
	}
}

// pointerPath returns the path of the first pointer-holding field of t, or "".
func pointerPath(t reflect.Type, path string) string {
	switch t.Kind() {
	case reflect.Pointer, reflect.UnsafePointer, reflect.Map, reflect.Chan, reflect.Func,
		reflect.Interface, reflect.Slice, reflect.String:
		return path + " (" + t.String() + ")"
	case reflect.Array:
		if t.Len() > 0 {
			return pointerPath(t.Elem(), path+"[]")
		}
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if p := pointerPath(t.Field(i).Type, path+"."+t.Field(i).Name); p != "" {
				return p
			}
		}
	}
	return ""
}
