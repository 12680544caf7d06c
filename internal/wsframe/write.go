package wsframe

import (
	"crypto/rand"
	"encoding/binary"
	"unicode/utf8"
)

// appendHeader appends a final frame's header: opcode op, payload length
// n, the mask bit if masked (the key is the caller's to append).
func appendHeader(dst []byte, op OpCode, n int, masked bool) []byte {
	var m byte
	if masked {
		m = 0x80
	}
	if n < 126 {
		return append(dst, 0x80|byte(op), m|byte(n))
	}
	if n <= 0xFFFF {
		return append(dst, 0x80|byte(op), m|126, byte(n>>8), byte(n))
	}
	dst = append(dst, 0x80|byte(op), m|127)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

// headerSize is the size of an unmasked header for an n-byte payload.
func headerSize(n int) int {
	if n < 126 {
		return 2
	}
	if n <= 0xFFFF {
		return 4
	}
	return 10
}

// AppendFrame appends a final, unmasked (server-to-client) frame with
// opcode op and payload to dst and returns the extended slice. With a nil
// dst it allocates exactly the frame's size.
func AppendFrame(dst []byte, op OpCode, payload []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, headerSize(len(payload))+len(payload))
	}
	dst = appendHeader(dst, op, len(payload), false)
	return append(dst, payload...)
}

// TextFrame encodes payload once into a complete, unmasked, final text
// frame. The result is meant to be shared by every recipient and must
// never be modified.
func TextFrame(payload []byte) []byte { return AppendFrame(nil, OpText, payload) }

// BinaryFrame is TextFrame for binary frames (binary hub protocols such as
// MessagePack).
func BinaryFrame(payload []byte) []byte { return AppendFrame(nil, OpBinary, payload) }

// Precompiled frames, encoded once. Shared: never modify them.
var (
	// CompiledPing is an empty ping frame.
	CompiledPing = AppendFrame(nil, OpPing, nil)
	// CompiledPong is an empty pong frame.
	CompiledPong = AppendFrame(nil, OpPong, nil)
	// CompiledClose is a close frame without a body (no status code).
	CompiledClose = AppendFrame(nil, OpClose, nil)
	// CompiledCloseNormal is a close frame with code 1000 and no reason.
	CompiledCloseNormal = AppendCloseFrame(nil, CloseNormal, "")
)

// MaxCloseReason is the longest close reason that fits a control frame's
// 125 bytes after the 2-byte code.
const MaxCloseReason = 123

// AppendClosePayload appends a close frame body to dst: the status code
// and reason. A reason over MaxCloseReason bytes is cut to that length and
// its invalid UTF-8 dropped, so that a rune cut in half does not make the
// body invalid (RFC 6455 §5.5.1).
func AppendClosePayload(dst []byte, code CloseCode, reason string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	if len(reason) <= MaxCloseReason {
		return append(dst, reason...)
	}
	// As strings.ToValidUTF8(reason[:123], ""), without the copy.
	reason = reason[:MaxCloseReason]
	for i := 0; i < len(reason); {
		r, w := utf8.DecodeRuneInString(reason[i:])
		if r == utf8.RuneError && w == 1 {
			i++
			continue
		}
		dst = append(dst, reason[i:i+w]...)
		i += w
	}
	return dst
}

// AppendCloseFrame appends a whole close frame (server to client) with
// code and reason, the reason cut as AppendClosePayload does.
func AppendCloseFrame(dst []byte, code CloseCode, reason string) []byte {
	n := 2 + min(len(reason), MaxCloseReason)
	if dst == nil {
		dst = make([]byte, 0, 2+n)
	}
	at := len(dst)
	dst = appendHeader(dst, OpClose, n, false)
	dst = AppendClosePayload(dst, code, reason)
	// Cutting invalid UTF-8 may have shortened the body.
	dst[at+1] = byte(len(dst) - at - 2)
	return dst
}

// ParseClosePayload reads a received close frame's body: the code
// (CloseNoStatus for an empty body) and the reason, which aliases p. A
// one-byte body, a code a peer may not send or a reason that is not UTF-8
// is an error (ErrBadClosePayload, ErrBadCloseCode, ErrCloseReasonUTF8).
func ParseClosePayload(p []byte) (code CloseCode, reason []byte, err error) {
	switch len(p) {
	case 0:
		return CloseNoStatus, nil, nil
	case 1:
		return 0, nil, ErrBadClosePayload
	}
	code = CloseCode(binary.BigEndian.Uint16(p))
	if !utf8.Valid(p[2:]) {
		return code, nil, ErrCloseReasonUTF8
	}
	if !code.validOnWire() {
		return code, nil, ErrBadCloseCode
	}
	return code, p[2:], nil
}

// NewMask returns a random mask key (crypto/rand), as a client must use
// for every frame (RFC 6455 §5.3).
func NewMask() [4]byte {
	var k [4]byte
	_, _ = rand.Read(k[:])
	return k
}

// AppendMaskedFrame appends a final, masked (client-to-server) frame with
// opcode op and payload, masked with key, to dst.
func AppendMaskedFrame(dst []byte, op OpCode, payload []byte, key [4]byte) []byte {
	dst = appendHeader(dst, op, len(payload), true)
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	Unmask(dst[start:], key)
	return dst
}

// AppendClientFrame appends a final client frame masked with a fresh
// random key (NewMask).
func AppendClientFrame(dst []byte, op OpCode, payload []byte) []byte {
	return AppendMaskedFrame(dst, op, payload, NewMask())
}
