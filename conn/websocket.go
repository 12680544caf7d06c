package conn

import (
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The WebSocket layer: frames in, one complete message at a time out to the
// SignalR layer (signalr.go).

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
	if carriesNoRecord(&h) {
		if err := c.countInbound(); err != nil {
			return 0, err
		}
	}
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

// carriesNoRecord reports whether a frame is one that delivers no SignalR
// record of its own: a ping or pong, a fragment before a message's last,
// an empty message. Each counts toward the message rate like a record, so
// a client cannot make the node work without limit between records.
func carriesNoRecord(h *wsframe.Header) bool {
	switch h.Op {
	case wsframe.OpPing, wsframe.OpPong:
		return true
	case wsframe.OpText, wsframe.OpBinary:
		return !h.Fin || h.Length == 0
	case wsframe.OpContinuation:
		return !h.Fin
	}
	return false
}

func (c *Conn) onCloseFrame(payload []byte) error {
	code, _, err := wsframe.ParseClosePayload(payload)
	if err != nil {
		return err
	}
	if code == wsframe.CloseNoStatus {
		code = CloseNormal // an empty close frame is answered with 1000
	}
	c.shutdown(causeClientClose, wsframe.AppendCloseFrame(nil, code, ""))
	return nil
}

// checkUTF8 refuses a message that is not UTF-8: 1007, in binary
// messages too (the JSON hub protocol is text whatever the frame type).
func checkUTF8(op wsframe.OpCode, msg []byte) error {
	if utf8.Valid(msg) {
		return nil
	}
	if op == wsframe.OpBinary {
		return errBinaryUTF8
	}
	return wsframe.ErrInvalidUTF8
}

// errBinaryUTF8 closes a connection whose binary message is not UTF-8 (1007).
var errBinaryUTF8 = protoErr(CloseInvalidPayload, "invalid UTF-8 in binary message (JSON hub protocol)")

// onMessage handles one complete WebSocket data message: the SignalR
// handshake first, then records in the connection's protocol
// (protocol.go).
func (c *Conn) onMessage(op wsframe.OpCode, msg []byte) error {
	if c.has(flRelay) {
		return c.relayMessage(op, msg) // service.go
	}
	if c.state.Load() == stHandshake {
		rest, ok, err := c.handshake(op, msg)
		if !ok {
			return err
		}
		msg = rest
	}
	return c.records(op, msg)
}
