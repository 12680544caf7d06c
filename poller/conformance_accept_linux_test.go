package poller_test

// Conformance of the accept path (accept_linux.go), run against every
// backend: descriptor exhaustion, listener take-over and release. The
// admission rejections and StopAccepting are in conformance_test.go.

import (
	"errors"
	"net"
	"net/netip"
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

// TestConformanceAcceptEMFILE: with the process out of descriptors, every
// connection is answered 503 with Retry-After (reason accept_error) at
// once instead of waiting in the backlog; with nothing pending the
// acceptor waits for the listener (neither spinning nor backing off); once
// descriptors are free it accepts again, and admitted connections never
// noticed.
func TestConformanceAcceptEMFILE(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		var shed atomic.Int32
		h := newTestHandler(echo)
		cfg := poller.Config{FDReserve: -1, RetryAfter: 7, OnReject: func(r poller.RejectReason) {
			if r == poller.RejectAcceptError {
				shed.Add(1)
			}
		}}
		_, addr := startPoller(t, backend, cfg, h)
		admitted := testutil.Dial(t, addr)
		h.next(t)

		// Client sockets are made while descriptors remain: connecting
		// takes none.
		const clients = 3
		socks := make([]int, clients)
		for i := range socks {
			socks[i] = rawSocket(t)
		}
		release := exhaustFDs(t)
		for _, fd := range socks {
			got := rawConnectRead(t, fd, addr)
			if !strings.HasPrefix(got, "HTTP/1.1 503 ") || !strings.Contains(got, "\r\nRetry-After: 7\r\n") ||
				!strings.Contains(got, string(poller.RejectAcceptError)) {
				t.Fatalf("at the descriptor limit: got %q, want a 503 with Retry-After: 7 naming accept_error", got)
			}
		}
		testutil.WaitUntil(t, 10*time.Second, "the acceptor to wait for its listener", acceptorsParked)
		if n := shed.Load(); n != clients {
			t.Errorf("OnReject(accept_error) called %d times for %d shed connections", n, clients)
		}
		if len(h.opened) != 0 {
			t.Errorf("%d shed connections were opened", len(h.opened))
		}

		release()
		c := testutil.Dial(t, addr)
		h.next(t)
		for _, c := range []net.Conn{c, admitted} {
			c.Write([]byte("back"))
			if got := readN(t, c, 4); string(got) != "back" {
				t.Fatalf("echo after descriptors were freed: %q", got)
			}
		}
	})
}

// rawSocket is a blocking TCP socket, closed when the test ends.
func rawSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(10 * time.Second))
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} { // bound connect and read
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			t.Fatalf("setsockopt: %v", err)
		}
	}
	return fd
}

// rawConnectRead connects fd to addr and reads until the server closes.
// It makes no system call that needs a descriptor.
func rawConnectRead(t *testing.T, fd int, addr string) string {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		if n == 0 {
			return string(got)
		}
		got = append(got, buf[:n]...)
	}
}

// exhaustFDs leaves the process without a free descriptor: RLIMIT_NOFILE
// is lowered to a little above the descriptors in use and the rest is
// taken with /dev/null. release (also run when the test ends) frees them
// and restores the limit. Nothing else in the process may need a new
// descriptor meanwhile: the tests of this package do not run in parallel.
func exhaustFDs(t *testing.T) (release func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	low := old
	low.Cur = min(old.Cur, uint64(poller.CountOpenFDs()+64))
	var (
		once sync.Once
		held []int
	)
	release = func() {
		once.Do(func() {
			for _, fd := range held {
				unix.Close(fd)
			}
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
				t.Errorf("restore RLIMIT_NOFILE: %v", err)
			}
		})
	}
	t.Cleanup(release)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EMFILE) {
			return release
		}
		if err != nil {
			t.Fatalf("open /dev/null: %v", err)
		}
		held = append(held, fd)
	}
}

// acceptorsParked reports whether there is an accept goroutine and every
// one is parked in the runtime poller, waiting for its listener to become
// readable: not running (spinning) and not sleeping (backing off).
func acceptorsParked() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "poller.(*acceptor).run(") {
			continue
		}
		if !strings.Contains(g, " [IO wait") {
			return false
		}
		n++
	}
	return n > 0
}

// TestConformanceListenerReleased: Close gives back the listening port
// and every descriptor the poller took; Serve after Close and a second
// Serve fail.
func TestConformanceListenerReleased(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		warmUp(t, backend)
		before := poller.CountOpenFDs()
		p, addr := startPoller(t, backend, poller.Config{}, newTestHandler(nil))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Serve(ln); err == nil {
			t.Error("second Serve succeeded")
		}
		ln.Close()
		c := testutil.Dial(t, addr)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		expectEOF(t, c)
		c.Close()
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("port still bound after Close: %v", err)
		}
		if err := p.Serve(ln); !errors.Is(err, poller.ErrClosed) {
			t.Errorf("Serve after Close = %v, want ErrClosed", err)
		}
		ln.Close()
		if after := poller.CountOpenFDs(); after > before {
			t.Errorf("open descriptors %d before New, %d after Close", before, after)
		}
	})
}

// TestConformanceCloseRightAfterServe: Close must not hang or fail when it
// races the accept goroutine Serve starts.
func TestConformanceCloseRightAfterServe(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		for range 20 {
			p, _ := startPoller(t, backend, poller.Config{}, newTestHandler(nil))
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
	})
}
