package conn

import (
	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The SignalR layer: the handshake, records, invocations to the upstream.

// register completes the SignalR handshake: the connection joins its hub.
func (c *Conn) register() bool {
	if c.srv.draining.Load() {
		c.closeWith(causeShutdown)
		return false
	}
	if !c.hub.Insert(&c.entry) {
		c.closeWith(causeDuplicate)
		return false
	}
	if !c.state.CompareAndSwap(stHandshake, stOpen) {
		c.hub.Remove(&c.entry) // closed meanwhile (e.g. handshake deadline)
		return false
	}
	c.flags.Or(flRegistered)
	c.send(handshakeOKFrame)
	if up := c.srv.cfg.Upstream; up != nil {
		if err := up.Send(&backplane.Event{Kind: backplane.EventConnected, Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(), Context: c.takeConnectContext()}); err != nil {
			c.srv.M.upstreamErr.Inc()
		}
	}
	return true
}

func (c *Conn) handshakeFailed(msg string) {
	final := wsframe.TextFrame(hubproto.AppendHandshakeError(nil, msg))
	final = wsframe.AppendCloseFrame(final, causeHandshakeError.code, causeHandshakeError.text)
	c.shutdown(causeHandshakeError, final)
}

// onRecord handles one SignalR record (without its separator).
func (c *Conn) onRecord(rec []byte) error {
	c.srv.M.messagesIn.Inc()
	if !c.rate.allow(int32(c.srv.wheel.Now()), c.srv.cfg.MaxMessageRate) {
		return protoErr(causeRateLimited.code, causeRateLimited.text)
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
		c.shutdown(causeClientClose, wsframe.CompiledCloseNormal)
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

// handshakeOKFrame is the handshake response, encoded once.
var handshakeOKFrame = wsframe.TextFrame(hubproto.HandshakeOK)
