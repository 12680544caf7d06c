package conn

import (
	"encoding/binary"
	"strings"

	"github.com/gobwas/ws"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation byte = 0x0
	opText         byte = 0x1
	opBinary       byte = 0x2
	opClose        byte = 0x8
	opPing         byte = 0x9
	opPong         byte = 0xA
)

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin    bool
	op     byte
	masked bool
	mask   [4]byte
	length int64
}

func (h *frameHeader) control() bool { return h.op&0x8 != 0 }

// parseFrameHeader parses a client-to-server frame header from b without
// blocking. It returns the header and its size, n == 0 if b does not yet
// hold a whole header, or a *ProtocolError for a frame that must close the
// connection. maxPayload bounds a data frame's payload (CloseTooBig).
func parseFrameHeader(b []byte, maxPayload int64) (h frameHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.fin = b0&0x80 != 0
	if b0&0x70 != 0 {
		return h, 0, protoErr(CloseProtocolError, "reserved bits set")
	}
	h.op = b0 & 0x0F
	switch h.op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
	default:
		return h, 0, protoErr(CloseProtocolError, "unknown opcode")
	}
	h.masked = b1&0x80 != 0
	if !h.masked {
		return h, 0, protoErr(CloseProtocolError, "unmasked client frame")
	}
	n = 2
	switch l := b1 & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return h, 0, protoErr(CloseProtocolError, "invalid payload length")
		}
		h.length = int64(v)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.control() {
		if !h.fin {
			return h, 0, protoErr(CloseProtocolError, "fragmented control frame")
		}
		if h.length > 125 {
			return h, 0, protoErr(CloseProtocolError, "control frame too long")
		}
	} else if h.length > maxPayload {
		return h, 0, protoErr(CloseTooBig, "message too big")
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.mask[:], b[n:n+4])
	return h, n + 4, nil
}

// unmask XORs payload with the mask key, in place (gobwas/ws's Cipher).
func unmask(payload []byte, key [4]byte) { ws.Cipher(payload, key, 0) }

// closeFramePayload builds a close frame body: status code and reason
// (truncated to fit the 125-byte control frame limit).
func closeFramePayload(code CloseCode, reason string) []byte {
	if len(reason) > 123 {
		reason = strings.ToValidUTF8(reason[:123], "") // drop a cut rune
	}
	return ws.NewCloseFrameBody(ws.StatusCode(code), reason)
}
