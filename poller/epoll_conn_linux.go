package poller

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// econn is the poller.Conn of the epoll backend: a value, not a pointer.
// Bits 56-63 are the poller's registry index, 32-55 the fd, 0-31 the
// connection's generation. A handle whose generation no longer matches its
// slot is stale: every method treats it as closed, so it can never touch a
// later connection that reused the fd.
type econn uint64

// epollRegistry maps a handle's poller index to its poller. Indices are
// reused after Close; generations come from one process-wide counter, so a
// handle of a closed poller never matches a slot of a later one.
var (
	epollRegistry [256]atomic.Pointer[epollPoller]
	epollGen      atomic.Uint32
)

func nextGen() uint32 {
	for {
		if g := epollGen.Add(1); g != 0 {
			return g
		}
	}
}

func makeEconn(id uint8, fd int, gen uint32) econn {
	return econn(uint64(id)<<56 | uint64(fd)<<32 | uint64(gen))
}

func (c econn) fd() int        { return int(uint64(c)>>32) & (maxFD - 1) }
func (c econn) gen() uint32    { return uint32(c) }
func (c econn) id() uint8      { return uint8(uint64(c) >> 56) }
func (c econn) String() string { return fmt.Sprintf("epoll[%d]fd%d#%d", c.id(), c.fd(), c.gen()) }

// lock returns the poller and slot of c with the slot locked (the caller
// unlocks sl.mu), or nils if c is stale: its poller is gone or the slot's
// generation is another connection's. The connection may be closed.
func (c econn) lock() (*epollPoller, *slot, *refs) {
	p := epollRegistry[c.id()].Load()
	if p == nil {
		return nil, nil, nil
	}
	sl, rf := p.slab.get(c.fd())
	if sl == nil {
		return nil, nil, nil
	}
	sl.mu.Lock()
	if sl.gen != c.gen() {
		sl.mu.Unlock()
		return nil, nil, nil
	}
	return p, sl, rf
}

// live reports whether a connection with slot flags f accepts Sends.
func live(f uint32) bool { return f&fOpen != 0 && f&(fShutdown|fCloseReq) == 0 }

// Send implements Conn. When nothing is queued, no write is pending (the
// socket was writable last time), Send has not written to this connection
// itself in the current writeTick and the call is not made from the
// connection's own Session callback (whose Sends go out when it returns,
// together), it writes frame at once with
// one non-blocking write from the caller's goroutine, as the floor does: no
// queue, no loop wake-up, no allocation. That is every recipient of a
// broadcast. Whatever the socket does not take (EAGAIN, a short write) is
// queued and the connection put on its loop's dirty list, as is every
// frame sent while bytes are queued or within the tick of a direct write
// (a burst to one connection): the loop writes the queue with one writev
// per connection per wake-up, so a burst costs a system call per wake-up
// rather than one per frame, and registers EPOLLOUT only if the socket
// would block.
//
// The write happens under the slot lock with the generation checked, and
// the loop closes a socket only after clearing fOpen under that lock, so
// it can never reach an fd reused by a later connection; and since the
// loop writes only while the queue is not empty, the two never interleave
// bytes.
func (c econn) Send(frame []byte) error {
	p, sl, rf := c.lock()
	if p == nil {
		return ErrClosed
	}
	defer sl.mu.Unlock()
	f := sl.flags.Load()
	if !live(f) {
		return ErrClosed
	}
	if len(frame) == 0 {
		return nil
	}
	if rf.q != nil && rf.q.n+len(frame) > p.cfg.MaxQueueBytes || len(frame) > p.cfg.MaxQueueBytes {
		return ErrQueueFull
	}
	fd := c.fd()
	off := 0
	if tick := writeTick(); f&(fDirty|fArmed) == 0 && (rf.q == nil || rf.q.n == 0) && sl.wtick != tick &&
		p.loopOf(fd).inCall.Load() != int32(fd)+1 {
		sl.wtick = tick
		n, err := rawWrite(fd, frame)
		switch {
		case err == nil && n == len(frame):
			return nil
		case err == nil:
			off = n // a short write: the rest waits for the loop
		case err != unix.EAGAIN:
			// The socket is broken: its loop closes it (and will see the
			// error again on its next read or write).
			p.requestCloseLocked(sl, fd, errnoReason(err))
			return ErrClosed
		}
	}
	rf.q = rf.q.push(frame)
	if off > 0 {
		rf.q.consume(off)
	}
	p.dirtyLocked(sl, fd, f)
	return nil
}

// writeTick is a coarse clock (~1 ms ticks, wrapping) for Send's choice
// between writing at once and queueing for the loop.
// (A tick equal to the last one after a wrap only queues one frame.)
func writeTick() uint16 { return uint16(time.Since(tickBase) >> 20) }

var tickBase = time.Now() // monotonic

// dirtyLocked makes sure the loop will write the connection's queue: it is
// either already on the dirty list or waiting for EPOLLOUT, or is put on
// the dirty list now. Slot lock must be held.
func (p *epollPoller) dirtyLocked(sl *slot, fd int, f uint32) {
	if f&(fDirty|fArmed) != 0 {
		return
	}
	sl.flags.Store(f | fDirty)
	p.loopOf(fd).markDirty(fd, sl.gen)
}

// requestCloseLocked marks the connection for closing and asks its loop to
// do it. Slot lock must be held.
func (p *epollPoller) requestCloseLocked(sl *slot, fd int, reason uint32) {
	f := sl.flags.Load()
	if f&fCloseReq == 0 {
		sl.cerr = reason
		sl.flags.Store(f | fCloseReq)
	}
	p.loopOf(fd).post(op{kind: opClose, fd: int32(fd), gen: sl.gen})
}

// armLocked registers (on) or unregisters write readiness. Slot lock must
// be held (and the caller is the connection's loop).
func (p *epollPoller) armLocked(sl *slot, fd int, on bool) error {
	ev := unix.EpollEvent{Events: evRead, Fd: int32(fd), Pad: int32(sl.gen)}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(p.loopOf(fd).epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return err
	}
	f := sl.flags.Load()
	if on {
		f |= fArmed
	} else {
		f &^= fArmed
	}
	sl.flags.Store(f)
	return nil
}

// Shutdown implements Conn.
func (c econn) Shutdown(final []byte) {
	p, sl, rf := c.lock()
	if p == nil {
		return
	}
	defer sl.mu.Unlock()
	fd := c.fd()
	f := sl.flags.Load()
	if !live(f) {
		return
	}
	f |= fShutdown
	sl.flags.Store(f)
	if len(final) > 0 {
		rf.q = rf.q.push(final)
	}
	if rf.q == nil {
		p.requestCloseLocked(sl, fd, reasonNone)
		return
	}
	p.dirtyLocked(sl, fd, f)
	p.loopOf(fd).post(op{kind: opShutdown, fd: int32(fd), gen: sl.gen})
}

// Close implements Conn. The connection's loop closes the socket and calls
// OnClose(nil); anything unsent is dropped.
func (c econn) Close() error {
	p, sl, _ := c.lock()
	if p == nil {
		return ErrClosed
	}
	defer sl.mu.Unlock()
	f := sl.flags.Load()
	if f&fOpen == 0 {
		return ErrClosed
	}
	if f&fCloseReq == 0 {
		p.requestCloseLocked(sl, c.fd(), reasonNone)
	}
	return nil
}

// QueuedBytes implements Conn.
func (c econn) QueuedBytes() int {
	p, sl, rf := c.lock()
	if p == nil {
		return 0
	}
	defer sl.mu.Unlock()
	if sl.flags.Load()&fOpen == 0 || rf.q == nil {
		return 0
	}
	return rf.q.n
}

// RemoteAddr implements Conn. It stays valid after close until the fd is
// reused by another connection; a stale handle gets an empty TCPAddr.
func (c econn) RemoteAddr() net.Addr {
	p, sl, _ := c.lock()
	if p == nil {
		return &net.TCPAddr{}
	}
	defer sl.mu.Unlock()
	return sl.addr()
}

// Close reasons stored in slot.cerr: 0 is an orderly close, values below
// reasonTimeout are errnos.
const (
	reasonNone    uint32 = 0
	reasonTimeout uint32 = 1 << 30
	reasonAddFail uint32 = 1<<30 + 1
)

// errShutdownTimeout is passed to OnClose when Shutdown gave up on unsent
// bytes after Config.ShutdownTimeout.
var errShutdownTimeout = errors.New("poller: shutdown timed out with bytes unsent")

func errnoReason(err error) uint32 {
	var en syscall.Errno
	if errors.As(err, &en) && en != 0 {
		return uint32(en)
	}
	return uint32(unix.EIO)
}

func reasonErr(r uint32) error {
	switch {
	case r == reasonNone:
		return nil
	case r == reasonTimeout:
		return errShutdownTimeout
	case r == reasonAddFail:
		return errors.New("poller: epoll registration failed")
	default:
		return fmt.Errorf("poller: connection: %w", syscall.Errno(r))
	}
}

// rawWrite writes b with one system call, retrying EINTR.
func rawWrite(fd int, b []byte) (int, error) {
	return rawIO(unix.SYS_WRITE, fd, unsafe.Pointer(&b[0]), len(b))
}

// writev writes iov with one system call, retrying EINTR.
func writev(fd int, iov []unix.Iovec) (int, error) {
	return rawIO(unix.SYS_WRITEV, fd, unsafe.Pointer(&iov[0]), len(iov))
}

// rawIO makes the read or write system call trap(fd, p, n) on a
// non-blocking socket, retrying EINTR. RawSyscall: the call never blocks;
// at ~10 µs per loopback write, Syscall's entersyscall/exitsyscall let
// sysmon take the P mid-write and cost a slow reacquire on return
// (netpoll's sendmsg is a RawSyscall too).
func rawIO(trap uintptr, fd int, p unsafe.Pointer, n int) (int, error) {
	for {
		r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(n))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// outQueue holds references to the unsent frames of one connection (never
// copies). It exists only while bytes are unsent; it is pooled.
type outQueue struct {
	frames [][]byte
	head   int // first unsent frame
	off    int // bytes of frames[head] already written
	n      int // unsent bytes
}

var outQueuePool = sync.Pool{New: func() any { return &outQueue{frames: make([][]byte, 0, 8)} }}

// push appends b, allocating the queue if q is nil.
func (q *outQueue) push(b []byte) *outQueue {
	if q == nil {
		q = outQueuePool.Get().(*outQueue)
	}
	if q.head > 0 && q.head == len(q.frames) {
		q.frames, q.head = q.frames[:0], 0
	}
	q.frames = append(q.frames, b)
	q.n += len(b)
	return q
}

// fill points iov at up to len(iov) unsent frames; it returns the count.
func (q *outQueue) fill(iov []unix.Iovec) int {
	k := 0
	for i := q.head; i < len(q.frames) && k < len(iov); i++ {
		b := q.frames[i]
		if i == q.head {
			b = b[q.off:]
		}
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
	}
	return k
}

// consume drops n written bytes from the front.
func (q *outQueue) consume(n int) {
	q.n -= n
	for n > 0 {
		rem := len(q.frames[q.head]) - q.off
		if n < rem {
			q.off += n
			return
		}
		n -= rem
		q.frames[q.head] = nil
		q.head++
		q.off = 0
	}
	if q.head == len(q.frames) {
		q.frames, q.head = q.frames[:0], 0
	} else if q.head >= 32 && q.head*2 >= len(q.frames) {
		k := copy(q.frames, q.frames[q.head:])
		clear(q.frames[k:])
		q.frames, q.head = q.frames[:k], 0
	}
}

// release returns q to the pool, dropping its frame references.
func (q *outQueue) release() {
	clear(q.frames)
	if cap(q.frames) > 1024 {
		q.frames = make([][]byte, 0, 8)
	}
	q.frames, q.head, q.off, q.n = q.frames[:0], 0, 0, 0
	outQueuePool.Put(q)
}
