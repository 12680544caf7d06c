package conn

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/wsframe"
	"github.com/edgeplane/edgeplane/poller"
)

// Connection states.
const (
	stHTTP      uint32 = iota // reading an HTTP request
	stHandshake               // WebSocket open, waiting for the SignalR handshake
	stOpen                    // SignalR connection established
	stClosed                  // closing or closed; input is ignored
	stDetached                // stateful reconnect: socket gone, waiting for the client to come back (resume.go)
	stCarrier                 // a resumed socket's session: its input goes to the connection it resumed (resume.go)
	stServer                  // an app server's connection, handed to the Service (service.go)
)

// Conn is one client connection: a poller.Session (input) and a
// fanout.Member (output). Its state is kept small: nothing but a few
// words and two nil slices while idle.
//
// OnData and OnClose are serial (poller contract); tick runs on the wheel
// goroutine and Deliver on any goroutine, so the fields they share are
// atomic.
type Conn struct {
	srv   *Server
	pc    poller.Conn
	hub   *fanout.Hub  // set at upgrade
	entry fanout.Entry // registry entry, embedded; id and user set at upgrade
	bufs  *connBufs    // partial input, nil while idle

	lastRead  atomic.Int32 // wheel seconds of the last complete record (touchRead)
	lastWrite atomic.Int32
	state     atomic.Uint32
	opened    int32
	rate      rateWindow    // inbound records per second (OnData only)
	flags     atomic.Uint32 // fl* bits, and the close cause (flCauseShift)
	tokenExp  int32         // negotiated token's expiry, seconds after srv.epoch (0: none)
	idBuf     [22]byte      // the connection id's characters; entry's id points here
	wslot     uint8         // timing wheel slot (in idBuf's padding)
	rslot     uint8         // service mode: the Service's tag of a relayed connection (in idBuf's padding; RelayTag)
	wl        wheelLinks[Conn]
	rs        atomic.Pointer[resume] // stateful reconnect's sequence state, nil until needed (resume.go)
}

// Conn.flags bits. One word instead of three flags and a cause field:
// 12 bytes per connection.
const (
	flGone       uint32 = 1 << iota // finished: OnClose ran, or a detached connection ended (finish)
	flRegistered                    // inserted in the hub (upstream saw "connected")
	flIPCounted                     // counted in the server's per-IP table
	flClaiming                      // upgrade waiting for its answer: a fleet-wide token claim (token.go) or a resume (resume.go)
	flStateful                      // stateful reconnect: trackable messages are numbered, kept and replayed (resume.go)
	flAckDue                        // stateful reconnect: a trackable message arrived since the last Ack

	flCauseShift = 8 // bits 8-15: why it was closed, cause.idx
	flCauseMask  = 0xff << flCauseShift
	// bits 16-17: the hub protocol (flProtoShift, protocol.go)
)

// Service-mode flags (service.go), above the hub protocol's bits.
const (
	flRelay     uint32 = 1 << (18 + iota) // came on /client/: relayed to an app server
	flRelayOpen                           // the Service accepted the relay and must hear of its end
	flRelayBin                            // the relayed client speaks a binary hub protocol
)

func (c *Conn) has(f uint32) bool { return c.flags.Load()&f != 0 }

// cause is the close cause's idx (0: none).
func (c *Conn) cause() uint32 { return c.flags.Load() & flCauseMask >> flCauseShift }

func (c *Conn) setCause(idx uint32) {
	for {
		old := c.flags.Load()
		if c.flags.CompareAndSwap(old, old&^flCauseMask|idx<<flCauseShift&flCauseMask) {
			return
		}
	}
}

func (c *Conn) links() *wheelLinks[Conn] { return &c.wl }
func (c *Conn) slot() *uint8             { return &c.wslot }

// connBufs holds the rare partial input of a connection; it exists only
// while a frame, request or fragmented message is incomplete, or between
// the upgrade and the SignalR handshake while the connect request's
// context waits for the connected event.
type connBufs struct {
	pending []byte // partial frame or request (pooled)
	frag    []byte // fragmented message being assembled (pooled)
	fragOp  wsframe.OpCode
	connect *backplane.ConnectContext // until register sends it upstream
	link    *Conn                     // HTTP transports: the connection whose poll or SSE stream this socket holds (httptransport.go)
}

var connBufsPool = sync.Pool{New: func() any { return new(connBufs) }}

func (c *Conn) buffers() *connBufs {
	if c.bufs == nil {
		c.bufs = connBufsPool.Get().(*connBufs)
	}
	return c.bufs
}

// closingSet holds the connections that left their hub on a close the
// node decided (slow client, drain, time-out...) until the poller has
// closed them: their queues are still held (up to the shutdown timeout
// for a stalled client) and edgeplane_queue_bytes counts them.
type closingSet struct {
	mu    sync.Mutex
	conns map[*Conn]struct{}
}

// add records c, unless it is finished already (finish removes c after setting
// flGone, under the same lock, so c is never left behind).
func (s *closingSet) add(c *Conn) {
	s.mu.Lock()
	if !c.has(flGone) {
		if s.conns == nil {
			s.conns = make(map[*Conn]struct{})
		}
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
}

func (s *closingSet) remove(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// queuedBytes sums the queues of the closing connections.
func (s *closingSet) queuedBytes() int {
	s.mu.Lock()
	all := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range all {
		n += c.queued()
	}
	return n
}

// releaseBufs returns the buffers once nothing is pending.
func (c *Conn) releaseBufs() {
	b := c.bufs
	if b == nil || b.pending != nil || b.frag != nil || b.connect != nil || b.link != nil {
		return
	}
	c.bufs = nil
	connBufsPool.Put(b)
}

// OnData implements poller.Session.
func (c *Conn) OnData(data []byte) {
	switch c.state.Load() {
	case stClosed:
		return
	case stCarrier:
		c.forward(data)
		return
	case stServer:
		c.srv.foreignSession(c).OnData(data)
		return
	}
	buf := data
	if c.bufs != nil && len(c.bufs.pending) > 0 {
		c.bufs.pending = appendPooled(c.bufs.pending, data)
		buf = c.bufs.pending
	}
	n, err := c.process(buf)
	if err != nil {
		c.fail(err)
		c.releasePending()
		return
	}
	rest := buf[n:]
	switch {
	case len(rest) == 0 || c.state.Load() == stClosed:
		c.releasePending()
	case c.bufs != nil && len(c.bufs.pending) > 0:
		c.bufs.pending = c.bufs.pending[:copy(c.bufs.pending, rest)]
	default:
		b := c.buffers()
		b.pending = append(getBuf(len(rest)), rest...)
	}
}

func (c *Conn) releasePending() {
	if c.bufs != nil && c.bufs.pending != nil {
		putBuf(c.bufs.pending)
		c.bufs.pending = nil
	}
	c.releaseBufs()
}

// process consumes as much of buf as forms complete units and returns how
// many bytes it consumed.
func (c *Conn) process(buf []byte) (int, error) {
	off := 0
	for off < len(buf) {
		switch c.state.Load() {
		case stHTTP, stKeep:
			n, err := c.handleHTTP(buf[off:])
			if err != nil || n == 0 {
				return off + n, err
			}
			off += n
		case stHandshake, stOpen:
			n, err := c.handleFrame(buf[off:])
			if err != nil || n == 0 {
				return off + n, err
			}
			off += n
		case stCarrier:
			c.forward(buf[off:]) // bytes that followed the upgrade request
			return len(buf), nil
		case stServer: // bytes after the upgrade request, in the same read
			c.srv.foreignSession(c).OnData(buf[off:])
			return len(buf), nil
		default:
			return len(buf), nil
		}
	}
	return off, nil
}

// fail closes the connection for an input error, with the close code the
// error carries.
func (c *Conn) fail(err error) { c.closeWith(causeOf(err)) }

// closeWith closes the connection: a SignalR Close message (once the
// SignalR connection is open) and a WebSocket close frame are queued after
// whatever is already queued, then the socket is closed.
func (c *Conn) closeWith(k *cause) {
	var final []byte
	switch c.state.Load() {
	case stOpen:
		final = append(final, k.closeFrame(c.proto())...)
		fallthrough
	case stHandshake:
		final = wsframe.AppendCloseFrame(final, k.code, k.text)
	}
	c.shutdown(k, final) // stDetached: no socket to tell
}

// shutdown marks the connection closed (once), counts the cause and
// hands the final bytes to the poller.
func (c *Conn) shutdown(k *cause, final []byte) {
	var st uint32
	for {
		st = c.state.Load()
		if st == stClosed {
			return
		}
		if c.state.CompareAndSwap(st, stClosed) {
			break
		}
	}
	c.srv.M.closed[k.idx].Inc()
	c.setCause(k.idx)
	if st == stOpen || st == stDetached {
		// Stop deliveries now rather than when the socket finally closes
		// (a stalled client may hold its final frames until the poller's
		// shutdown timeout). The entry was inserted before the state
		// became open. Its queue stays counted until OnClose.
		c.srv.closing.add(c)
		c.hub.Remove(&c.entry)
		// Refused from now on, not only once the socket is through: a
		// stateful-reconnect client reconnects at once when it reads
		// the Close (allowReconnect), before the node closes the socket.
		c.markTokenUsed()
	}
	sock := c.out()
	if st == stDetached || sock == nil {
		c.finish(nil) // no socket, so no OnClose to wait for
		return
	}
	sock.Shutdown(final)
}

// send queues a frame the connection layer produced itself that is not
// a trackable message (sendTrackable is for those).
func (c *Conn) send(frame []byte) {
	sock := c.out()
	if sock == nil {
		return // detached: the client gets a fresh Sequence when it returns
	}
	if err := sock.Send(frame); err != nil {
		if errors.Is(err, poller.ErrQueueFull) {
			c.slow()
		}
		return
	}
	c.srv.M.ownOut.Inc()
	c.srv.M.ownBytes.Add(len(frame))
	c.touchWrite()
}

// Deliver implements fanout.Member: the message's frame in the
// connection's protocol, built once for all recipients of that protocol.
func (c *Conn) Deliver(f *fanout.Frames) int {
	frame := f.Frame(c.proto())
	if frame == nil {
		return 0 // not sendable in this protocol; fanout counted the drop
	}
	if c.has(flStateful) {
		c.deliverTracked(frame)
		return len(frame)
	}
	if c.has(flHTTPConn) {
		return c.deliverHTTP(f) // SSE or long polling (sse.go)
	}
	if err := c.pc.Send(frame); err != nil {
		if errors.Is(err, poller.ErrQueueFull) {
			c.slow()
		}
		return len(frame)
	}
	c.touchWrite()
	return len(frame)
}

// slow disconnects a client whose outbound queue overflowed.
func (c *Conn) slow() {
	c.closeWith(causeSlowClient)
}

// OnClose implements poller.Session.
func (c *Conn) OnClose(err error) {
	if c.state.Load() == stServer {
		c.flags.Or(flGone)
		if c.has(flIPCounted) {
			c.srv.perIP.release(addrOf(c.pc.RemoteAddr()))
		}
		c.releasePending()
		sess := c.srv.foreignSession(c)
		c.srv.foreign.Delete(c)
		sess.OnClose(err)
		return
	}
	c.heldClosed(err) // a socket holding a long poll or SSE stream (httptransport.go)
	if c.carrierClosed(err) {
		return // a resumed socket's session: its connection decides (resume.go)
	}
	c.releaseSocket()
	if c.detach(c.pc, err) != socketGone {
		return // kept for the client to come back (resume.go)
	}
	c.finish(err)
}

// releaseSocket frees what belongs to the socket that closed rather than
// to the connection: its place in the per-IP table and partial input.
func (c *Conn) releaseSocket() {
	if c.flags.And(^flIPCounted)&flIPCounted != 0 {
		c.srv.perIP.release(addrOf(c.pc.RemoteAddr()))
	}
	if c.bufs != nil {
		c.bufs.connect = nil
		if c.bufs.frag != nil {
			putBuf(c.bufs.frag)
			c.bufs.frag = nil
		}
	}
	c.releasePending()
}

// finish ends the connection for good (once): off the wheel and out of
// its hub, its token marked used, the upstream told. It runs when the
// socket closes or, for a connection kept for stateful reconnect, when
// its window ends.
func (c *Conn) finish(err error) {
	st := c.state.Swap(stClosed)
	if st != stClosed {
		c.srv.M.closed[causePeerGone.idx].Inc()
	}
	old := c.flags.Or(flGone)
	if old&flGone != 0 {
		return
	}
	registered := old&flRegistered != 0
	// Off the wheel now: nothing else refers to a closed connection, so
	// it and its poller state are garbage at once, not when its slot
	// comes round (up to the handshake time-out later).
	c.srv.wheel.remove(c)
	c.dropResume()
	c.dropPolicy()
	c.markTokenUsed()
	if c.has(flRelay) {
		if registered {
			c.srv.closing.remove(c)
			c.hub.Remove(&c.entry)
		}
		c.closeRelayed(disconnectReason(c.cause(), err))
		return
	}
	if registered {
		c.srv.closing.remove(c)
		c.hub.Remove(&c.entry)             // no-op if shutdown already removed it
		c.srv.abandonResults(c)            // results.go
		abandoned := c.srv.streams.take(c) // stream.go
		if up := c.srv.cfg.Upstream; up != nil {
			reason := disconnectReason(c.cause(), err)
			if e := up.Send(&backplane.Event{Kind: backplane.EventDisconnected, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(), Reason: reason, Abandoned: abandoned}); e != nil {
				c.srv.M.upstreamErr.Inc()
			}
		}
	}
}

// markTokenUsed records that c's negotiated token may not connect again.
func (c *Conn) markTokenUsed() {
	if c.tokenExp != 0 {
		var id [idLen]byte
		if _, err := b64.Decode(id[:], c.idBuf[:]); err == nil {
			c.srv.markUsed(id, c.srv.epoch+int64(c.tokenExp))
		}
	}
}
