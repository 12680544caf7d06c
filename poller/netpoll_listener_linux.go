package poller

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// npListener accepts connections for the netpoll backend on one goroutine
// of its own, parked in the Go runtime's poller while nothing is pending,
// and hands each admitted descriptor to npPoller.open, which makes it a
// netpoll connection with netpoll.NewFDConnection.
//
// Why not netpoll's EventLoop.Serve: its server keeps every connection in
// a sync.Map and adds a close callback of its own (~140 B per connection,
// 3.5% of the idle-connection budget), and its accept path needed working
// around anyway:
//   - On EMFILE/ENFILE it detached the listener and retried in a goroutine
//     that never exited if the listener was closed meanwhile. We keep a
//     spare descriptor instead: on EMFILE we free it, accept the
//     connection, answer 503 + Retry-After and close it, and take the
//     spare back. Only if the spare cannot be taken back do we back off
//     (10 ms doubling to 1 s) before accepting again.
//   - Any other persistent accept error would have made it spin; we back
//     off the same way.
//   - Admission runs here, before netpoll allocates anything for the
//     connection: a rejected connection costs accept, write and close.
type npListener struct {
	p    *npPoller
	addr net.Addr
	tcp  bool
	f    *os.File // our duplicate of the listening socket, in the Go poller
	rc   syscall.RawConn

	closed atomic.Bool // StopAccepting/Close called

	spare   int           // reserved descriptor for EMFILE shedding; -1 if none (accept goroutine only)
	backoff time.Duration // current accept back-off (accept goroutine only)
}

func newNPListener(ln net.Listener, p *npPoller) (*npListener, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("listener %T has no descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("listener descriptor: %w", err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("listener descriptor: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("dup listener: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener nonblock: %w", err)
	}
	// A non-blocking descriptor given to os.NewFile joins the runtime
	// poller, so RawConn.Read can wait for it to become readable (a
	// net.Listener's RawConn supports only Control).
	f := os.NewFile(uintptr(fd), "edgeplane-listener")
	frc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("listener descriptor: %w", err)
	}
	l := &npListener{p: p, addr: ln.Addr(), f: f, rc: frc, spare: openSpare()}
	_, l.tcp = ln.Addr().(*net.TCPAddr)
	ln.Close() // the duplicate keeps the socket listening
	return l, nil
}

func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// run is the accept goroutine; it returns once the listener is closed.
func (l *npListener) run() {
	defer func() {
		if l.spare >= 0 {
			unix.Close(l.spare)
			l.spare = -1
		}
	}()
	for {
		err := l.rc.Read(func(fd uintptr) bool { return l.acceptAll(int(fd)) })
		if l.isClosed() {
			return
		}
		if err != nil {
			slog.Error("poller: netpoll: accept loop ended", "addr", l.addr, "err", err)
			return
		}
		// acceptAll asked to back off.
		time.Sleep(l.backoff)
	}
}

// acceptAll accepts until nothing is pending (false: wait until the socket
// is readable again) or until it must back off or stop (true).
func (l *npListener) acceptAll(lfd int) bool {
	for {
		if l.isClosed() {
			return true
		}
		if l.spare < 0 {
			l.spare = openSpare()
		}
		nfd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			l.backoff = 0
		case err == unix.EAGAIN:
			return false
		case err == unix.EINTR || err == unix.ECONNABORTED:
			continue
		case err == unix.EMFILE || err == unix.ENFILE:
			// Linux reports EMFILE before looking at the queue: it may
			// be empty.
			switch l.shed(lfd) {
			case shedOne:
				continue
			case shedNone:
				return false
			}
			l.p.adm.Rejected(RejectAcceptError)
			l.slowDown()
			return true
		default:
			// ENOBUFS, ENOMEM, EPERM...: the socket stays readable.
			slog.Warn("poller: netpoll: accept failed, backing off", "addr", l.addr, "err", err)
			l.p.adm.Rejected(RejectAcceptError)
			l.slowDown()
			return true
		}
		if r := l.p.adm.Admit(); r != "" {
			l.reject(nfd, r)
			continue
		}
		if l.tcp {
			_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		l.p.open(nfd, sockaddrToAddr(sa))
	}
}

func (l *npListener) slowDown() {
	l.backoff = min(max(2*l.backoff, 10*time.Millisecond), time.Second)
}

type shedResult int

const (
	shedOne    shedResult = iota // answered one connection with 503
	shedNone                     // nothing was pending
	shedFailed                   // no spare descriptor, or accept failed
)

// shed answers one pending connection with 503 using the spare
// descriptor.
func (l *npListener) shed(lfd int) shedResult {
	if l.spare < 0 {
		return shedFailed
	}
	unix.Close(l.spare)
	l.spare = -1
	nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err == nil {
		l.p.adm.Rejected(RejectAcceptError)
		l.reject(nfd, "")
	}
	l.spare = openSpare()
	switch {
	case err == nil || err == unix.ECONNABORTED:
		return shedOne
	case err == unix.EAGAIN:
		return shedNone
	}
	return shedFailed
}

// reject writes the 503 for r (already counted by Admit, or counted by the
// caller when r is "") and closes nfd. The socket is new, its send buffer
// empty: the short write does not block.
func (l *npListener) reject(nfd int, r RejectReason) {
	resp := l.p.rejects[r]
	if r == "" {
		resp = l.p.rejects[RejectAcceptError]
	}
	_, _ = unix.Write(nfd, resp)
	unix.Close(nfd)
}

// Close stops listening: new connects are refused, and the accept
// goroutine, woken by the runtime poller, returns. No lock may be held
// across f.Close: it waits for an accept callback in progress, which reads
// closed.
func (l *npListener) Close() error {
	if !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("poller: netpoll: stop listening: %w", err)
	}
	return nil
}

func (l *npListener) isClosed() bool { return l.closed.Load() }

// Addr is the listening address.
func (l *npListener) Addr() net.Addr { return l.addr }

// sockaddrToAddr never returns nil. TCP addresses are the compact kind
// (addr.go).
func sockaddrToAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return newInet4Addr(a.Addr, a.Port)
	case *unix.SockaddrInet6:
		return newInet6Addr(a.Addr, a.Port)
	case *unix.SockaddrUnix:
		return &net.UnixAddr{Name: a.Name, Net: "unix"}
	}
	return &net.TCPAddr{}
}
