package poller

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// acceptor is the accept path of every backend: one goroutine per served
// Poller that takes over the listener, accepts, applies admission before
// any byte is read, answers rejected connections with a precompiled 503,
// sheds connections when descriptors run out, and hands each admitted
// descriptor to its backend through an opener, the one step that differs
// between backends.
//
// Listener take-over: Serve duplicates ln's descriptor and wraps the
// duplicate in an os.File, so that syscall.RawConn.Read parks the accept
// goroutine in the Go runtime's poller until a connection is pending (a
// net.Listener's own RawConn can only Control). Each wake-up accepts until
// the queue is empty. ln stays open until StopAccepting or Close, which
// close both.
//
// Descriptor exhaustion: the acceptor holds a spare descriptor
// (/dev/null). When accept fails with EMFILE or ENFILE it closes the
// spare, accepts the pending connection into the freed slot, answers it
// 503 with Retry-After (reason accept_error), closes it and takes the
// spare back: clients get an answer they can act on instead of waiting in
// the backlog. Linux reports EMFILE before looking at the queue, so the
// queue may be empty: the acceptor then waits for the listener to become
// readable again instead of spinning.
//
// Back-off: only when a connection can be neither accepted nor shed (the
// spare could not be taken back, ENOBUFS, ENOMEM, ...) does the acceptor
// pause, on one schedule (AcceptBackoff: 5 ms doubling to 1 s, reset by
// the next accept), so that a persistent error does not spin a core.
//
// Every connection turned away reaches Config.OnReject with its reason;
// admission's count of open connections never includes them.
type acceptor struct {
	backend string // for errors and logs
	adm     *Admission
	log     *slog.Logger
	open    opener
	rejects map[RejectReason][]byte // precompiled 503 responses

	mu       sync.Mutex // guards ln, f, served, closed
	ln       net.Listener
	f        *os.File // our duplicate of ln's socket, in the runtime poller
	served   bool
	closed   bool          // Close called: Serve refuses
	stopping atomic.Bool   // StopAccepting or Close called: the goroutine leaves
	quit     chan struct{} // closed with stopping: ends a back-off pause
	done     chan struct{} // closed when the accept goroutine has returned

	// Set by serve before the goroutine starts, then the goroutine's own.
	rc       syscall.RawConn
	addr     net.Addr
	tcp      bool
	spare    int           // reserved descriptor for EMFILE shedding; -1 if none
	backoff  AcceptBackoff // the one back-off schedule
	pause    time.Duration // how long run pauses before accepting again
	failures int           // accept failures since the last accept
}

// opener is what a backend does with a descriptor the acceptor admitted:
// make it a connection (register it with its loop or with netpoll, then
// OnOpen). fd is non-blocking, close-on-exec and, for TCP, has
// TCP_NODELAY; sa is the peer address. It runs on the accept goroutine and
// must not block.
//
// It returns "" once it owns fd: should registering fail later, it closes
// fd and calls Admission.Closed itself. Otherwise it returns the reason to
// turn the connection away (RejectFDReserve when the backend has no room
// for the descriptor); fd is then still the acceptor's, which answers it
// 503 and closes it.
type opener func(fd int, sa unix.Sockaddr) RejectReason

// rejectReasons are the reasons an acceptor has a 503 ready for.
var rejectReasons = [...]RejectReason{RejectMaxConns, RejectFDReserve, RejectAcceptRate, RejectAcceptError}

// init prepares a (the zero acceptor) for a backend; cfg has its defaults.
func (a *acceptor) init(backend string, cfg Config, adm *Admission, open opener) {
	a.backend, a.adm, a.open = backend, adm, open
	a.log = slog.Default().With("poller", backend)
	a.rejects = make(map[RejectReason][]byte, len(rejectReasons))
	for _, r := range rejectReasons {
		a.rejects[r] = RejectResponse(cfg.RetryAfter, r)
	}
}

// serve takes over ln and starts the accept goroutine. A Poller serves
// once; after close, serve returns ErrClosed. On error ln is untouched.
func (a *acceptor) serve(ln net.Listener) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("poller: %s: Serve: %w", a.backend, ErrClosed)
	}
	if a.served {
		return fmt.Errorf("poller: %s: Serve called twice", a.backend)
	}
	f, err := dupListener(ln)
	if err != nil {
		return fmt.Errorf("poller: %s: %w", a.backend, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("poller: %s: listener: %w", a.backend, err)
	}
	a.served, a.ln, a.f, a.rc = true, ln, f, rc
	a.addr = ln.Addr()
	_, a.tcp = a.addr.(*net.TCPAddr)
	a.spare = openSpare()
	a.quit, a.done = make(chan struct{}), make(chan struct{})
	go a.run()
	return nil
}

// dupListener returns a non-blocking duplicate of ln's descriptor as an
// os.File, which joins the runtime poller.
func dupListener(ln net.Listener) (*os.File, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("listener %T has no file descriptor", ln)
	}
	src, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("listener descriptor: %w", err)
	}
	var fd int
	var derr error
	if err := src.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil, fmt.Errorf("dup listener: %w", errors.Join(err, derr))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listener non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "edgeplane-listener"), nil
}

func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// run is the accept goroutine; it returns once the listener is closed.
func (a *acceptor) run() {
	defer close(a.done)
	defer func() {
		if a.spare >= 0 {
			unix.Close(a.spare)
		}
	}()
	for {
		err := a.rc.Read(func(fd uintptr) bool { return a.acceptAll(int(fd)) })
		if a.stopping.Load() {
			return
		}
		if err != nil {
			a.log.Error("poller: accept loop ended", "addr", a.addr, "err", err)
			return
		}
		// acceptAll asked for a pause.
		t := time.NewTimer(a.pause)
		select {
		case <-t.C:
		case <-a.quit:
			t.Stop()
			return
		}
	}
}

// acceptAll accepts until nothing is pending (false: wait until the
// listener is readable again) or until it must pause or stop (true).
func (a *acceptor) acceptAll(lfd int) bool {
	for !a.stopping.Load() {
		if a.spare < 0 {
			a.spare = openSpare()
		}
		nfd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			a.accepted()
			a.admit(nfd, sa)
		case unix.EAGAIN:
			return false
		case unix.EINTR, unix.ECONNABORTED:
		case unix.EMFILE, unix.ENFILE:
			switch a.shed(lfd) {
			case shedOne:
				continue
			case shedNone: // the queue was empty
				return false
			}
			return a.failed(err)
		default:
			// ENOBUFS, ENOMEM, EPERM...: the connection stays queued and
			// the listener readable; retrying at once would spin.
			return a.failed(err)
		}
	}
	return true
}

// admit applies admission to an accepted descriptor and hands it to the
// backend, or turns it away.
func (a *acceptor) admit(nfd int, sa unix.Sockaddr) {
	r := a.adm.Admit()
	if r == "" {
		if a.tcp {
			_ = unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if r = a.open(nfd, sa); r == "" {
			return
		}
		a.adm.Closed()
		a.adm.Rejected(r)
	}
	a.reject(nfd, r)
}

type shedResult int

const (
	shedOne    shedResult = iota // answered one connection with 503
	shedNone                     // nothing was pending
	shedFailed                   // no spare descriptor, or accept failed
)

// shed answers one pending connection with 503 using the spare
// descriptor.
func (a *acceptor) shed(lfd int) shedResult {
	if a.spare < 0 {
		return shedFailed
	}
	unix.Close(a.spare)
	nfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err == nil {
		a.adm.Rejected(RejectAcceptError)
		a.reject(nfd, RejectAcceptError)
	}
	a.spare = openSpare()
	switch err {
	case nil, unix.EINTR, unix.ECONNABORTED:
		return shedOne
	case unix.EAGAIN:
		return shedNone
	}
	return shedFailed
}

// reject writes the 503 for r and closes nfd without reading anything.
// The socket is new and its send buffer empty: the short write does not
// block.
func (a *acceptor) reject(nfd int, r RejectReason) {
	_ = writeFD(nfd, a.rejects[r])
	unix.Close(nfd)
}

// accepted resets the back-off after an accept.
func (a *acceptor) accepted() {
	if a.failures > 0 {
		a.log.Info("poller: accepting again", "addr", a.addr, "failures", a.failures)
		a.failures = 0
		a.backoff.Succeeded()
	}
}

// failed counts an accept that could be neither completed nor shed and
// sets the pause before the next; it returns true (pause) for acceptAll.
func (a *acceptor) failed(err error) bool {
	a.adm.Rejected(RejectAcceptError)
	a.pause = a.backoff.Failed()
	a.failures++
	if a.failures == 1 {
		a.log.Warn("poller: accept failed; backing off", "addr", a.addr, "err", err, "pause", a.pause)
	}
	return true
}

// listenAddr is the listening address, nil before Serve.
func (a *acceptor) listenAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return a.addr
}

// stop implements StopAccepting: the listener closes (new connects are
// refused) and stop returns once the accept goroutine has, so no
// connection is being opened any more. Open connections stay. mu is not
// held across f.Close, which waits for an accept callback in progress.
func (a *acceptor) stop() error {
	a.mu.Lock()
	served, ln, f := a.served, a.ln, a.f
	first := served && !a.stopping.Swap(true)
	a.mu.Unlock()
	if !served {
		return nil
	}
	if !first {
		<-a.done
		return nil
	}
	close(a.quit)
	errF := f.Close() // wakes the goroutine parked in the runtime poller
	errL := ln.Close()
	if errors.Is(errL, net.ErrClosed) { // the caller closed it already
		errL = nil
	}
	<-a.done
	if err := errors.Join(errF, errL); err != nil {
		return fmt.Errorf("poller: %s: stop accepting: %w", a.backend, err)
	}
	return nil
}

// close stops accepting for good: a later serve returns ErrClosed.
func (a *acceptor) close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	return a.stop()
}

// writeFD is a non-blocking write that retries EINTR.
func writeFD(fd int, b []byte) error {
	for {
		_, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}
