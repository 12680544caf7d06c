package wsframe

import "encoding/binary"

// Frame is one whole frame; Payload aliases the parsed input.
type Frame struct {
	Fin     bool
	Op      OpCode
	Payload []byte
}

// ParseFrame parses one whole frame from the start of b, in either
// direction: it is the client's reader of server frames, and masked frames
// (as a client sends) are unmasked in place. It returns the frame and the
// bytes it took, n == 0 while b holds only part of a frame, ErrReservedBits
// or ErrBadLength for a frame nobody may send, and ErrTooBig for a payload
// over maxPayload. Unlike ParseHeader it checks nothing else (opcodes,
// control frame rules): a client that trusts its server needs no more.
func ParseFrame(b []byte, maxPayload int64) (f Frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	if b[0]&0x70 != 0 {
		return f, 0, ErrReservedBits
	}
	f.Fin, f.Op = b[0]&0x80 != 0, OpCode(b[0]&0x0F)
	masked := b[1]&0x80 != 0
	length := uint64(b[1] & 0x7F)
	h := 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		length, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		length, h = binary.BigEndian.Uint64(b[2:]), 10
		if length>>63 != 0 {
			return f, 0, ErrBadLength
		}
	}
	if int64(length) > maxPayload {
		return f, 0, ErrTooBig
	}
	var key [4]byte
	if masked {
		if len(b) < h+4 {
			return f, 0, nil
		}
		copy(key[:], b[h:h+4])
		h += 4
	}
	if uint64(len(b)-h) < length {
		return f, 0, nil
	}
	n = h + int(length)
	f.Payload = b[h:n]
	if masked {
		Unmask(f.Payload, key)
	}
	return f, n, nil
}
