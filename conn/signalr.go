package conn

import (
	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The SignalR layer: the handshake, records, invocations to the upstream.

// register completes the SignalR handshake: the handshake response is
// queued, then the connection joins its hub. In that order: once in the
// hub the connection receives deliveries from any goroutine, and the
// official clients fail a connection whose first record is not the
// handshake response ("Expected a handshake response from the server").
func (c *Conn) register() bool {
	if c.srv.draining.Load() {
		c.closeWith(causeShutdown)
		return false
	}
	if c.hub.Lookup(c.entry.ID()) {
		c.closeWith(causeDuplicate)
		return false
	}
	c.send(handshakeOKFrames[c.proto()])
	if !c.hub.Insert(&c.entry) {
		c.closeWith(causeDuplicate) // lost a race with another upgrade of the same token
		return false
	}
	if !c.state.CompareAndSwap(stHandshake, stOpen) {
		c.hub.Remove(&c.entry) // closed meanwhile (handshake deadline, full queue, drain)
		return false
	}
	c.touchRead() // the handshake is the first message: the client timeout starts now
	c.flags.Or(flRegistered)
	if up := c.srv.cfg.Upstream; up != nil {
		if err := up.Send(&backplane.Event{Kind: backplane.EventConnected, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(), Context: c.takeConnectContext()}); err != nil {
			c.srv.M.upstreamErr.Inc()
		}
	}
	// Drain sets draining, then snapshots the hubs; Insert and the
	// snapshot take the same shard lock. So either the drain saw this
	// connection, or this load sees draining: none is missed.
	if c.srv.draining.Load() {
		c.closeWith(causeShutdown)
		return false
	}
	return true
}

func (c *Conn) handshakeFailed(msg string) {
	final := wsframe.TextFrame(hubproto.AppendHandshakeError(nil, msg))
	final = wsframe.AppendCloseFrame(final, causeHandshakeError.code, causeHandshakeError.text)
	c.shutdown(causeHandshakeError, final)
}

// onRecord handles one JSON record (without its separator);
// onMessagePackRecord (protocol.go) is its MessagePack twin.
func (c *Conn) onRecord(rec []byte) error {
	if err := c.recordIn(); err != nil {
		return err
	}
	if hubproto.JSON.IsPing(rec) {
		return nil // keep-alive Ping, the most common record: no JSON decode
	}
	m, err := hubproto.JSON.Parse(rec)
	if err != nil {
		return err
	}
	return c.onHubMessage(&m, nil)
}

// recordIn counts a complete record from the client and refreshes its
// time-out; the message rate limit may refuse it.
func (c *Conn) recordIn() error {
	c.srv.M.messagesIn.Inc()
	c.touchRead()
	return c.countInbound()
}

// onHubMessage acts on a parsed client message, whatever its protocol;
// mpRec is a MessagePack client's record, nil for JSON (invoke).
func (c *Conn) onHubMessage(m *hubproto.Message, mpRec []byte) error {
	if c.has(flStateful) {
		// Stateful reconnect (resume.go): trackable messages are numbered,
		// duplicates of ones already processed skipped; Ack and Sequence
		// are handled there.
		if m.Type.IsTrackable() && !c.inbound() {
			return nil
		}
		switch m.Type {
		case hubproto.TypeAck:
			c.onAck(m.SequenceID)
		case hubproto.TypeSequence:
			return c.onSequence(m.SequenceID)
		}
	}
	switch m.Type {
	case hubproto.TypeInvocation, hubproto.TypeStreamInvocation:
		c.invoke(m, mpRec)
	case hubproto.TypeStreamItem, hubproto.TypeCompletion, hubproto.TypeCancelInvocation:
		c.onStreamMessage(m) // stream.go
	case hubproto.TypeClose:
		c.shutdown(causeClientClose, wsframe.CompiledCloseNormal)
	case hubproto.TypePing, hubproto.TypeAck, hubproto.TypeSequence:
		// Ping only refreshes lastRead (done above); Ack and Sequence
		// were handled above.
	}
	return nil
}

// countInbound counts one unit of client input toward --max-message-rate:
// a record, or a frame that carries none (control frame, fragment, empty
// message), which costs the node work all the same.
func (c *Conn) countInbound() error {
	if !c.rate.allow(int32(c.srv.wheel.Now()), c.srv.cfg.MaxMessageRate) {
		return protoErr(causeRateLimited.code, causeRateLimited.text)
	}
	return nil
}

// invoke sends a client's invocation upstream; a MessagePack client's
// record goes along as it came (Event.Record: Azure SignalR's webhook
// posts it), valid only during Send, so never copied here.
func (c *Conn) invoke(m *hubproto.Message, mpRec []byte) {
	up := c.srv.cfg.Upstream
	var err error
	if up == nil {
		err = backplane.ErrNoUpstream
	} else {
		var args []byte
		if args, err = c.upstreamArguments(m); err == nil {
			err = up.Send(&backplane.Event{
				Kind: backplane.EventInvocation, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(),
				InvocationID: m.InvocationID, Target: m.Target, Arguments: args,
				Stream: m.Type == hubproto.TypeStreamInvocation, StreamIDs: m.StreamIDs,
				Protocol: c.proto().String(), Record: mpRec,
			})
			if err != nil {
				c.srv.M.upstreamErr.Inc()
			}
		}
	}
	if err == nil {
		if m.Type == hubproto.TypeStreamInvocation {
			c.srv.streams.open(c, m.InvocationID)
		}
		if len(m.StreamIDs) > 0 {
			c.srv.streams.open(c, m.StreamIDs...)
		}
		return
	}
	c.srv.M.dropped.Inc()
	if m.InvocationID != "" {
		c.sendCompletionError(m.InvocationID, err.Error())
	}
}
