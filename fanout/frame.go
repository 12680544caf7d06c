package fanout

// TextFrame encodes payload once into a complete, unmasked, final
// WebSocket text frame (server to client). The result is shared by every
// recipient and must never be modified.
func TextFrame(payload []byte) []byte {
	return AppendFrame(nil, OpText, payload)
}

// WebSocket opcodes used on the outbound path.
const (
	OpText  byte = 0x1
	OpClose byte = 0x8
	OpPing  byte = 0x9
	OpPong  byte = 0xA
)

// AppendFrame appends a final, unmasked frame with opcode op and payload to
// dst and returns the extended slice.
func AppendFrame(dst []byte, op byte, payload []byte) []byte {
	n := len(payload)
	var hdr [10]byte
	hdr[0] = 0x80 | op
	h := 2
	switch {
	case n < 126:
		hdr[1] = byte(n)
	case n <= 0xFFFF:
		hdr[1] = 126
		hdr[2], hdr[3] = byte(n>>8), byte(n)
		h = 4
	default:
		hdr[1] = 127
		for i := 0; i < 8; i++ {
			hdr[9-i] = byte(uint64(n) >> (8 * i))
		}
		h = 10
	}
	if dst == nil {
		dst = make([]byte, 0, h+n)
	}
	dst = append(dst, hdr[:h]...)
	return append(dst, payload...)
}
