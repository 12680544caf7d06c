package conn

import (
	"errors"
	"net/http"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/poller"
)

// Stateful reconnect (hub protocol version 2: Ack and Sequence).
//
// A client that negotiated it (useStatefulReconnect; the token carries
// tokStateful) and handshook with version 2 numbers the trackable
// messages both ways (hubproto.MessageType.IsTrackable). When its socket
// drops without a close, the connection stays (id, user, groups, hub
// membership: deliveries go on, into the replay buffer) for
// Config.ReconnectWindow. The client comes back with the same URL, the
// same connection token and no handshake; the node sends Sequence{first
// unacknowledged id} and every frame the client has not acknowledged,
// then carries on. What the client replays, it first announces with its
// own Sequence; messages already processed are skipped as duplicates.
//
// Memory: an idle connection pays one pointer (Conn.rs, in the padding of
// its size class). The first trackable message allocates its sequence
// counters (resume, 32 bytes), which live as long as the connection; the
// replay buffer (replay) exists only while something is unacknowledged,
// the socket is detached or resumed, and it holds references to the
// frames fanout encoded once for every recipient, never copies. It is
// bounded by Config.ReconnectBufferBytes of frames: past it the
// connection closes with allowReconnect (reconnect_buffer_full).
//
// Sockets: the connection that resumes is the one registered in the hub
// (its Entry, groups and user stay where they are); the new socket's
// session becomes a carrier (stCarrier) that hands its input to it. The
// connection writes to its current socket, rs.x.sock, found under rs.mu
// (out). If the client returns while the node still holds its old socket
// open (a half-open socket: the node has not noticed yet), the old socket
// is closed and the new one attached when its OnClose comes (as ASP.NET
// Core's CancelPreviousPoll), so one socket's input is handled at a time.
//
// Lock order: resume.mu → wheel.mu. No other lock is taken under
// resume.mu; poller.Conn methods never block.

// resume is a stateful-reconnect connection's sequence state.
type resume struct {
	mu   sync.Mutex
	sent int64   // trackable messages sent (queued or buffered): the last outbound sequence id
	recv int64   // trackable messages received and processed: the last inbound sequence id
	x    *replay // nil while nothing needs keeping (tidyLocked)
}

// replay is what a stateful-reconnect connection keeps while it has
// unacknowledged messages, no socket, or a socket not its own.
type replay struct {
	frames  [][]byte    // unacknowledged frames, oldest first: ids sent-len(frames)+1 … sent; shared, never modified
	bytes   int         // their size
	sock    poller.Conn // the socket written to: the connection's own at first, a carrier's after a resume, nil while detached
	owner   *Conn       // the connection (carriers find it here)
	expires int64       // wheel second a detached connection ends
	dups    int64       // inbound trackable messages the client replays that were processed already
	pending *Conn       // a reconnect waiting for the old socket to close
	resp    []byte      // its 101 response
}

// socketFate is what the end of a socket means for its connection.
type socketFate uint8

const (
	socketGone  socketFate = iota // the connection ends with it
	socketKept                    // detached: kept for the reconnect window
	socketStale                   // not the connection's current socket: nothing to do
)

var errPeerAhead = protoErr(CloseProtocolError, "Sequence ID greater than amount of messages we've received.")

// resumeState returns c's sequence state, allocating it on first use.
func (c *Conn) resumeState() *resume {
	if rs := c.rs.Load(); rs != nil {
		return rs
	}
	rs := new(resume)
	if c.rs.CompareAndSwap(nil, rs) {
		return rs
	}
	return c.rs.Load()
}

// extraLocked returns the replay state, allocating it. rs.mu must be held.
func (rs *resume) extraLocked(c *Conn) *replay {
	if rs.x == nil {
		rs.x = &replay{sock: c.pc, owner: c}
	}
	return rs.x
}

// sockLocked is the socket c writes to now (nil: detached). rs.mu must be
// held.
func (rs *resume) sockLocked(c *Conn) poller.Conn {
	if rs.x == nil {
		return c.pc
	}
	return rs.x.sock
}

// tidyLocked frees the replay state once it holds nothing. rs.mu must be
// held.
func (rs *resume) tidyLocked(c *Conn) {
	if x := rs.x; x != nil && len(x.frames) == 0 && x.sock == c.pc && x.pending == nil && x.dups == 0 {
		rs.x = nil
	}
}

// out is the socket c writes to: its own, a resumed one, or nil while
// detached.
func (c *Conn) out() poller.Conn {
	rs := c.rs.Load()
	if rs == nil {
		return c.pc
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.sockLocked(c)
}

// queued is the bytes queued on c's current socket.
func (c *Conn) queued() int {
	if s := c.out(); s != nil {
		return s.QueuedBytes()
	}
	return 0
}

// ackFrame is Ack{id} in the connection's protocol, framed.
func (c *Conn) ackFrame(id int64) []byte {
	p := c.proto()
	return dataFrame(p, hubproto.ByID(p).AppendAck(nil, id))
}

// sequenceFrame is Sequence{id} in the connection's protocol, framed.
func (c *Conn) sequenceFrame(id int64) []byte {
	p := c.proto()
	return dataFrame(p, hubproto.ByID(p).AppendSequence(nil, id))
}

// deliverTracked queues a trackable frame of a stateful-reconnect
// connection: numbered, kept until acknowledged, sent if there is a
// socket. Numbering and queuing happen under one lock, so the wire order
// is the sequence order.
func (c *Conn) deliverTracked(frame []byte) {
	rs := c.resumeState()
	rs.mu.Lock()
	if c.state.Load() == stClosed {
		rs.mu.Unlock()
		return
	}
	x := rs.extraLocked(c)
	if x.bytes+len(frame) > c.srv.cfg.ReconnectBufferBytes {
		rs.mu.Unlock()
		c.closeWith(causeReconnectBufferFull)
		return
	}
	rs.sent++
	x.frames = append(x.frames, frame)
	x.bytes += len(frame)
	sock := x.sock
	var err error
	if sock != nil {
		err = sock.Send(frame)
	}
	rs.mu.Unlock()
	switch {
	case sock == nil:
	case err == nil:
		c.touchWrite()
	case errors.Is(err, poller.ErrQueueFull):
		c.slow()
	}
}

// sendTrackable queues a trackable message the connection layer wrote
// itself (a Completion): numbered like a delivery with stateful
// reconnect.
func (c *Conn) sendTrackable(frame []byte) {
	if !c.has(flStateful) {
		c.send(frame)
		return
	}
	c.srv.M.ownOut.Inc()
	c.srv.M.ownBytes.Add(len(frame))
	c.deliverTracked(frame)
}

// inbound counts a trackable message from the client and reports whether
// it is new (false: a duplicate the client replayed after a reconnect).
// Either way an Ack follows within about a second.
func (c *Conn) inbound() bool {
	rs := c.resumeState()
	rs.mu.Lock()
	fresh := true
	if x := rs.x; x != nil && x.dups > 0 {
		x.dups--
		fresh = false
		rs.tidyLocked(c)
	} else {
		rs.recv++
	}
	rs.mu.Unlock()
	c.ackSoon()
	return fresh
}

// ackSoon has the wheel send an Ack at its next second, once for however
// many messages arrive until then.
func (c *Conn) ackSoon() {
	if c.flags.Load()&flAckDue != 0 {
		return
	}
	c.flags.Or(flAckDue)
	c.srv.wheel.add(c, c.srv.wheel.Now()+1)
}

// sendAck sends Ack{last processed id} (from tick).
func (c *Conn) sendAck() {
	c.flags.And(^flAckDue)
	rs := c.rs.Load()
	if rs == nil {
		return
	}
	rs.mu.Lock()
	n := rs.recv
	rs.mu.Unlock()
	c.send(c.ackFrame(n))
}

// onAck drops the frames the client acknowledged.
func (c *Conn) onAck(id int64) {
	rs := c.rs.Load()
	if rs == nil {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	x := rs.x
	if x == nil || len(x.frames) == 0 {
		return
	}
	first := rs.sent - int64(len(x.frames)) + 1
	k := min(id-first+1, int64(len(x.frames)))
	if k <= 0 {
		return
	}
	for i := range k {
		x.bytes -= len(x.frames[i])
		x.frames[i] = nil
	}
	x.frames = x.frames[k:]
	if len(x.frames) == 0 {
		x.frames = nil
	}
	rs.tidyLocked(c)
}

// onSequence handles the client's Sequence: the id of the first message
// it is about to send again. Those up to the last processed are
// duplicates; an id past the next expected means the client dropped
// messages the node never got (ASP.NET Core and the JS client fail the
// connection the same way).
func (c *Conn) onSequence(id int64) error {
	rs := c.resumeState()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if id < 1 || id > rs.recv+1 {
		return errPeerAhead
	}
	if dups := rs.recv + 1 - id; dups > 0 {
		rs.extraLocked(c).dups = dups
	} else if rs.x != nil {
		rs.x.dups = 0
		rs.tidyLocked(c)
	}
	return nil
}

// detach handles the end of socket pc (c's own or a carrier's): a
// stateful-reconnect connection whose current socket dropped while open
// is kept for the reconnect window. The caller frees the socket's own
// state (releaseSocket) before, and finishes c when it is socketGone.
func (c *Conn) detach(pc poller.Conn, err error) socketFate {
	if !c.has(flStateful) {
		return socketGone
	}
	rs := c.resumeState()
	rs.mu.Lock()
	if rs.sockLocked(c) != pc {
		rs.mu.Unlock()
		return socketStale
	}
	if c.srv.draining.Load() || !c.state.CompareAndSwap(stOpen, stDetached) {
		rs.mu.Unlock()
		return socketGone // closed by the node or the client, or before the handshake
	}
	x := rs.extraLocked(c)
	x.sock = nil
	exp := c.srv.wheel.Now() + c.srv.reconnectSec
	x.expires = exp
	c.srv.M.resume.detached.Inc()
	if p := x.pending; p != nil {
		// A reconnect that came while this socket was still open.
		resp := x.resp
		x.pending, x.resp = nil, nil
		ok, full := c.attachLocked(rs, x, p, resp)
		rs.mu.Unlock()
		if ok {
			c.resumed(full)
			return socketKept
		}
		p.refuseResume()
	} else {
		rs.mu.Unlock()
	}
	c.srv.wheel.add(c, exp)
	return socketKept
}

// detachedTick ends a detached connection at the end of its window.
func (c *Conn) detachedTick(now int64) int64 {
	rs := c.rs.Load()
	rs.mu.Lock()
	exp := int64(0)
	if rs.x != nil {
		exp = rs.x.expires
	}
	rs.mu.Unlock()
	if now < exp {
		return exp
	}
	if c.state.CompareAndSwap(stDetached, stClosed) {
		c.srv.M.closed[causeReconnectExpired.idx].Inc()
		c.setCause(causeReconnectExpired.idx)
		c.finish(nil)
		return 0
	}
	return now + 1 // resumed or closed meanwhile: the next tick sees which
}

// resumable returns the stateful connection with id on h, if any.
func resumable(h *fanout.Hub, id [idLen]byte) *Conn {
	owner, ok := h.Member(encodeID(id)).(*Conn)
	if !ok || !owner.has(flStateful) {
		return nil
	}
	return owner
}

// resume attaches c, a new socket whose upgrade named owner's token, to
// owner: at once if owner is detached; if owner's socket is still open,
// after closing it. resp is the 101 response.
func (c *Conn) resume(owner *Conn, resp []byte) {
	rs := owner.resumeState()
	rs.mu.Lock()
	switch owner.state.Load() {
	case stDetached:
		if ok, full := owner.attachLocked(rs, rs.extraLocked(owner), c, resp); ok {
			rs.mu.Unlock()
			owner.resumed(full)
			return
		}
	case stOpen:
		x := rs.extraLocked(owner)
		if x.pending == nil && x.sock != nil {
			x.pending, x.resp = c, resp
			c.flags.Or(flClaiming) // nothing may come before the 101
			old := x.sock
			rs.mu.Unlock()
			owner.srv.M.resume.takeovers.Inc()
			old.Close() // its OnClose detaches owner and attaches c
			return
		}
	}
	rs.mu.Unlock()
	c.refuseResume()
}

// refuseResume answers a reconnect that cannot resume as one with a used
// token (409): the client then starts over with negotiate.
func (c *Conn) refuseResume() {
	if c.state.Load() == stHTTP {
		c.httpError(nil, "connect", http.StatusConflict, ErrTokenReused.Error())
	}
}

// attachLocked makes n, a new socket's session still waiting for its
// 101, the detached connection c's socket: the 101, Sequence, every
// unacknowledged frame, in that order, before anything else can be
// queued. ok is false (nothing changed) when c was closed or n gave up
// meanwhile; full, when the replay did not fit the socket's queue.
// rs.mu must be held.
func (c *Conn) attachLocked(rs *resume, x *replay, n *Conn, resp []byte) (ok, full bool) {
	if n.state.Load() != stHTTP {
		return false, false
	}
	c.touchRead()
	c.touchWrite()
	if !c.state.CompareAndSwap(stDetached, stOpen) {
		return false, false
	}
	if !n.state.CompareAndSwap(stHTTP, stCarrier) {
		// n gave up; c stays detached unless it was closed meanwhile
		// (then whoever closed it finishes it: its socket is nil).
		c.state.CompareAndSwap(stOpen, stDetached)
		return false, false
	}
	n.flags.And(^flClaiming)
	n.rs.Store(rs)
	x.sock = n.pc
	c.srv.wheel.remove(n)
	c.srv.M.httpReqs("connect", http.StatusSwitchingProtocols).Inc()
	full = n.pc.Send(resp) != nil
	seq := c.sequenceFrame(rs.sent - int64(len(x.frames)) + 1)
	full = full || n.pc.Send(seq) != nil
	c.srv.M.ownOut.Inc()
	c.srv.M.ownBytes.Add(len(seq))
	for _, f := range x.frames {
		if full {
			break
		}
		full = n.pc.Send(f) != nil
	}
	c.srv.M.resume.replayed.Add(len(x.frames))
	return true, full
}

// resumed counts a resume and tells the upstream; a replay that did not
// fit the socket's queue closes the connection as a slow client.
func (c *Conn) resumed(full bool) {
	c.srv.M.resume.resumed.Inc()
	if up := c.srv.cfg.Upstream; up != nil {
		if err := up.Send(&backplane.Event{Kind: backplane.EventReconnected, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User()}); err != nil {
			c.srv.M.upstreamErr.Inc()
		}
	}
	if full {
		c.slow()
	}
}

// owner is the connection a carrier's input goes to.
func (c *Conn) owner() *Conn {
	rs := c.rs.Load()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.x.owner
}

// forward hands a carrier's input to its connection.
func (c *Conn) forward(data []byte) { c.owner().OnData(data) }

// carrierClosed handles the end of a carrier's socket; false if c is not
// a carrier.
func (c *Conn) carrierClosed(err error) bool {
	if c.state.Load() != stCarrier {
		return false
	}
	c.releaseSocket()
	o := c.owner()
	o.releaseSocket() // the partial input read from this socket
	if o.detach(c.pc, err) == socketGone {
		o.finish(err)
	}
	return true
}

// dropResume releases what a finished connection kept for stateful
// reconnect and refuses a reconnect that was waiting for it.
func (c *Conn) dropResume() {
	rs := c.rs.Load()
	if rs == nil {
		return
	}
	rs.mu.Lock()
	var p *Conn
	if x := rs.x; x != nil {
		p = x.pending
		x.pending, x.resp = nil, nil
		clear(x.frames)
		x.frames, x.bytes = nil, 0
	}
	rs.mu.Unlock()
	if p != nil {
		p.refuseResume()
	}
}

// resumeMetrics count stateful reconnects; closes that end them are in
// edgeplane_closed_total (reconnect_expired, reconnect_buffer_full).
type resumeMetrics struct {
	detached, resumed, takeovers, replayed *metrics.Counter
}

func newResumeMetrics(set *metricset.Set) resumeMetrics {
	return resumeMetrics{
		detached:  set.Counter("edgeplane_reconnect_detached_total", "Stateful-reconnect connections whose socket dropped; each is kept for --reconnect-window."),
		resumed:   set.Counter("edgeplane_reconnect_resumed_total", "Stateful-reconnect connections resumed on a new socket within the window."),
		takeovers: set.Counter("edgeplane_reconnect_takeovers_total", "Reconnects that found the old socket still open here and closed it (the client had left it)."),
		replayed:  set.Counter("edgeplane_reconnect_replayed_total", "Unacknowledged messages sent again after a resume."),
	}
}
