package poller

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// npListener is the netpoll.Listener handed to netpoll's server. netpoll's
// poller goroutine calls Accept each time the listening socket is readable
// (level-triggered), so Accept must never block and must make progress or
// return an error that makes netpoll stop polling the socket.
//
// What netpoll v0.7.2's own listener does, and why we replace it:
//   - On EMFILE/ENFILE netpoll's server detaches the listener and retries in
//     a goroutine (0, 10, 50, ..., 1000 ms): it does not spin, but the
//     excess connections wait in the backlog unanswered, and that goroutine
//     never exits if the listener is closed meanwhile (Accept on the closed
//     descriptor fails for ever, or accepts on whatever reused the number).
//     We keep a spare descriptor instead: on EMFILE we free it, accept the
//     connection, answer 503 + Retry-After and close it, and take the spare
//     back. Only if the spare cannot be taken back do we fall back to
//     netpoll's paced retry.
//   - Any other persistent accept error would spin (the socket stays
//     readable and netpoll polls it again at once); we hand those to the
//     same paced retry.
//   - Its listener Close closes the descriptor number twice (syscall.Close
//     and then os.File.Close), and closing a descriptor that netpoll's
//     poller may still use invites number reuse. We stop listening with
//     shutdown(2), which keeps the number valid, wakes the poller (HUP) and
//     makes new connects fail; the number is closed in release, after
//     netpoll is done with it.
//   - Admission runs here, before netpoll allocates anything for the
//     connection: a rejected connection costs accept, write and close.
type npListener struct {
	p    *npPoller
	addr net.Addr
	tcp  bool

	mu       sync.Mutex
	fd       int  // our duplicate of the listening socket; -1 after release
	spare    int  // reserved descriptor for EMFILE shedding; -1 if none
	closed   bool // StopAccepting/Close called
	retrying bool // netpoll's EMFILE retry goroutine was started at least once
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
	l := &npListener{p: p, addr: ln.Addr(), fd: fd, spare: openSpare()}
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

// Accept implements netpoll.Listener. (nil, nil) means "nothing to hand
// over now" to netpoll.
func (l *npListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		// The socket was shut down: netpoll sees HUP and detaches it
		// itself (returning an error here too would detach it twice).
		// netpoll's retry goroutine, if any, exits on (nil, nil).
		return nil, nil
	}
	if l.spare < 0 {
		l.spare = openSpare()
	}
	nfd, sa, err := unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	switch {
	case err == nil:
	case err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED:
		return nil, nil
	case err == unix.EMFILE || err == unix.ENFILE:
		if l.shedLocked() {
			return nil, nil
		}
		l.p.adm.Rejected(RejectAcceptError)
		l.retrying = true
		return nil, err // netpoll detaches the socket and retries paced
	default:
		// ENOBUFS, ENOMEM, EPERM...: the socket stays readable, so
		// returning anything but EMFILE would make netpoll spin on it.
		slog.Warn("poller: netpoll: accept failed, backing off", "addr", l.addr, "err", err)
		l.p.adm.Rejected(RejectAcceptError)
		l.retrying = true
		return nil, unix.EMFILE
	}
	if r := l.p.adm.Admit(); r != "" {
		l.reject(nfd, r)
		return nil, nil
	}
	if l.tcp {
		_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	return &acceptedFD{fd: nfd, laddr: l.addr, raddr: sockaddrToAddr(sa)}, nil
}

// shedLocked answers one pending connection with 503 using the spare
// descriptor. It reports whether the listener made progress (or has
// nothing pending). l.mu is held.
func (l *npListener) shedLocked() bool {
	if l.spare < 0 {
		return false
	}
	unix.Close(l.spare)
	l.spare = -1
	nfd, _, err := unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err == nil {
		l.p.adm.Rejected(RejectAcceptError)
		l.reject(nfd, "")
	}
	l.spare = openSpare()
	return err == nil || err == unix.EAGAIN || err == unix.ECONNABORTED
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

// Close implements net.Listener: stop listening, keep the descriptor number.
func (l *npListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.fd < 0 {
		return nil
	}
	l.closed = true
	if err := unix.Shutdown(l.fd, unix.SHUT_RDWR); err != nil {
		return fmt.Errorf("poller: netpoll: stop listening: %w", err)
	}
	return nil
}

func (l *npListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// release closes the descriptors once netpoll's server is gone. If
// netpoll's EMFILE retry goroutine ever ran, the listener number is kept
// open (one descriptor): that goroutine re-registers the number after its
// last Accept, and must not act on a reused number.
func (l *npListener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare >= 0 {
		unix.Close(l.spare)
		l.spare = -1
	}
	if l.fd < 0 {
		return
	}
	if l.retrying {
		slog.Warn("poller: netpoll: keeping listener descriptor for netpoll's accept retry", "fd", l.fd)
		return
	}
	// netpoll handles the listener's hang-up and detach on its poller
	// goroutine, possibly after Shutdown returned. Closing the number now
	// would let the next listener reuse it, and a late EPOLL_CTL_DEL would
	// then remove the new listener from epoll (seen as a poller that never
	// accepts). Keep the number occupied for a grace period.
	fd := l.fd
	l.fd = -1
	time.AfterFunc(listenerCloseGrace, func() { unix.Close(fd) })
}

// listenerCloseGrace is how long a closed listener's descriptor stays
// open so that netpoll's late detach cannot hit a reused number.
const listenerCloseGrace = 2 * time.Second

// Addr implements net.Listener.
func (l *npListener) Addr() net.Addr { return l.addr }

// Fd implements netpoll.Listener.
func (l *npListener) Fd() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fd
}

// acceptedFD carries an accepted descriptor into netpoll, which copies the
// descriptor and both addresses into its connection and drops this value.
type acceptedFD struct {
	fd           int
	laddr, raddr net.Addr
}

func (a *acceptedFD) Fd() int                          { return a.fd }
func (a *acceptedFD) LocalAddr() net.Addr              { return a.laddr }
func (a *acceptedFD) RemoteAddr() net.Addr             { return a.raddr }
func (a *acceptedFD) Read([]byte) (int, error)         { return 0, errors.ErrUnsupported }
func (a *acceptedFD) Write([]byte) (int, error)        { return 0, errors.ErrUnsupported }
func (a *acceptedFD) Close() error                     { return unix.Close(a.fd) }
func (a *acceptedFD) SetDeadline(time.Time) error      { return nil }
func (a *acceptedFD) SetReadDeadline(time.Time) error  { return nil }
func (a *acceptedFD) SetWriteDeadline(time.Time) error { return nil }

// sockaddrToAddr never returns nil: netpoll formats the remote address
// into its timeout errors. TCP addresses are the compact kind (addr.go).
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
