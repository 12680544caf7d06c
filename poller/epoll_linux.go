package poller

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// The epoll backend: cfg.Loops event loops (default GOMAXPROCS), each an
// epoll instance with one shared read buffer, and the shared acceptor
// (accept_linux.go). Connection fd f belongs to loop f % Loops for its
// whole life. The goroutine count is Loops + 1 whatever the number of
// connections.
//
// The acceptor hands each admitted fd to epollPoller.open, which posts it
// to its loop; the loop registers it (EPOLLIN|EPOLLRDHUP, level-triggered)
// and calls Handler.OnOpen. Per-connection state is
// described in epoll_slab_linux.go.
//
// Writes: Send on a connection with nothing queued writes the frame at
// once, from the caller's goroutine, with one non-blocking write under the
// slot lock (a broadcast costs one system call per recipient and nothing
// else, as the floor does). What the socket does not take, and every frame
// sent while bytes are queued, goes on the connection's queue, which puts
// it on its loop's dirty list (waking the loop with its eventfd only if
// the loop is asleep). The loop writes each dirty connection's queue with
// one writev, so frames sent while it was busy go out together, and
// registers EPOLLOUT only when a write would block, until the queue is
// drained. Only the owning loop closes the socket, and only after marking
// the slot closed under its lock, so no write can reach an fd reused by a
// later connection.
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
	acc   acceptor

	closeOnce sync.Once
	closeErr  error
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
	p.acc.init("epoll", cfg, p.adm, p.open)
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
func (p *epollPoller) Serve(ln net.Listener) error { return p.acc.serve(ln) }

// open is the epoll backend's opener: it posts an admitted fd to its loop.
func (p *epollPoller) open(nfd int, sa unix.Sockaddr) RejectReason {
	if !p.slab.ensure(nfd) {
		return RejectFDReserve // beyond the slab, which RLIMIT_NOFILE sized
	}
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
	return ""
}

// Addr implements Poller.
func (p *epollPoller) Addr() net.Addr { return p.acc.listenAddr() }

// Conns implements Poller.
func (p *epollPoller) Conns() int { return p.adm.Conns() }

// StopAccepting implements Poller: it closes the listener and waits for
// the acceptor to exit. Open connections stay.
func (p *epollPoller) StopAccepting() error { return p.acc.stop() }

// Close implements Poller: it stops accepting, closes every connection
// (each Session gets OnClose(nil) on its loop) and waits for the loops to
// exit. It must not be called from a Session callback.
func (p *epollPoller) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.acc.close()
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
