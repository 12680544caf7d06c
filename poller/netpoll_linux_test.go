package poller

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"
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

// npEchoHandler echoes what it reads; used by the child process below.
type npEchoHandler struct{}

type npEchoSession struct{ c Conn }

func (npEchoHandler) OnOpen(c Conn) Session { return &npEchoSession{c: c} }
func (s *npEchoSession) OnData(b []byte)    { _ = s.c.Send(append([]byte(nil), b...)) }
func (s *npEchoSession) OnClose(error)      {}
func npCPUTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("child stat: %v", err)
	}
	// Fields after "(comm) ": state is field 3; utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

const npEMFILEChildEnv = "EDGEPLANE_NETPOLL_EMFILE_CHILD"

// npEMFILEChild runs in the re-executed test binary: a netpoll server with
// RLIMIT_NOFILE lowered to 64 and the FD reserve off, so that accept
// really fails with EMFILE. It prints its address and serves until stdin
// closes.
func npEMFILEChild() {
	rl := unix.Rlimit{Cur: 64, Max: 64}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err == nil && cur.Max < rl.Max {
		rl.Max = cur.Max
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		fmt.Println("ERR setrlimit", err)
		os.Exit(2)
	}
	p, err := New("netpoll", Config{FDReserve: -1, RetryAfter: 3}, npEchoHandler{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	if err := p.Serve(ln); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	fmt.Println("ADDR", p.Addr())
	io.Copy(io.Discard, os.Stdin)
	p.Close()
	os.Exit(0)
}

// npProbe connects, sends "ping" and classifies the answer: "echo",
// "503", or what went wrong. The connection stays open when admitted.
func npProbe(addr string) (net.Conn, string) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, "dial: " + err.Error()
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		c.Close()
		return nil, "write: " + err.Error()
	}
	b := make([]byte, 512)
	n, err := io.ReadAtLeast(c, b, 4)
	got := string(b[:n])
	switch {
	case got == "ping":
		c.SetDeadline(time.Time{})
		return c, "echo"
	case strings.HasPrefix(got, "HTTP/1.1 503 ") && strings.Contains(got, "Retry-After: 3\r\n"):
		c.Close()
		return nil, "503"
	}
	c.Close()
	return nil, fmt.Sprintf("got %q, err %v", got, err)
}

// TestNetpollAcceptEMFILE runs the server in a child process whose
// descriptor limit is far below the connections attempted: the excess gets
// 503 (shed with the spare descriptor) instead of waiting in the backlog,
// the process does not spin while connections keep coming, and it accepts
// again once descriptors are free.
func TestNetpollAcceptEMFILE(t *testing.T) {
	if os.Getenv(npEMFILEChildEnv) == "1" {
		npEMFILEChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNetpollAcceptEMFILE$")
	cmd.Env = append(os.Environ(), npEMFILEChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child: %v\nstderr:\n%s", err, tail(stderr.String(), 2000))
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("child did not exit")
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child said %q (%v)", line, err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))

	// 150 connections at a limit of 64 descriptors.
	const attempts = 150
	var (
		mu      sync.Mutex
		held    []net.Conn
		results = map[string]int{}
	)
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Millisecond)
			c, r := npProbe(addr)
			mu.Lock()
			results[r]++
			if c != nil {
				held = append(held, c)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d attempts at RLIMIT_NOFILE 64: %v", attempts, results)
	if results["echo"] == 0 || results["503"] == 0 || results["echo"]+results["503"] != attempts {
		t.Fatalf("want every attempt echoed or answered 503, got %v", results)
	}

	// At the limit, idle for a second, then keep connecting for 2 s, and
	// watch the child's CPU time.
	pid := cmd.Process.Pid
	idle0 := npCPUTicks(t, pid)
	time.Sleep(time.Second)
	t.Logf("child CPU %v over 1s idle at the limit", time.Duration(npCPUTicks(t, pid)-idle0)*10*time.Millisecond)
	cpu0, t0 := npCPUTicks(t, pid), time.Now()
	var during atomic.Int32
	for time.Since(t0) < 2*time.Second {
		if c, r := npProbe(addr); r == "503" {
			during.Add(1)
		} else {
			if c != nil {
				c.Close()
			}
			t.Errorf("at the limit: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(t0)
	cpu := time.Duration(npCPUTicks(t, pid)-cpu0) * time.Second / 100 // USER_HZ
	t.Logf("child CPU %v over %v while %d more connections were shed", cpu, wall.Round(time.Millisecond), during.Load())
	if cpu > wall*3/10 {
		t.Fatalf("child used %v CPU in %v at the descriptor limit: spinning", cpu, wall)
	}

	// Free the descriptors: the server accepts again.
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, r := npProbe(addr)
		if r == "echo" {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no accept after descriptors were freed: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestNetpollListenerClosedAfterClose checks that Close releases the
// listening descriptor: the port can be bound again.
func TestNetpollListenerClosedAfterClose(t *testing.T) {
	netpoll.Initialize() // its global poller's descriptors are not ours
	p, err := New("netpoll", Config{}, npEchoHandler{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	before := CountOpenFDs()
	if err := p.Serve(ln); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close = %v, want ErrClosed", err)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still bound after Close: %v", err)
	}
	ln2.Close()
	if after := CountOpenFDs(); after > before {
		t.Errorf("open descriptors %d before Serve, %d after Close", before, after)
	}
}

// TestNetpollCloseRightAfterServe: Close must not hang when it races the
// accept goroutine Serve starts.
func TestNetpollCloseRightAfterServe(t *testing.T) {
	for range 20 {
		p := startBackend(t, "netpoll", Config{}, npEchoHandler{})
		done := make(chan error, 1)
		go func() { done <- p.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close right after Serve hung")
		}
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
	if _, err := newNetpoll(cfg, npEchoHandler{}); err == nil || !strings.Contains(err.Error(), "MaxQueueBytes") {
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
