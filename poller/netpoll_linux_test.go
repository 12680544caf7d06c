package poller

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cloudwego/netpoll"
)

// TestNetpollConnSize keeps our own per-connection state small: the node
// budget is 4.0 KB per idle connection, netpoll itself takes ~3.6 KB.
// 112 B is a size class: one more field costs 16 B per connection.
func TestNetpollConnSize(t *testing.T) {
	size := unsafe.Sizeof(npConn{})
	t.Logf("npConn: %d bytes", size)
	if size > 112 {
		t.Fatalf("npConn grew to %d bytes, budget 112", size)
	}
}

// npByeHandler answers the first bytes with Shutdown("bye") and reports
// each OnClose.
type npByeHandler struct{ closed chan error }

type npByeSession struct {
	c Conn
	h *npByeHandler
}

func (h *npByeHandler) OnOpen(c Conn) Session { return &npByeSession{c: c, h: h} }
func (s *npByeSession) OnData([]byte)         { s.c.Shutdown([]byte("bye")) }
func (s *npByeSession) OnClose(err error)     { s.h.closed <- err }

// TestNetpollShutdownTimerStopped: a connection that closes after Shutdown
// (a negotiate: answer, then the client hangs up) must not leave its
// deadline timer pending. A pending timer keeps the closed connection and
// netpoll's state for it reachable for the whole ShutdownTimeout; after a
// burst of negotiates they all die at once, long after the burst, and
// leave holes across the heap that RSS never gives back.
func TestNetpollShutdownTimerStopped(t *testing.T) {
	h := &npByeHandler{closed: make(chan error, 16)}
	pp := startBackend(t, "netpoll", Config{ShutdownTimeout: time.Minute}, h)
	p := pp.(*npPoller)
	const conns = 5
	for i := range conns {
		c, err := net.Dial("tcp", pp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c) // "bye", then the server's FIN
		if string(b) != "bye" || err != nil {
			t.Fatalf("conn %d: read %q, %v; want \"bye\" and EOF", i, b, err)
		}
		c.Close()
		select {
		case err := <-h.closed:
			if err != nil {
				t.Fatalf("conn %d: OnClose(%v), want nil for an orderly Shutdown", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("conn %d: no OnClose", i)
		}
	}
	if n := p.shutdownTimers(); n != 0 {
		t.Fatalf("%d Shutdown timers still pending after %d connections closed", n, conns)
	}
}

// startBackend runs a poller of the named backend on a random loopback
// port and closes it when the test ends.
func startBackend(t testing.TB, backend string, cfg Config, h Handler) Poller {
	t.Helper()
	p, err := New(backend, cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return serveLoopback(t, p)
}

// serveLoopback serves p on a random loopback port and closes it when the
// test ends (a no-op if the test closed it already).
func serveLoopback(t testing.TB, p Poller) Poller {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestFDTable covers the descriptor-indexed registry behind the close
// callback: a stale remove (a connection whose slot was reused) must not
// clear its successor, and an emptied table gives its memory back.
func TestFDTable(t *testing.T) {
	var tb fdTable
	p1, p2 := &npPoller{}, &npPoller{}
	a, b, c := &npConn{p: p1}, &npConn{p: p1}, &npConn{p: p2}
	tb.put(5, a)
	tb.put(3000, b)
	tb.put(7, c)
	if tb.get(5) != a || tb.get(3000) != b || tb.get(7) != c || tb.get(6) != nil || tb.get(-1) != nil || tb.get(1<<20) != nil {
		t.Fatal("get returned the wrong connection")
	}
	if got := tb.of(p1); len(got) != 2 {
		t.Fatalf("of(p1) = %d connections, want 2", len(got))
	}
	tb.remove(5, b) // not b's slot: no-op
	if tb.get(5) != a {
		t.Fatal("remove with the wrong connection cleared the slot")
	}
	tb.remove(5, a)
	tb.remove(7, c)
	if tb.get(5) != nil || tb.n != 1 {
		t.Fatalf("after removes: slot 5 = %v, n = %d", tb.get(5), tb.n)
	}
	tb.remove(3000, b)
	if sp := tb.slots.Load(); tb.n != 0 || sp != nil {
		t.Fatalf("empty table kept its slots (n %d)", tb.n)
	}
}

// TestFDTableConcurrent: lookups take no lock while connections come and
// go and the table grows; a lookup never sees another descriptor's
// connection, and one whose connection is registered always finds it.
func TestFDTableConcurrent(t *testing.T) {
	var tb fdTable
	p := &npPoller{}
	const fds = 5000
	conns := make([]*npConn, fds)
	for i := range conns {
		conns[i] = &npConn{p: p, fd: int32(i)}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i = (i + 7) % fds {
				select {
				case <-stop:
					return
				default:
				}
				if c := tb.get(i); c != nil && c != conns[i] {
					t.Errorf("get(%d) returned the connection of descriptor %d", i, c.fd)
					return
				}
			}
		}()
	}
	// Stable descriptors, registered first and never removed, must be
	// found throughout while others churn and grow the table.
	for i := 0; i < fds; i += 100 {
		tb.put(i, conns[i])
	}
	open := fds / 100
	for i := range fds {
		if i%100 != 0 {
			tb.put(i, conns[i])
			open++
		}
		if c := tb.get(i - i%100); c != conns[i-i%100] {
			t.Fatalf("stable descriptor %d lost while putting %d", i-i%100, i)
		}
		if i%100 != 0 && i%3 == 0 {
			tb.remove(i, conns[i])
			open--
		}
	}
	close(stop)
	wg.Wait()
	if got := len(tb.of(p)); got != open || tb.n != open {
		t.Fatalf("of(p) = %d connections, n = %d, want %d", got, tb.n, open)
	}
}

func TestNetpollRejectsHugeQueueLimit(t *testing.T) {
	cfg := Config{MaxQueueBytes: math.MaxInt32 + 1}
	if _, err := newNetpoll(cfg, &npByeHandler{}); err == nil || !strings.Contains(err.Error(), "MaxQueueBytes") {
		t.Fatalf("newNetpoll with MaxQueueBytes over 2 GiB: err = %v", err)
	}
}

// npFloodHandler hands each session to the test and reports OnClose.
type npFloodHandler struct {
	opened chan Conn
	closed chan error
}

type npFloodSession struct{ h *npFloodHandler }

func (h *npFloodHandler) OnOpen(c Conn) Session { h.opened <- c; return &npFloodSession{h} }
func (s *npFloodSession) OnData([]byte)         {}
func (s *npFloodSession) OnClose(err error)     { s.h.closed <- err }

// TestNetpollWriteTimeout: a client that stops reading blocks its writer
// in Flush; with a queue limit too large to trip first, the write
// watchdog must close it after the write timeout, with an error saying
// so, and the other writers keep serving.
func TestNetpollWriteTimeout(t *testing.T) {
	h := &npFloodHandler{opened: make(chan Conn, 2), closed: make(chan error, 2)}
	p, err := newNetpoll(Config{MaxQueueBytes: 256 << 20}, h)
	if err != nil {
		t.Fatal(err)
	}
	p.(*npPoller).wp.timeout = 400 * time.Millisecond
	serveLoopback(t, p)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	stalled, err := d.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	sc := <-h.opened
	frame := bytes.Repeat([]byte("x"), 64<<10)
	for range 64 { // 4 MiB: far more than the socket buffers take
		if err := sc.Send(frame); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	// A healthy client is still served meanwhile.
	ok, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	oc := <-h.opened
	if err := oc.Send([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	ok.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(io.LimitReader(ok, 5)); string(b) != "hello" {
		t.Fatalf("healthy client read %q, %v", b, err)
	}
	select {
	case err := <-h.closed:
		if !errors.Is(err, netpoll.ErrWriteTimeout) {
			t.Fatalf("stalled client closed with %v, want a write timeout", err)
		}
		t.Logf("stalled client closed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("stalled client not closed; %d bytes still queued", sc.QueuedBytes())
	}
}
