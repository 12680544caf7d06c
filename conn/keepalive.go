package conn

// Keep-alive on the timing wheel: handshake deadline, Ping after outbound
// silence, client time-out after inbound silence (no complete record:
// partial input has the same deadline, see touchRead).

// tick implements wheelItem: handshake deadline, keep-alive Ping, client
// time-out; with stateful reconnect, Acks and the reconnect window.
func (c *Conn) tick(now int64) int64 {
	s := c.srv
	if c.has(flLongPoll) && c.state.Load() != stHandshake {
		closeAt := c.policy().closeAt // the token's authentication expiry, 0 if none
		if closeAt != 0 && now >= closeAt && c.state.Load() == stOpen {
			c.closeWith(causeAuthExpired)
		}
		next := c.longPollTick(now) // no Ping, no client time-out: the polls (longpoll.go)
		if closeAt != 0 && next != 0 && c.state.Load() == stOpen {
			next = min(next, closeAt)
		}
		return next
	}
	switch c.state.Load() {
	case stKeep:
		return c.keepTick(now) // an HTTP keep-alive socket's idle time-out (httptransport.go)
	case stHeld:
		return 0 // its poll or stream's connection keeps the time
	case stServer:
		return 0 // the Service keeps an app server connection's time
	case stClosed:
		if c.has(flGone) {
			return 0
		}
		return now + 1 + s.handshakeSec // keep watching until the poller closes it
	case stDetached:
		return c.detachedTick(now) // resume.go: the reconnect window
	case stCarrier:
		return 0 // its connection keeps the time
	case stHTTP, stHandshake:
		deadline := int64(c.opened) + c.handshakeSec()
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
	closeAt := c.policy().closeAt // the token's authentication expiry, 0 if none
	if closeAt != 0 && now >= closeAt {
		c.closeWith(causeAuthExpired)
		return now + 1
	}
	if c.flags.Load()&flAckDue != 0 {
		c.sendAck() // resume.go: about once a second while messages arrive
		lw = now
	}
	if now-lw >= s.keepAliveSec {
		c.send(pingFrames[c.proto()])
		lw = now
	}
	next := min(lr+s.timeoutSec, lw+s.keepAliveSec)
	if closeAt != 0 {
		next = min(next, closeAt)
	}
	return next
}

// touchRead records a complete SignalR record from the client (or its
// handshake). The client time-out counts from the last one, as ASP.NET
// Core SignalR's does, not from the last byte: input that never completes
// a record (a frame trickled in byte by byte, fragments of a message that
// never ends, WebSocket pings) does not keep a connection alive, and the
// partial input it pins is freed at the time-out.
func (c *Conn) touchRead() {
	if now := int32(c.srv.wheel.Now()); c.lastRead.Load() != now {
		c.lastRead.Store(now)
	}
}

func (c *Conn) touchWrite() {
	if now := int32(c.srv.wheel.Now()); c.lastWrite.Load() != now {
		c.lastWrite.Store(now)
	}
}
