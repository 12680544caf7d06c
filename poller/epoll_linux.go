package poller

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The epoll backend: cfg.Loops event loops (default GOMAXPROCS), each an
// epoll instance with one shared read buffer, and one acceptor goroutine
// that takes over the listener given to Serve. Connection fd f belongs to
// loop f % Loops for its whole life. The goroutine count is Loops + 1
// whatever the number of connections.
//
// The acceptor waits for the listener through the Go runtime's poller
// (syscall.RawConn.Read), calls accept4 itself, applies admission before
// any byte is read, and posts the non-blocking fd to its loop, which
// registers it (EPOLLIN|EPOLLRDHUP, level-triggered) and calls
// Handler.OnOpen. Per-connection state is described in epoll_slab_linux.go.
//
// Writes: Send appends a frame reference to the connection's queue and,
// if the connection was clean, puts it on its loop's dirty list (waking the
// loop with its eventfd only if the loop is asleep). The loop writes each
// dirty connection's queue with one writev, so frames sent while it was
// busy go out together, and registers EPOLLOUT only when a write would
// block, until the queue is drained. Only the owning loop touches the
// socket, so no write can reach an fd reused by a later connection.
func init() {
	Register("epoll", newEpoll)
}

// epollPoller implements Poller.
type epollPoller struct {
	cfg   Config
	h     Handler
	adm   *Admission
	log   *slog.Logger
	id    uint8
	slab  *slab
	loops []*loop

	mu         sync.Mutex // guards ln, acceptDone, closed
	ln         net.Listener
	lf         *os.File // our duplicate of ln's descriptor, accepted on
	acceptDone chan struct{}
	stopAccept chan struct{}
	closed     bool
	closeOnce  sync.Once
	closeErr   error
}

func newEpoll(cfg Config, h Handler) (Poller, error) {
	if h == nil {
		return nil, errors.New("poller: epoll: nil handler")
	}
	n := cfg.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	var rl unix.Rlimit
	maxFDs := maxFD
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Max < uint64(maxFD) {
		maxFDs = int(rl.Max)
	}
	p := &epollPoller{
		cfg:  cfg,
		h:    h,
		adm:  NewAdmission(cfg),
		log:  slog.Default().With("poller", "epoll"),
		slab: newSlab(maxFDs),
	}
	id, ok := registerEpoll(p)
	if !ok {
		return nil, errors.New("poller: epoll: too many pollers in this process (256)")
	}
	p.id = id
	for i := 0; i < n; i++ {
		l, err := newLoop(p, i)
		if err != nil {
			for _, l := range p.loops {
				unix.Close(l.epfd)
				unix.Close(l.evfd)
			}
			epollRegistry[id].Store(nil)
			return nil, err
		}
		p.loops = append(p.loops, l)
	}
	for _, l := range p.loops {
		go l.run()
	}
	return p, nil
}

var registryMu sync.Mutex

func registerEpoll(p *epollPoller) (uint8, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for i := range epollRegistry {
		if epollRegistry[i].Load() == nil {
			epollRegistry[i].Store(p)
			return uint8(i), true
		}
	}
	return 0, false
}

func (p *epollPoller) loopOf(fd int) *loop { return p.loops[fd%len(p.loops)] }

// Serve implements Poller. It takes over ln, which must be a TCP listener
// (anything implementing syscall.Conn over a stream socket).
func (p *epollPoller) Serve(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("poller: epoll: listener %T has no file descriptor", ln)
	}
	src, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("poller: epoll: listener: %w", err)
	}
	// A listener's RawConn cannot Read; a duplicate of its descriptor
	// wrapped in an os.File can, and waits in the runtime's poller.
	dupfd, derr := -1, error(nil)
	if err := src.Control(func(fd uintptr) {
		dupfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return fmt.Errorf("poller: epoll: dup listener: %w", errors.Join(err, derr))
	}
	lf := os.NewFile(uintptr(dupfd), "epoll-listener")
	rc, err := lf.SyscallConn()
	if err != nil {
		lf.Close()
		return fmt.Errorf("poller: epoll: listener: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.ln != nil {
		lf.Close()
		if p.closed {
			return ErrClosed
		}
		return errors.New("poller: epoll: Serve called twice")
	}
	p.ln, p.lf = ln, lf
	p.acceptDone = make(chan struct{})
	p.stopAccept = make(chan struct{})
	go p.accept(rc, p.stopAccept, p.acceptDone)
	return nil
}

// accept is the acceptor goroutine.
func (p *epollPoller) accept(rc syscall.RawConn, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var backoff AcceptBackoff
	for {
		var (
			nfd  int
			sa   unix.Sockaddr
			aerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil { // the listener was closed
			return
		}
		if aerr != nil {
			switch aerr {
			case unix.EINTR, unix.ECONNABORTED:
				continue
			}
			// EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection
			// stays in the backlog, so retrying at once would spin.
			p.adm.Rejected(RejectAcceptError)
			d := backoff.Failed()
			p.log.Warn("poller: accept failed; backing off", "err", aerr, "backoff", d)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return
			}
			continue
		}
		backoff.Succeeded()
		p.admit(nfd, sa)
	}
}

// admit applies admission to an accepted fd and hands it to its loop.
func (p *epollPoller) admit(nfd int, sa unix.Sockaddr) {
	if r := p.adm.Admit(); r != "" {
		p.reject(nfd, r)
		return
	}
	if !p.slab.ensure(nfd) {
		p.adm.Closed()
		p.adm.Rejected(RejectFDReserve)
		p.reject(nfd, RejectFDReserve)
		return
	}
	unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	o := op{kind: opOpen, fd: int32(nfd)}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		o.ip = [16]byte{10: 0xff, 11: 0xff, 12: a.Addr[0], 13: a.Addr[1], 14: a.Addr[2], 15: a.Addr[3]}
		o.port = uint16(a.Port)
	case *unix.SockaddrInet6:
		o.ip = a.Addr
		o.port = uint16(a.Port)
	}
	if !p.loopOf(nfd).post(o) { // the loop has stopped
		unix.Close(nfd)
		p.adm.Closed()
	}
}

// reject answers a connection admission turned away and closes it before
// reading anything.
func (p *epollPoller) reject(nfd int, r RejectReason) {
	writeFD(nfd, RejectResponse(p.cfg.RetryAfter, r))
	unix.Close(nfd)
}

// Addr implements Poller.
func (p *epollPoller) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

// Conns implements Poller.
func (p *epollPoller) Conns() int { return p.adm.Conns() }

// StopAccepting implements Poller: it closes the listener and waits for
// the acceptor to exit. Open connections stay.
func (p *epollPoller) StopAccepting() error {
	p.mu.Lock()
	ln, lf, stop, done := p.ln, p.lf, p.stopAccept, p.acceptDone
	p.stopAccept = nil
	p.mu.Unlock()
	if ln == nil || stop == nil {
		return nil
	}
	close(stop)
	lf.Close() // wakes the acceptor
	err := ln.Close()
	<-done
	if err != nil {
		return fmt.Errorf("poller: epoll: close listener: %w", err)
	}
	return nil
}

// Close implements Poller: it stops accepting, closes every connection
// (each Session gets OnClose(nil) on its loop) and waits for the loops to
// exit. It must not be called from a Session callback.
func (p *epollPoller) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.StopAccepting()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		for _, l := range p.loops {
			l.post(op{kind: opStop})
		}
		for _, l := range p.loops {
			<-l.stopped
		}
		registryMu.Lock()
		epollRegistry[p.id].Store(nil)
		registryMu.Unlock()
	})
	return p.closeErr
}

func wrapErr(what string, err error) error {
	return fmt.Errorf("poller: epoll: %s: %w", what, err)
}
