package poller

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"
)

// npConn is one netpoll connection: Conn for the rest of edgeplane, and
// the context.Context netpoll hands back to our callbacks.
//
// Its outbound queue holds references to the callers' frames; a writer
// goroutine from the Poller's pool moves the whole queue into netpoll's
// output buffer with WriteDirect (no copy, no per-connection output node),
// flushing every npFlushFrames frames (one writev each).
//
// Per connection this struct is 112 bytes on amd64 (see
// TestNetpollConnSize), plus its 8 B slot in npFDs; the queue's backing
// array (kept only up to npKeepQueueCap entries) comes on top once the
// connection was written to. The rare close error lives in npPoller.errs.
type npConn struct {
	nc    netpoll.Connection
	p     *npPoller
	sess  Session
	raddr net.Addr // netpoll's NewFDConnection knows no addresses

	mu     sync.Mutex
	fd     int32
	state  uint32   // fl* bits
	queue  [][]byte // frames not yet handed to netpoll; under mu
	queued int32    // bytes queued and not yet written (incl. in flight); Config caps MaxQueueBytes

	next *npConn // writerPool run queue
}

const (
	flScheduled uint32 = 1 << iota // in the writer run queue
	flWriting                      // a writer is between WriteDirect and the end of Flush
	flShutdown                     // Shutdown called: no more Sends, close once drained
	flClosing                      // Close called or write failed: socket shut down
	flGone                         // close callback ran: the descriptor may be reused
)

// npFlushFrames is the most frames that go into one Flush: netpoll's writev
// takes at most 32 iovecs (barriercap). A bigger batch makes Flush hand the
// rest to netpoll's poller (EPOLLOUT, 32 iovecs per event) and wait for it,
// which measured ~10x slower for small frames than flushing every 32.
// npFlushBytes ends a batch early so that one writev usually fits the
// socket buffer and Flush does not have to wait for the poller.
const (
	npFlushFrames = 32
	npFlushBytes  = 64 << 10
)

// npKeepQueueCap is the largest queue backing array kept after a drain, so
// a broadcast to a connection that was written to before allocates nothing.
const npKeepQueueCap = 4

// Send implements Conn.
func (c *npConn) Send(frame []byte) error {
	c.mu.Lock()
	if c.state&(flShutdown|flClosing|flGone) != 0 {
		c.mu.Unlock()
		return ErrClosed
	}
	if int(c.queued)+len(frame) > c.p.cfg.MaxQueueBytes {
		c.mu.Unlock()
		return ErrQueueFull
	}
	if len(frame) == 0 {
		c.mu.Unlock()
		return nil
	}
	sched := c.enqueueLocked(frame)
	c.mu.Unlock()
	if sched {
		c.p.wp.push(c)
	}
	return nil
}

// enqueueLocked appends frame and reports whether c must be pushed to the
// run queue. c.mu is held.
func (c *npConn) enqueueLocked(frame []byte) bool {
	c.queue = append(c.queue, frame)
	c.queued += int32(len(frame))
	if c.state&(flScheduled|flWriting) != 0 {
		return false
	}
	c.state |= flScheduled
	return true
}

// Shutdown implements Conn.
func (c *npConn) Shutdown(final []byte) {
	c.mu.Lock()
	if c.state&(flShutdown|flClosing|flGone) != 0 {
		c.mu.Unlock()
		return
	}
	c.state |= flShutdown
	if len(final) == 0 {
		final = nil
	}
	// The writer closes the connection when it finds the queue drained; a
	// final frame or an empty queue both need one pass of it.
	sched := c.state&(flScheduled|flWriting) == 0
	if final != nil {
		sched = c.enqueueLocked(final)
	} else if sched {
		c.state |= flScheduled
	}
	// Under mu: onGone, which stops the timer, cannot run before it exists.
	c.p.startShutdownTimer(c)
	c.mu.Unlock()
	if sched {
		c.p.wp.push(c)
	}
}

// Close implements Conn. It shuts the socket down at once; netpoll's
// poller sees the hang-up and runs the close callback (and OnClose) on its
// own goroutine, never inside Close: a caller may hold locks OnClose takes.
func (c *npConn) Close() error {
	c.closeNow(nil)
	return nil
}

// closeNow drops the queue and shuts the socket down (err, if not nil, is
// what OnClose will get). The shutdown happens under mu: the close
// callback takes mu before netpoll closes the descriptor, so the number
// cannot have been reused.
func (c *npConn) closeNow(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state&(flClosing|flGone) != 0 {
		return
	}
	c.state |= flClosing
	if err != nil {
		c.p.setErr(c, err)
	}
	c.dropQueueLocked()
	_ = unix.Shutdown(int(c.fd), unix.SHUT_RDWR)
}

func (c *npConn) dropQueueLocked() {
	clear(c.queue)
	if cap(c.queue) > npKeepQueueCap {
		c.queue = nil
	}
	c.queue = c.queue[:0]
	c.queued = 0
}

// QueuedBytes implements Conn.
func (c *npConn) QueuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.queued)
}

// RemoteAddr implements Conn.
func (c *npConn) RemoteAddr() net.Addr { return c.raddr }

// npOnGone is the close callback of every connection: a plain function,
// where a method value would cost 16 B per connection. netpoll runs it
// exactly once, after any running npOnRequest returned and never
// before one (its per-connection processing lock), and before its own
// callback that closes the descriptor and frees the buffers: the
// descriptor number is still ours, so npFDs finds the right npConn.
func npOnGone(nc netpoll.Connection) error {
	if c := npFDs.get(nc.(interface{ Fd() int }).Fd()); c != nil && c.nc == nc {
		c.onGone()
	}
	return nil
}

// onGone runs OnClose last, once.
func (c *npConn) onGone() {
	c.mu.Lock()
	if c.state&flGone != 0 {
		c.mu.Unlock()
		return
	}
	c.state |= flGone
	// netpoll does not lock its output buffer against WriteDirect: wait
	// for a writer using this connection to leave it before netpoll frees
	// the buffer. netpoll woke a Flush in progress before calling us, and
	// a Flush that starts now fails at once (connection inactive).
	for c.state&flWriting != 0 {
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
	c.dropQueueLocked()
	c.queue = nil
	s := c.sess
	shut := c.state&flShutdown != 0
	c.mu.Unlock()
	if shut {
		c.p.stopShutdownTimer(c)
	}
	err := c.p.remove(c)
	c.p.adm.Closed()
	if s != nil {
		s.OnClose(err)
	}
}

// drain runs on a writer goroutine: it hands c's whole queue to netpoll
// and flushes once.
func (c *npConn) drain(ws *npWriterSlot) {
	c.mu.Lock()
	c.state &^= flScheduled
	if c.state&(flClosing|flGone) != 0 {
		c.mu.Unlock()
		return
	}
	if len(c.queue) == 0 {
		fin := c.state&flShutdown != 0
		c.mu.Unlock()
		if fin {
			c.closeNow(nil)
		}
		return
	}
	c.state |= flWriting
	q := c.queue
	c.queue = nil
	c.mu.Unlock()

	w := c.nc.Writer()
	n := 0
	var err error
	for i := 0; i < len(q) && err == nil; {
		j, size := i, 0
		for ; j < len(q) && j-i < npFlushFrames && size < npFlushBytes; j++ {
			if err = w.WriteDirect(q[j], 0); err != nil {
				break
			}
			size += len(q[j])
		}
		n += size
		if err == nil {
			ws.begin(c)
			err = w.Flush()
			ws.end()
		}
		i = j
	}

	c.mu.Lock()
	c.state &^= flWriting
	clear(q)
	if c.state&(flClosing|flGone) != 0 {
		c.mu.Unlock()
		return
	}
	c.queued -= int32(n)
	if len(c.queue) == 0 && cap(q) <= npKeepQueueCap {
		c.queue = q[:0]
	}
	again := err == nil && (len(c.queue) > 0 || c.state&flShutdown != 0)
	if again {
		c.state |= flScheduled
	}
	c.mu.Unlock()
	if err != nil {
		c.closeNow(fmt.Errorf("poller: netpoll write to %v: %w", c.RemoteAddr(), err))
		return
	}
	if again {
		c.p.wp.push(c) // at the tail: a busy connection does not hog a writer
	}
}

// writerPool is a fixed set of goroutines draining connections' queues
// from a FIFO run queue (intrusive list, no allocation per Send). A
// connection is in the run queue at most once.
//
// Starvation trade-off: netpoll's Flush blocks while the client's socket
// buffer is full, so a writer is held by a stalled client until it reads
// or netpollWriteTimeout passes (the connection is then closed as a slow
// client). With W writers, W clients stalled at once delay every other
// connection's writes by up to netpollWriteTimeout. W is a fixed
// max(16, 4×GOMAXPROCS) (goroutines are cheap next to 19k connections);
// a shorter timeout would disconnect clients on brief stalls. In practice
// a stalled client first fills its queue (MaxQueueBytes), Send returns
// ErrQueueFull, conn/ closes it, and Close frees the writer at once.
type writerPool struct {
	mu         sync.Mutex
	cond       sync.Cond
	head, tail *npConn
	stopped    bool
	wg         sync.WaitGroup

	// The write watchdog: netpoll connections made with NewFDConnection
	// have no write timeout (netpoll's would format their missing remote
	// address), so a writer records the flush it is in, and the watchdog
	// closes a connection whose Flush has been blocked for
	// netpollWriteTimeout; that wakes the Flush.
	slots   []npWriterSlot
	tick    atomic.Int64 // watchdog ticks
	quit    chan struct{}
	timeout time.Duration // netpollWriteTimeout; shorter in tests
}

// npWriterSlot is what one writer is flushing, and since which tick.
type npWriterSlot struct {
	wp    *writerPool
	c     atomic.Pointer[npConn]
	since atomic.Int64
}

func (ws *npWriterSlot) begin(c *npConn) {
	ws.since.Store(ws.wp.tick.Load())
	ws.c.Store(c)
}

func (ws *npWriterSlot) end() { ws.c.Store(nil) }

func (wp *writerPool) init() { wp.cond.L = &wp.mu }

func (wp *writerPool) start(n int) {
	wp.slots = make([]npWriterSlot, n)
	wp.quit = make(chan struct{})
	wp.wg.Add(n + 1)
	for i := range wp.slots {
		wp.slots[i].wp = wp
		go wp.run(&wp.slots[i])
	}
	timeout := wp.timeout
	if timeout <= 0 {
		timeout = netpollWriteTimeout
	}
	go wp.watch(wp.quit, timeout, min(time.Second, timeout/4))
}

// watch closes connections whose Flush is blocked for timeout (to within
// one tick).
func (wp *writerPool) watch(quit <-chan struct{}, timeout, tick time.Duration) {
	defer wp.wg.Done()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	limit := int64((timeout + tick - 1) / tick)
	for {
		select {
		case <-quit:
			return
		case <-tk.C:
		}
		now := wp.tick.Add(1)
		for i := range wp.slots {
			ws := &wp.slots[i]
			if c := ws.c.Load(); c != nil && now-ws.since.Load() >= limit && ws.c.Load() == c {
				c.closeNow(fmt.Errorf("poller: netpoll write to %v: %w", c.RemoteAddr(),
					netpoll.Exception(netpoll.ErrWriteTimeout, fmt.Sprintf("(no progress for %v: slow client)", timeout))))
			}
		}
	}
}

func (wp *writerPool) push(c *npConn) {
	wp.mu.Lock()
	if wp.stopped {
		wp.mu.Unlock()
		return
	}
	if wp.tail == nil {
		wp.head = c
	} else {
		wp.tail.next = c
	}
	wp.tail = c
	wp.mu.Unlock()
	wp.cond.Signal()
}

func (wp *writerPool) run(ws *npWriterSlot) {
	defer wp.wg.Done()
	for {
		wp.mu.Lock()
		for wp.head == nil && !wp.stopped {
			wp.cond.Wait()
		}
		if wp.stopped {
			wp.mu.Unlock()
			return
		}
		c := wp.head
		wp.head = c.next
		if wp.head == nil {
			wp.tail = nil
		}
		c.next = nil
		wp.mu.Unlock()
		c.drain(ws)
	}
}

// stop ends the writers (their current drain finishes first) and drops
// the run queue.
func (wp *writerPool) stop() {
	wp.mu.Lock()
	wp.stopped = true
	for c := wp.head; c != nil; {
		n := c.next
		c.next = nil
		c = n
	}
	wp.head, wp.tail = nil, nil
	quit := wp.quit
	wp.quit = nil
	wp.mu.Unlock()
	if quit != nil {
		close(quit)
	}
	wp.cond.Broadcast()
	wp.wg.Wait()
}
