package conn

import (
	"errors"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
	"github.com/edgeplane/edgeplane/poller"
)

// Connection states.
const (
	stHTTP      uint32 = iota // reading an HTTP request
	stHandshake               // WebSocket open, waiting for the SignalR handshake
	stOpen                    // SignalR connection established
	stClosed                  // closing or closed; input is ignored
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

	lastRead  atomic.Int32 // wheel seconds
	lastWrite atomic.Int32
	state     atomic.Uint32
	opened    int32
	rate      rateWindow    // inbound records per second (OnData only)
	flags     atomic.Uint32 // fl* bits, and the close reason (flReasonShift)
	tokenExp  int32         // negotiated token's expiry, seconds after srv.epoch (0: none)
	idBuf     [22]byte      // the connection id's characters; entry's id points here
	wslot     uint8         // timing wheel slot (in idBuf's padding)
	wl        wheelLinks[Conn]
}

// Conn.flags bits. One word instead of three flags and a reason field:
// 12 bytes per connection.
const (
	flGone       uint32 = 1 << iota // OnClose ran
	flRegistered                    // inserted in the hub (upstream saw "connected")
	flIPCounted                     // counted in the server's per-IP table

	flReasonShift = 8 // bits 8-15: why it was closed, index into closeReasons + 1
	flReasonMask  = 0xff << flReasonShift
)

func (c *Conn) has(f uint32) bool { return c.flags.Load()&f != 0 }

// reason is the close reason's index into closeReasons + 1 (0: none).
func (c *Conn) reason() uint32 { return c.flags.Load() & flReasonMask >> flReasonShift }

func (c *Conn) setReason(idx uint32) {
	for {
		old := c.flags.Load()
		if c.flags.CompareAndSwap(old, old&^flReasonMask|idx<<flReasonShift&flReasonMask) {
			return
		}
	}
}

func (c *Conn) links() *wheelLinks[Conn] { return &c.wl }
func (c *Conn) slot() *uint8             { return &c.wslot }

// connBufs holds the rare partial input of a connection; it exists only
// while a frame, request or fragmented message is incomplete.
type connBufs struct {
	pending []byte // partial frame or request (pooled)
	frag    []byte // fragmented message being assembled (pooled)
	fragOp  wsframe.OpCode
}

var connBufsPool = sync.Pool{New: func() any { return new(connBufs) }}

func (c *Conn) buffers() *connBufs {
	if c.bufs == nil {
		c.bufs = connBufsPool.Get().(*connBufs)
	}
	return c.bufs
}

// releaseBufs returns the buffers once nothing is pending.
func (c *Conn) releaseBufs() {
	b := c.bufs
	if b == nil || b.pending != nil || b.frag != nil {
		return
	}
	c.bufs = nil
	connBufsPool.Put(b)
}

// OnData implements poller.Session.
func (c *Conn) OnData(data []byte) {
	if c.state.Load() == stClosed {
		return
	}
	if now := int32(c.srv.wheel.Now()); c.lastRead.Load() != now {
		c.lastRead.Store(now)
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
		case stHTTP:
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
		default:
			return len(buf), nil
		}
	}
	return off, nil
}

// handleFrame processes one complete frame at the start of b, or returns 0
// if b does not hold one yet.
func (c *Conn) handleFrame(b []byte) (int, error) {
	h, hn, err := wsframe.ParseHeader(b, int64(c.srv.cfg.MaxMessageBytes))
	if err != nil || hn == 0 {
		return 0, err
	}
	total := hn + int(h.Length)
	if len(b) < total {
		return 0, nil
	}
	payload := b[hn:total]
	wsframe.Unmask(payload, h.Mask)
	switch h.Op {
	case wsframe.OpPing:
		c.send(wsframe.AppendFrame(nil, wsframe.OpPong, payload))
	case wsframe.OpPong:
	case wsframe.OpClose:
		return total, c.onCloseFrame(payload)
	case wsframe.OpText, wsframe.OpBinary:
		if c.bufs != nil && c.bufs.frag != nil {
			return 0, wsframe.ErrUnexpectedData
		}
		if h.Fin {
			return total, c.onMessage(h.Op, payload)
		}
		b := c.buffers()
		b.fragOp = h.Op
		b.frag = append(getBuf(len(payload)), payload...)
	case wsframe.OpContinuation:
		if c.bufs == nil || c.bufs.frag == nil {
			return 0, wsframe.ErrUnexpectedContinuation
		}
		b := c.bufs
		if len(b.frag)+len(payload) > c.srv.cfg.MaxMessageBytes {
			return 0, wsframe.ErrTooBig
		}
		b.frag = appendPooled(b.frag, payload)
		if h.Fin {
			msg := b.frag
			err := c.onMessage(b.fragOp, msg)
			putBuf(msg)
			b.frag = nil
			return total, err
		}
	}
	return total, nil
}

func (c *Conn) onCloseFrame(payload []byte) error {
	code, _, err := wsframe.ParseClosePayload(payload)
	if err != nil {
		return err
	}
	if code == wsframe.CloseNoStatus {
		code = CloseNormal // an empty close frame is answered with 1000
	}
	c.shutdown(reasonClientClose, wsframe.AppendCloseFrame(nil, code, ""))
	return nil
}

// onMessage handles one complete WebSocket data message.
func (c *Conn) onMessage(op wsframe.OpCode, msg []byte) error {
	if op == wsframe.OpText && !utf8.Valid(msg) {
		return wsframe.ErrInvalidUTF8
	}
	if c.state.Load() == stHandshake {
		_, rest, err := hubproto.ParseHandshake(msg)
		if err != nil {
			c.handshakeFailed(err.Error())
			return nil
		}
		if !c.register() {
			return nil
		}
		msg = rest
	}
	return hubproto.JSON.Split(msg, c.onRecord)
}

// register completes the SignalR handshake: the connection joins its hub.
func (c *Conn) register() bool {
	if c.srv.draining.Load() {
		c.closeWith(reasonShutdown, CloseServiceRestart, "server is restarting", true)
		return false
	}
	if !c.hub.Insert(&c.entry) {
		c.closeWith(reasonDuplicate, ClosePolicyViolation, "connection id already connected", false)
		return false
	}
	if !c.state.CompareAndSwap(stHandshake, stOpen) {
		c.hub.Remove(&c.entry) // closed meanwhile (e.g. handshake deadline)
		return false
	}
	c.flags.Or(flRegistered)
	c.send(handshakeOKFrame)
	if up := c.srv.cfg.Upstream; up != nil {
		if err := up.Send(&backplane.Event{Kind: backplane.EventConnected, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User()}); err != nil {
			c.srv.M.upstreamErr.Inc()
		}
	}
	return true
}

func (c *Conn) handshakeFailed(msg string) {
	final := wsframe.TextFrame(hubproto.AppendHandshakeError(nil, msg))
	final = wsframe.AppendCloseFrame(final, CloseProtocolError, "handshake failed")
	c.shutdown(reasonHandshakeError, final)
}

// onRecord handles one SignalR record (without its separator).
func (c *Conn) onRecord(rec []byte) error {
	c.srv.M.messagesIn.Inc()
	if !c.rate.allow(int32(c.srv.wheel.Now()), c.srv.cfg.MaxMessageRate) {
		return protoErr(ClosePolicyViolation, "message rate limit exceeded")
	}
	if hubproto.JSON.IsPing(rec) {
		return nil // keep-alive Ping, the most common record: no JSON decode
	}
	m, err := hubproto.JSON.Parse(rec)
	if err != nil {
		return err
	}
	switch m.Type {
	case hubproto.TypeInvocation, hubproto.TypeStreamInvocation:
		c.invoke(&m)
	case hubproto.TypeClose:
		c.shutdown(reasonClientClose, wsframe.CompiledCloseNormal)
	case hubproto.TypePing, hubproto.TypeCompletion, hubproto.TypeStreamItem, hubproto.TypeCancelInvocation, hubproto.TypeAck, hubproto.TypeSequence:
		// Ping only refreshes lastRead (done in OnData); the others have no
		// server-side meaning without an upstream that supports them.
	}
	return nil
}

func (c *Conn) invoke(m *hubproto.Message) {
	up := c.srv.cfg.Upstream
	var err error
	if up == nil {
		err = backplane.ErrNoUpstream
	} else {
		err = up.Send(&backplane.Event{
			Kind: backplane.EventInvocation, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(),
			InvocationID: m.InvocationID, Target: m.Target, Arguments: m.Arguments,
		})
		if err != nil {
			c.srv.M.upstreamErr.Inc()
		}
	}
	if err == nil {
		return
	}
	c.srv.M.dropped.Inc()
	if m.InvocationID != "" {
		c.send(wsframe.TextFrame(hubproto.JSON.AppendCompletionError(nil, m.InvocationID, err.Error())))
	}
}

// fail closes the connection for an input error, with the close code the
// error carries.
func (c *Conn) fail(err error) {
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		pe = protoErr(CloseProtocolError, err.Error())
	}
	reason := reasonProtocolError
	switch pe.Code {
	case ClosePolicyViolation:
		reason = reasonRateLimited
	case CloseTooBig:
		reason = reasonTooBig
	case CloseInvalidPayload:
		reason = reasonInvalidUTF8
	}
	c.closeWith(reason, pe.Code, pe.Reason, false)
}

// closeWith closes the connection: a SignalR Close message (once the
// SignalR connection is open) and a WebSocket close frame are queued after
// whatever is already queued, then the socket is closed.
func (c *Conn) closeWith(reason string, code CloseCode, msg string, allowReconnect bool) {
	var final []byte
	switch c.state.Load() {
	case stOpen:
		final = wsframe.TextFrame(hubproto.JSON.AppendClose(nil, msg, allowReconnect))
		fallthrough
	case stHandshake:
		final = wsframe.AppendCloseFrame(final, code, msg)
	}
	c.shutdown(reason, final)
}

// shutdown marks the connection closed (once), counts the reason and
// hands the final bytes to the poller.
func (c *Conn) shutdown(reason string, final []byte) {
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
	c.srv.M.closed[reason].Inc()
	c.setReason(reasonIndex[reason])
	if st == stOpen {
		// Stop deliveries now rather than when the socket finally closes
		// (a stalled client may hold its final frames until the poller's
		// shutdown timeout). The entry was inserted before the state
		// became open.
		c.hub.Remove(&c.entry)
	}
	c.pc.Shutdown(final)
}

// send queues a frame the connection layer produced itself.
func (c *Conn) send(frame []byte) {
	if err := c.pc.Send(frame); err != nil {
		if errors.Is(err, poller.ErrQueueFull) {
			c.slow()
		}
		return
	}
	c.srv.M.ownOut.Inc()
	c.srv.M.ownBytes.Add(len(frame))
	c.touchWrite()
}

func (c *Conn) touchWrite() {
	if now := int32(c.srv.wheel.Now()); c.lastWrite.Load() != now {
		c.lastWrite.Store(now)
	}
}

// Deliver implements fanout.Member.
func (c *Conn) Deliver(frame []byte) {
	if err := c.pc.Send(frame); err != nil {
		if errors.Is(err, poller.ErrQueueFull) {
			c.slow()
		}
		return
	}
	c.touchWrite()
}

// slow disconnects a client whose outbound queue overflowed.
func (c *Conn) slow() {
	c.closeWith(reasonSlowClient, ClosePolicyViolation, "slow client: outbound queue full", true)
}

// OnClose implements poller.Session.
func (c *Conn) OnClose(err error) {
	st := c.state.Swap(stClosed)
	if st != stClosed {
		c.srv.M.closed[reasonPeerGone].Inc()
	}
	registered := c.flags.Or(flGone)&flRegistered != 0
	// Off the wheel now: nothing else refers to a closed connection, so
	// it and its poller state are garbage at once, not when its slot
	// comes round (up to the handshake time-out later).
	c.srv.wheel.remove(c)
	if c.has(flIPCounted) {
		c.srv.perIP.release(addrOf(c.pc.RemoteAddr()))
	}
	if c.bufs != nil && c.bufs.frag != nil {
		putBuf(c.bufs.frag)
		c.bufs.frag = nil
	}
	c.releasePending()
	if c.tokenExp != 0 {
		var id [idLen]byte
		if _, err := b64.Decode(id[:], c.idBuf[:]); err == nil {
			c.srv.markUsed(id, c.srv.epoch+int64(c.tokenExp))
		}
	}
	if registered {
		c.hub.Remove(&c.entry) // no-op if shutdown already removed it
		if up := c.srv.cfg.Upstream; up != nil {
			reason := disconnectReason(c.reason(), err)
			if e := up.Send(&backplane.Event{Kind: backplane.EventDisconnected, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(), Reason: reason}); e != nil {
				c.srv.M.upstreamErr.Inc()
			}
		}
	}
}

// tick implements wheelItem: handshake deadline, keep-alive Ping, client
// time-out.
func (c *Conn) tick(now int64) int64 {
	s := c.srv
	switch c.state.Load() {
	case stClosed:
		if c.has(flGone) {
			return 0
		}
		return now + 1 + s.handshakeSec // keep watching until the poller closes it
	case stHTTP, stHandshake:
		deadline := int64(c.opened) + s.handshakeSec
		if now >= deadline {
			c.closeWith(reasonHandshakeTimeout, ClosePolicyViolation, "handshake timed out", false)
			return now + 1
		}
		// Look again by the keep-alive interval at the latest, so the
		// first Ping after a completed handshake is not late.
		return min(deadline, now+s.keepAliveSec)
	}
	lr, lw := int64(c.lastRead.Load()), int64(c.lastWrite.Load())
	if now-lr >= s.timeoutSec {
		c.closeWith(reasonTimeout, CloseNormal, "Server timeout elapsed without receiving a message from the client.", true)
		return now + 1
	}
	if now-lw >= s.keepAliveSec {
		c.send(pingFrame)
		lw = now
	}
	return min(lr+s.timeoutSec, lw+s.keepAliveSec)
}

// Frames of the canned records, encoded once.
var (
	pingFrame        = wsframe.TextFrame(hubproto.JSON.Ping())
	handshakeOKFrame = wsframe.TextFrame(hubproto.HandshakeOK)
)
