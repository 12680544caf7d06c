package wsframe

import (
	"encoding/binary"

	"github.com/gobwas/ws"
)

// OpCode is a frame's opcode (RFC 6455 §5.2).
type OpCode byte

// Opcodes.
const (
	OpContinuation OpCode = 0x0
	OpText         OpCode = 0x1
	OpBinary       OpCode = 0x2
	OpClose        OpCode = 0x8
	OpPing         OpCode = 0x9
	OpPong         OpCode = 0xA
)

// IsControl reports whether op is a control opcode (close, ping, pong).
func (op OpCode) IsControl() bool { return op&0x8 != 0 }

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Op     OpCode
	Masked bool
	Mask   [4]byte
	Length int64
}

// ParseHeader parses a client-to-server frame header from b without
// blocking. It returns the header and its size, n == 0 if b does not yet
// hold a whole header, or one of the *ProtocolError sentinels for a frame
// that must close the connection; a violation is reported as soon as the
// bytes that show it are there. maxPayload bounds a data frame's payload
// (ErrTooBig); control frames are bounded by RFC 6455's 125 bytes.
func ParseHeader(b []byte, maxPayload int64) (h Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	if b0&0x70 != 0 {
		return h, 0, ErrReservedBits
	}
	h.Op = OpCode(b0 & 0x0F)
	switch h.Op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
	default:
		return h, 0, ErrUnknownOpcode
	}
	h.Masked = b1&0x80 != 0
	if !h.Masked {
		return h, 0, ErrUnmasked
	}
	n = 2
	switch l := b1 & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return h, 0, ErrBadLength
		}
		h.Length = int64(v)
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Op.IsControl() {
		if !h.Fin {
			return h, 0, ErrFragmentedControl
		}
		if h.Length > 125 {
			return h, 0, ErrControlTooLong
		}
	} else if h.Length > maxPayload {
		return h, 0, ErrTooBig
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.Mask[:], b[n:n+4])
	return h, n + 4, nil
}

// Unmask XORs payload with the mask key, in place (gobwas/ws's Cipher,
// word at a time). Masking and unmasking are the same operation.
func Unmask(payload []byte, key [4]byte) { ws.Cipher(payload, key, 0) }
