package conn

import (
	"unicode/utf8"

	"github.com/edgeplane/edgeplane/internal/hubproto"
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
	c.shutdown(causeClientClose, wsframe.AppendCloseFrame(nil, code, ""))
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
