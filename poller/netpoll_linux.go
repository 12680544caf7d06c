package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"golang.org/x/sys/unix"
)

// The "netpoll" backend: github.com/cloudwego/netpoll configured for
// density, fed by the shared acceptor (accept_linux.go), with our own
// bounded pool of writer goroutines.
//
// Why not netpoll's EventLoop.Serve: its server keeps every connection in
// a sync.Map and adds a close callback of its own (~140 B per connection,
// 3.5% of the idle-connection budget), and its accept path needed working
// around anyway (on EMFILE it detached the listener and retried in a
// goroutine that never exited if the listener was closed meanwhile; other
// persistent accept errors made it spin). The acceptor hands each admitted
// descriptor to npPoller.open, which makes it a netpoll connection with
// netpoll.NewFDConnection: a rejected connection costs accept, write and
// close, and netpoll allocates nothing for it.
//
// Goroutines: netpoll's poller goroutine(s) (global), netpoll's gopool
// workers (only while callbacks run), one accept goroutine per Poller
// (parked in the runtime poller), netpollWriters writer goroutines and one
// write watchdog per Poller. None per connection.

func init() {
	// 256 B input nodes instead of netpoll's 4 KiB/8 KiB defaults: measured
	// best for idle density here. Both must be set together, before any
	// connection exists (netpoll reads them when a connection is created).
	netpoll.LinkBufferCap = 256
	if err := netpoll.Configure(netpoll.Config{BufferSize: 256, LoggerOutput: netpollLog{}}); err != nil {
		panic(fmt.Sprintf("poller: configure netpoll: %v", err))
	}
	Register("netpoll", newNetpoll)
}

const (
	// netpollWriteTimeout bounds one Flush to a client whose socket buffer
	// is full. A writer goroutine is held that long at most; the connection
	// is then closed as a slow client. See writerPool for the trade-off.
	netpollWriteTimeout = 5 * time.Second
	// netpollCloseWait bounds how long Close waits for the close callbacks
	// of the connections it shut down.
	netpollCloseWait = 5 * time.Second
)

// netpollLog sends netpoll's log lines to slog: the leftover-read errors
// it reports for every reset connection at debug level, the rest as
// warnings.
type netpollLog struct{}

func (netpollLog) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	if _, after, ok := strings.Cut(msg, "NETPOLL: "); ok {
		msg = after // drop netpoll's own timestamp
	}
	if strings.HasPrefix(msg, "readall(") {
		slog.Debug("netpoll", "msg", msg)
	} else {
		slog.Warn("netpoll", "msg", msg)
	}
	return len(b), nil
}

// netpollWriters is the size of each Poller's writer pool.
func netpollWriters() int { return max(16, 4*runtime.GOMAXPROCS(0)) }

// npPoller implements Poller on netpoll.
//
// Lock order: npConn.mu before npPoller.mu; writerPool.mu is never held
// together with either.
type npPoller struct {
	cfg Config
	h   Handler
	adm *Admission
	acc acceptor
	wp  writerPool

	mu      sync.Mutex
	errs    map[*npConn]error // why we closed a connection, until its OnClose
	closing bool
	closed  bool

	// shutTimers holds the deadline timer of each connection in Shutdown,
	// stopped by its close callback: a pending timer would keep a closed
	// connection (and netpoll's state for it) alive until it fires, and a
	// burst of short-lived connections (negotiates) would then die all at
	// once seconds later, leaving the heap riddled with holes.
	shutMu     sync.Mutex
	shutTimers map[*npConn]*time.Timer
}

func newNetpoll(cfg Config, h Handler) (Poller, error) {
	if h == nil {
		return nil, fmt.Errorf("poller: netpoll: nil Handler")
	}
	if cfg.MaxQueueBytes > math.MaxInt32 {
		return nil, fmt.Errorf("poller: netpoll: MaxQueueBytes %d is over the limit of %d", cfg.MaxQueueBytes, math.MaxInt32)
	}
	p := &npPoller{cfg: cfg, h: h, adm: NewAdmission(cfg),
		errs: map[*npConn]error{}, shutTimers: map[*npConn]*time.Timer{}}
	p.acc.init("netpoll", cfg, p.adm, p.open)
	p.wp.init()
	return p, nil
}

// Serve implements Poller: the acceptor takes over ln and the writers
// start.
func (p *npPoller) Serve(ln net.Listener) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("poller: netpoll: Serve: %w", ErrClosed)
	}
	if err := p.acc.serve(ln); err != nil {
		return err
	}
	p.wp.start(netpollWriters())
	return nil
}

// Addr implements Poller.
func (p *npPoller) Addr() net.Addr { return p.acc.listenAddr() }

// Conns implements Poller.
func (p *npPoller) Conns() int { return p.adm.Conns() }

// StopAccepting implements Poller: the listening socket stops listening
// (new connects are refused); open connections stay.
func (p *npPoller) StopAccepting() error { return p.acc.stop() }

// Close implements Poller: stop accepting, close every connection, wait
// (bounded) for their OnClose, stop the writers.
func (p *npPoller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed, p.closing = true, true
	p.mu.Unlock()

	err := p.acc.close() // no connection is being opened any more
	for _, c := range npFDs.of(p) {
		c.closeNow(nil)
	}
	deadline := time.Now().Add(netpollCloseWait)
	for p.openConns() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	p.wp.stop()
	if n := p.openConns(); n > 0 {
		err = errors.Join(err, fmt.Errorf("poller: netpoll: %d connections still open after %v", n, netpollCloseWait))
	}
	return err
}

func (p *npPoller) openConns() int { return len(npFDs.of(p)) }

// open is the netpoll backend's opener: it makes an admitted descriptor
// a netpoll connection, on the accept goroutine. netpoll registers the
// descriptor for reads at once but holds what arrives until SetOnRequest,
// which comes after OnOpen: no data reaches a session before OnOpen
// returned.
func (p *npPoller) open(fd int, sa unix.Sockaddr) RejectReason {
	raddr := sockaddrToAddr(sa)
	nc, err := netpoll.NewFDConnection(fd)
	if err != nil {
		// netpoll closed the descriptor (its registration failed).
		p.adm.Closed()
		slog.Warn("poller: netpoll: new connection", "remote", raddr, "err", err)
		return ""
	}
	c := &npConn{nc: nc, p: p, fd: int32(fd), raddr: raddr}
	npFDs.put(fd, c)
	nc.AddCloseCallback(npOnGone)
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing {
		c.closeNow(nil)
	}
	s := p.h.OnOpen(c)
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	nc.SetOnRequest(npOnRequest)
	// A hang-up seen before SetOnRequest (the peer left, or OnOpen closed
	// the connection) leaves netpoll waiting for us to close it: its close
	// callbacks, and so OnClose, run on Close then. After SetOnRequest its
	// poller runs them itself, and a second Close is a no-op.
	if !nc.IsActive() {
		nc.Close()
	}
	return ""
}

// npOnRequest consumes everything readable: netpoll calls it again and
// again while unread input remains, so nothing may be left behind. It
// runs on a netpoll worker, serialized with the close callback by
// netpoll's per-connection processing lock, so the descriptor number is
// still this connection's.
func npOnRequest(_ context.Context, nc netpoll.Connection) error {
	r := nc.Reader()
	c := npFDs.get(nc.(interface{ Fd() int }).Fd())
	if n := r.Len(); n > 0 && c != nil && c.nc == nc {
		data, err := r.Next(n)
		if err == nil {
			c.mu.Lock()
			s, live := c.sess, c.state&(flClosing|flGone) == 0
			c.mu.Unlock()
			if s != nil && live {
				s.OnData(data)
			}
		}
	} else if n > 0 {
		_ = r.Skip(n)
	}
	return r.Release()
}

// startShutdownTimer closes c if it is still open after ShutdownTimeout.
func (p *npPoller) startShutdownTimer(c *npConn) {
	p.shutMu.Lock()
	defer p.shutMu.Unlock()
	// Created under shutMu: the callback's stopShutdownTimer waits for
	// the map entry to exist.
	p.shutTimers[c] = time.AfterFunc(p.cfg.ShutdownTimeout, func() {
		p.stopShutdownTimer(c)
		c.closeNow(nil)
	})
}

// stopShutdownTimer stops and forgets c's Shutdown timer, if any.
func (p *npPoller) stopShutdownTimer(c *npConn) {
	p.shutMu.Lock()
	if t, ok := p.shutTimers[c]; ok {
		t.Stop()
		delete(p.shutTimers, c)
	}
	p.shutMu.Unlock()
}

// shutdownTimers is the number of pending Shutdown timers (for tests).
func (p *npPoller) shutdownTimers() int {
	p.shutMu.Lock()
	defer p.shutMu.Unlock()
	return len(p.shutTimers)
}

// setErr records why c was closed, for its OnClose. c.mu is held.
func (p *npPoller) setErr(c *npConn, err error) {
	p.mu.Lock()
	p.errs[c] = err
	p.mu.Unlock()
}

// remove drops c from the registry and returns the error it was closed
// with, if any.
func (p *npPoller) remove(c *npConn) error {
	npFDs.remove(int(c.fd), c)
	p.mu.Lock()
	err, ok := p.errs[c]
	if ok {
		delete(p.errs, c)
	}
	p.mu.Unlock()
	return err
}

// npFDs is the registry of open netpoll connections of the process, by
// descriptor number: 8 B per descriptor instead of list links (16 B) and
// a close-callback method value (16 B) in every npConn. A connection is
// put in before netpoll can run its callbacks and removed by its close
// callback, which runs before netpoll closes the descriptor: a number is
// never reused while its slot is taken.
//
// Lookups (every read event, every close) take no lock: the slots are
// atomic and the slice is replaced, never resized in place, when it
// grows. A lookup that raced a growth may read the old slice; the slot it
// wants was filled before netpoll could call back for that descriptor,
// and a stale slot is caught by the callers' nc check.
var npFDs fdTable

type fdTable struct {
	mu    sync.Mutex // serializes put and remove
	slots atomic.Pointer[[]atomic.Pointer[npConn]]
	n     int // non-nil entries; under mu
}

func (t *fdTable) put(fd int, c *npConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cur []atomic.Pointer[npConn]
	if p := t.slots.Load(); p != nil {
		cur = *p
	}
	if fd >= len(cur) {
		// By a quarter, as append grows large slices: descriptors are
		// dense, and doubling would leave up to half the table unused.
		grown := make([]atomic.Pointer[npConn], max(len(cur)+len(cur)/4, fd+1, 1024))
		for i := range cur {
			grown[i].Store(cur[i].Load())
		}
		t.slots.Store(&grown)
		cur = grown
	}
	if cur[fd].Swap(c) == nil {
		t.n++
	}
}

func (t *fdTable) get(fd int) *npConn {
	p := t.slots.Load()
	if p == nil || fd < 0 || fd >= len(*p) {
		return nil
	}
	return (*p)[fd].Load()
}

// remove clears fd's slot if it still holds c, and gives the table's
// memory back once it is empty.
func (t *fdTable) remove(fd int, c *npConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.slots.Load()
	if p == nil || fd < 0 || fd >= len(*p) || !(*p)[fd].CompareAndSwap(c, nil) {
		return
	}
	t.n--
	if t.n == 0 && len(*p) > 1024 {
		t.slots.Store(nil)
	}
}

// of returns p's open connections.
func (t *fdTable) of(p *npPoller) []*npConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*npConn
	if sp := t.slots.Load(); sp != nil {
		for i := range *sp {
			if c := (*sp)[i].Load(); c != nil && c.p == p {
				out = append(out, c)
			}
		}
	}
	return out
}
