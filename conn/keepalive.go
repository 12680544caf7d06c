package conn

import (
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// Keep-alive on the timing wheel: handshake deadline, Ping after outbound
// silence, client time-out after inbound silence.

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
			c.closeWith(causeHandshakeTimeout)
			return now + 1
		}
		// Look again by the keep-alive interval at the latest, so the
		// first Ping after a completed handshake is not late.
		return min(deadline, now+s.keepAliveSec)
	}
	lr, lw := int64(c.lastRead.Load()), int64(c.lastWrite.Load())
	if now-lr >= s.timeoutSec {
		c.closeWith(causeTimeout)
		return now + 1
	}
	if now-lw >= s.keepAliveSec {
		c.send(pingFrame)
		lw = now
	}
	return min(lr+s.timeoutSec, lw+s.keepAliveSec)
}

func (c *Conn) touchWrite() {
	if now := int32(c.srv.wheel.Now()); c.lastWrite.Load() != now {
		c.lastWrite.Store(now)
	}
}

// pingFrame is the keep-alive Ping, encoded once.
var pingFrame = wsframe.TextFrame(hubproto.JSON.Ping())
