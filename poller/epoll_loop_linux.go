package poller

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// evRead is the interest set of an idle connection; EPOLLOUT is added
	// only while bytes are unsent.
	evRead = unix.EPOLLIN | unix.EPOLLRDHUP
	// readBufSize is the size of each loop's one shared read buffer.
	readBufSize = 64 << 10
	// maxIov bounds the frames one writev sends.
	maxIov = 64
	// maxEvents is how many events one epoll_wait returns.
	maxEvents = 256
)

type opKind uint8

const (
	opOpen     opKind = iota + 1 // install an accepted fd
	opClose                      // close fd (reason in the slot)
	opShutdown                   // track fd's Shutdown deadline
	opStop                       // close every connection and exit
)

// op is a request handed to a loop by another goroutine.
type op struct {
	kind opKind
	fd   int32
	gen  uint32
	port uint16
	ip   [16]byte
}

// connRef names one connection: fd and generation.
type connRef struct {
	fd  int32
	gen uint32
}

type shutEntry struct {
	fd       int32
	gen      uint32
	deadline int64 // unix nanoseconds
}

// loop is one epoll event loop. It owns the connections whose fd modulo
// the number of loops is its index: it alone installs them, reads them,
// calls their Session and closes them.
type loop struct {
	p    *epollPoller
	idx  int
	epfd int
	evfd int // eventfd that wakes the loop for posted ops

	buf    []byte // the shared read buffer
	events []unix.EpollEvent
	iov    []unix.Iovec
	shut   []shutEntry
	ops    []op      // loop-private copy of posted ops
	dirtyQ []connRef // loop-private copy of dirty

	// inCall is fd+1 of the connection whose Session callback the loop
	// is running (0: none). Send does not write at once to that
	// connection: what a callback sends goes out after it returns, as it
	// always has (a handshake reply must not reach the client before the
	// callback has registered the connection).
	inCall atomic.Int32

	mu      sync.Mutex // guards posted, dirty, woken, dead
	posted  []op
	dirty   []connRef // connections with bytes queued and no write pending
	woken   bool      // the loop is awake or an eventfd write is pending
	dead    bool
	stopped chan struct{}
}

func newLoop(p *epollPoller, idx int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, wrapErr("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, wrapErr("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, wrapErr("epoll_ctl eventfd", err)
	}
	return &loop{
		p: p, idx: idx, epfd: epfd, evfd: evfd,
		buf:     make([]byte, readBufSize),
		events:  make([]unix.EpollEvent, maxEvents),
		iov:     make([]unix.Iovec, maxIov),
		stopped: make(chan struct{}),
	}, nil
}

var wakeBytes = [8]byte{1}

// post hands o to the loop and wakes it; false if the loop has stopped.
// Safe from any goroutine, including the loop itself and with a slot lock
// held (lock order: slot, then loop).
func (l *loop) post(o op) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return false
	}
	l.posted = append(l.posted, o)
	l.wakeLocked()
	return true
}

// markDirty puts a connection on the dirty list. Like post.
func (l *loop) markDirty(fd int, gen uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return
	}
	l.dirty = append(l.dirty, connRef{fd: int32(fd), gen: gen})
	l.wakeLocked()
}

// wakeLocked writes the eventfd unless the loop is awake (it drains before
// sleeping) or a wake-up is already pending. l.mu must be held.
func (l *loop) wakeLocked() {
	if !l.woken {
		l.woken = true
		// A full eventfd counter (EAGAIN) still wakes the loop.
		unix.Write(l.evfd, wakeBytes[:])
	}
}

func (l *loop) run() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		pending := len(l.posted) > 0 || len(l.dirty) > 0
		l.woken = pending // asleep from here unless there is work
		l.mu.Unlock()
		// With work pending, poll without blocking through RawSyscall (no
		// hand-off of the P, as netpoll does); otherwise sleep in
		// epoll_wait. (Polling once more after Gosched before sleeping, as
		// netpoll also does, cost ~0.8 points of idle CPU at 19k
		// connections and made no measurable difference to broadcasts.)
		var n int
		var err error
		if pending {
			n, err = epollWaitNow(l.epfd, l.events)
		} else {
			n, err = unix.EpollWait(l.epfd, l.events, l.timeout())
		}
		if err != nil && err != unix.EINTR {
			// EBADF/EINVAL: the loop cannot continue.
			l.p.log.Error("poller: epoll_wait failed; loop stops", "loop", l.idx, "err", err)
			l.stop()
			return
		}
		l.mu.Lock()
		l.woken = true
		l.mu.Unlock()
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			if int(ev.Fd) == l.evfd {
				var b [8]byte
				unix.Read(l.evfd, b[:])
				continue
			}
			l.onEvent(int(ev.Fd), uint32(ev.Pad), ev.Events)
		}
		if l.drain() {
			l.stop()
			return
		}
		if len(l.shut) > 0 {
			l.sweepShutdowns()
		}
	}
}

// timeout is the epoll_wait timeout: the nearest Shutdown deadline.
func (l *loop) timeout() int {
	if len(l.shut) == 0 {
		return -1
	}
	next := l.shut[0].deadline
	for _, e := range l.shut[1:] {
		next = min(next, e.deadline)
	}
	d := time.Until(time.Unix(0, next))
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// drain runs the posted ops and flushes the dirty connections; true if
// the loop must stop.
func (l *loop) drain() bool {
	l.mu.Lock()
	l.ops, l.posted = l.posted, l.ops[:0]
	l.dirtyQ, l.dirty = l.dirty, l.dirtyQ[:0]
	l.mu.Unlock()
	stop := false
	for i := range l.ops {
		o := &l.ops[i]
		switch o.kind {
		case opOpen:
			l.open(o)
		case opClose:
			l.closeConn(int(o.fd), o.gen, reasonNone)
		case opShutdown:
			l.shut = append(l.shut, shutEntry{fd: o.fd, gen: o.gen,
				deadline: time.Now().Add(l.p.cfg.ShutdownTimeout).UnixNano()})
		case opStop:
			stop = true
		}
	}
	clear(l.ops)
	for _, d := range l.dirtyQ {
		l.flush(int(d.fd), d.gen)
	}
	return stop
}

// open installs an accepted fd and asks the handler for its Session.
func (l *loop) open(o *op) {
	p, fd := l.p, int(o.fd)
	sl, rf := p.slab.get(fd)
	gen := nextGen()
	sl.mu.Lock()
	sl.gen = gen
	sl.cerr = reasonNone
	sl.ip, sl.port = o.ip, o.port
	sl.wtick = writeTick() - 1 // the first Send may write at once
	sl.flags.Store(fOpen)
	sl.mu.Unlock()
	ev := unix.EpollEvent{Events: evRead, Fd: int32(fd), Pad: int32(gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.log.Warn("poller: epoll_ctl add failed", "fd", fd, "err", err)
		l.closeConn(fd, gen, reasonAddFail)
		return
	}
	l.inCall.Store(int32(fd) + 1)
	rf.sess = p.h.OnOpen(makeEconn(p.id, fd, gen))
	l.inCall.Store(0)
	if rf.sess == nil {
		l.closeConn(fd, gen, reasonNone)
	}
}

// onEvent handles readiness of connection fd.
func (l *loop) onEvent(fd int, gen uint32, events uint32) {
	sl, rf := l.p.slab.get(fd)
	// gen is written only by this loop: reading it unlocked is safe. A
	// mismatch is an event for an earlier connection on this fd.
	if sl == nil || sl.gen != gen {
		return
	}
	f := sl.flags.Load()
	if f&fOpen == 0 {
		return
	}
	if f&fCloseReq != 0 {
		l.closeConn(fd, gen, reasonNone)
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		n, err := readFD(fd, l.buf)
		switch {
		case n > 0:
			l.inCall.Store(int32(fd) + 1)
			rf.sess.OnData(l.buf[:n])
			l.inCall.Store(0)
		case err == nil: // EOF: the peer hung up
			l.closeConn(fd, gen, reasonNone)
			return
		case err == unix.EAGAIN:
		default:
			l.closeConn(fd, gen, errnoReason(err))
			return
		}
	}
	if events&unix.EPOLLOUT != 0 {
		l.flush(fd, gen)
	}
}

// flushBudget bounds the bytes one flush writes before other connections
// get their turn (the rest waits for EPOLLOUT).
const flushBudget = 256 << 10

// flush writes the connection's queue with writev until it is empty, the
// socket would block, or flushBudget is spent; it registers EPOLLOUT while
// bytes remain and closes a drained Shutdown.
func (l *loop) flush(fd int, gen uint32) {
	p := l.p
	sl, rf := p.slab.get(fd)
	sl.mu.Lock()
	f := sl.flags.Load()
	if sl.gen != gen || f&fOpen == 0 {
		sl.mu.Unlock()
		return
	}
	sl.flags.Store(f &^ fDirty)
	reason, written := reasonNone, 0
	for rf.q != nil && rf.q.n > 0 && written < flushBudget {
		k := rf.q.fill(l.iov)
		sl.mu.Unlock() // Sends may queue meanwhile; only this loop dequeues
		n, err := writev(fd, l.iov[:k])
		clear(l.iov[:k])
		sl.mu.Lock()
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			reason = errnoReason(err)
			break
		}
		rf.q.consume(n)
		written += n
	}
	f = sl.flags.Load()
	closeNow := false
	switch {
	case reason != reasonNone:
		closeNow = true
	case rf.q != nil && rf.q.n > 0:
		if f&fArmed == 0 {
			if err := p.armLocked(sl, fd, true); err != nil {
				reason, closeNow = errnoReason(err), true
			}
		}
	default:
		if rf.q != nil {
			rf.q.release()
			rf.q = nil
		}
		if f&fArmed != 0 {
			p.armLocked(sl, fd, false)
		}
		closeNow = f&fShutdown != 0
	}
	sl.mu.Unlock()
	if closeNow {
		l.closeConn(fd, gen, reason)
	}
}

// closeConn closes connection (fd, gen) if it is still open and calls
// OnClose. reason is used unless a close was requested earlier with its
// own reason.
func (l *loop) closeConn(fd int, gen uint32, reason uint32) {
	p := l.p
	sl, rf := p.slab.get(fd)
	if sl == nil {
		return
	}
	sl.mu.Lock()
	f := sl.flags.Load()
	if sl.gen != gen || f&fOpen == 0 {
		sl.mu.Unlock()
		return
	}
	if f&fCloseReq != 0 {
		reason = sl.cerr
	}
	sl.flags.Store(0)
	q := rf.q
	rf.q = nil
	sl.mu.Unlock()

	sess := rf.sess
	rf.sess = nil
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
	p.adm.Closed()
	if q != nil {
		q.release()
	}
	if sess != nil {
		sess.OnClose(reasonErr(reason))
	}
}

// sweepShutdowns closes connections whose Shutdown deadline passed.
func (l *loop) sweepShutdowns() {
	now := time.Now().UnixNano()
	keep := l.shut[:0]
	for _, e := range l.shut {
		sl, _ := l.p.slab.get(int(e.fd))
		if sl == nil || sl.gen != e.gen || sl.flags.Load()&fOpen == 0 {
			continue
		}
		if e.deadline <= now {
			l.closeConn(int(e.fd), e.gen, reasonTimeout)
			continue
		}
		keep = append(keep, e)
	}
	l.shut = keep
}

// stop closes every connection of this loop, then the loop's descriptors.
func (l *loop) stop() {
	l.mu.Lock()
	l.dead = true
	rest := l.posted
	l.posted = nil
	l.mu.Unlock()
	// Accepted fds never installed (the acceptor has stopped).
	for _, o := range rest {
		if o.kind == opOpen {
			unix.Close(int(o.fd))
			l.p.adm.Closed()
		}
	}
	s, n := l.p.slab, len(l.p.loops)
	for pg := 0; pg < s.pages(); pg++ {
		sp := s.slots[pg].Load()
		if sp == nil {
			continue
		}
		for i := range sp {
			fd := pg<<slabShift | i
			if fd%n != l.idx {
				continue
			}
			if sl := &sp[i]; sl.flags.Load()&fOpen != 0 {
				l.closeConn(fd, sl.gen, reasonNone)
			}
		}
	}
	unix.Close(l.epfd)
	l.mu.Lock()
	unix.Close(l.evfd)
	l.mu.Unlock()
}

// epollWaitNow is epoll_wait with a zero timeout: it never blocks, so it
// is a RawSyscall (no hand-off of the P).
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// readFD reads once, retrying EINTR. n == 0 with a nil error is EOF.
func readFD(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return rawIO(unix.SYS_READ, fd, unsafe.Pointer(&b[0]), len(b))
}
