package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0xA1, 0xB2, 0xC3, 0xD4}

// rawHeader builds a client frame header byte by byte: first byte b0, the
// given length encoding, the mask bit and (if masked) testMask.
func rawHeader(b0 byte, masked bool, length uint64, enc int) []byte {
	var mbit byte
	if masked {
		mbit = 0x80
	}
	var b []byte
	switch enc {
	case 7:
		b = []byte{b0, mbit | byte(length)}
	case 16:
		b = []byte{b0, mbit | 126, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(length))
	case 64:
		b = make([]byte, 10)
		b[0], b[1] = b0, mbit|127
		binary.BigEndian.PutUint64(b[2:], length)
	default:
		panic("bad encoding")
	}
	if masked {
		b = append(b, testMask[:]...)
	}
	return b
}

// wantProtocolError fails t unless err is a *ProtocolError with code.
func wantProtocolError(t *testing.T, err error, code CloseCode) {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v (%T), want *ProtocolError %d", err, err, code)
	}
	if pe.Code != code {
		t.Fatalf("close code = %d (%q), want %d", pe.Code, pe.Reason, code)
	}
}

func TestParseFrameHeaderValid(t *testing.T) {
	const max = math.MaxInt64
	for _, tc := range []struct {
		name    string
		b0      byte
		length  uint64
		enc     int
		max     int64
		wantFin bool
		wantOp  OpCode
	}{
		{"text len 0", 0x81, 0, 7, max, true, OpText},
		{"text len 1", 0x81, 1, 7, max, true, OpText},
		{"binary len 125", 0x82, 125, 7, max, true, OpBinary},
		{"text no fin", 0x01, 5, 7, max, false, OpText},
		{"continuation fin", 0x80, 7, 7, max, true, OpContinuation},
		{"continuation no fin", 0x00, 7, 7, max, false, OpContinuation},
		{"close empty", 0x88, 0, 7, max, true, OpClose},
		{"close 125", 0x88, 125, 7, max, true, OpClose},
		{"ping", 0x89, 4, 7, max, true, OpPing},
		{"pong", 0x8A, 125, 7, max, true, OpPong},
		{"16-bit 126", 0x81, 126, 16, max, true, OpText},
		{"16-bit 127", 0x82, 127, 16, max, true, OpBinary},
		{"16-bit 65535", 0x81, 65535, 16, max, true, OpText},
		{"16-bit small (non-minimal)", 0x81, 3, 16, max, true, OpText},
		{"16-bit control within 125", 0x89, 100, 16, max, true, OpPing},
		{"64-bit 65536", 0x81, 65536, 64, max, true, OpText},
		{"64-bit 4 GiB", 0x82, 1 << 32, 64, max, true, OpBinary},
		{"64-bit 1<<62", 0x82, 1 << 62, 64, max, true, OpBinary},
		{"64-bit max int63", 0x82, math.MaxInt64, 64, max, true, OpBinary},
		{"64-bit control within 125", 0x8A, 125, 64, max, true, OpPong},
		{"length == maxPayload", 0x81, 1000, 16, 1000, true, OpText},
		{"control exempt from maxPayload", 0x89, 125, 7, 10, true, OpPing},
		{"max 0 empty frame", 0x81, 0, 7, 0, true, OpText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := rawHeader(tc.b0, true, tc.length, tc.enc)
			check := func(b []byte) {
				t.Helper()
				h, n, err := ParseHeader(b, tc.max)
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if n != len(hdr) {
					t.Fatalf("n = %d, want %d", n, len(hdr))
				}
				if h.Fin != tc.wantFin || h.Op != tc.wantOp || !h.Masked || h.Mask != testMask || h.Length != int64(tc.length) {
					t.Fatalf("header = %+v, want fin=%v op=%d len=%d mask=%x", h, tc.wantFin, tc.wantOp, tc.length, testMask)
				}
				if h.Op.IsControl() != (tc.wantOp >= OpClose) {
					t.Fatalf("control() = %v for op %d", h.Op.IsControl(), tc.wantOp)
				}
			}
			check(hdr)
			// Payload (or the next frame) after the header changes nothing.
			check(append(append([]byte{}, hdr...), bytes.Repeat([]byte{0xFF}, 20)...))

			// Cross-check against gobwas/ws's reader.
			gh, err := ws.ReadHeader(bytes.NewReader(hdr))
			if err != nil {
				t.Fatalf("ws.ReadHeader: %v", err)
			}
			if gh.Fin != tc.wantFin || OpCode(gh.OpCode) != tc.wantOp || gh.Length != int64(tc.length) || gh.Mask != testMask {
				t.Fatalf("ws.ReadHeader disagrees: %+v", gh)
			}
		})
	}
}

// TestParseFrameHeaderPartial: every proper prefix of a valid header is
// "need more bytes": n == 0 and no error.
func TestParseFrameHeaderPartial(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b0     byte
		length uint64
		enc    int
	}{
		{"7-bit", 0x81, 17, 7},
		{"16-bit", 0x82, 300, 16},
		{"64-bit", 0x81, 70000, 64},
		{"control 7-bit", 0x89, 3, 7},
		{"control 16-bit", 0x88, 125, 16},
		{"control 64-bit", 0x8A, 0, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := rawHeader(tc.b0, true, tc.length, tc.enc)
			for k := 0; k < len(hdr); k++ {
				h, n, err := ParseHeader(hdr[:k], 1<<20)
				if err != nil || n != 0 {
					t.Fatalf("prefix %d/%d: n=%d err=%v h=%+v, want 0, nil", k, len(hdr), n, err, h)
				}
			}
			if _, n, err := ParseHeader(hdr, 1<<20); err != nil || n != len(hdr) {
				t.Fatalf("whole header: n=%d err=%v", n, err)
			}
		})
	}
	if _, n, err := ParseHeader(nil, 0); n != 0 || err != nil {
		t.Fatalf("nil input: n=%d err=%v", n, err)
	}
}

func TestParseFrameHeaderErrors(t *testing.T) {
	type tcase struct {
		name string
		b    []byte
		max  int64
		want *ProtocolError
	}
	cases := []tcase{
		{"RSV1", rawHeader(0x81|0x40, true, 1, 7), 1 << 20, ErrReservedBits},
		{"RSV2", rawHeader(0x81|0x20, true, 1, 7), 1 << 20, ErrReservedBits},
		{"RSV3", rawHeader(0x81|0x10, true, 1, 7), 1 << 20, ErrReservedBits},
		{"RSV all on close", rawHeader(0x88|0x70, true, 0, 7), 1 << 20, ErrReservedBits},
		{"unmasked text", rawHeader(0x81, false, 5, 7), 1 << 20, ErrUnmasked},
		{"unmasked close", rawHeader(0x88, false, 0, 7), 1 << 20, ErrUnmasked},
		{"unmasked 16-bit", rawHeader(0x82, false, 300, 16), 1 << 20, ErrUnmasked},
		{"fragmented ping", rawHeader(0x09, true, 0, 7), 1 << 20, ErrFragmentedControl},
		{"fragmented close", rawHeader(0x08, true, 2, 7), 1 << 20, ErrFragmentedControl},
		{"fragmented pong", rawHeader(0x0A, true, 2, 7), 1 << 20, ErrFragmentedControl},
		{"ping 126 (16-bit)", rawHeader(0x89, true, 126, 16), 1 << 20, ErrControlTooLong},
		{"close 65535 (16-bit)", rawHeader(0x88, true, 65535, 16), 1 << 20, ErrControlTooLong},
		{"pong 64-bit big", rawHeader(0x8A, true, 1<<40, 64), 1 << 20, ErrControlTooLong},
		{"64-bit top bit", rawHeader(0x82, true, 1<<63, 64), math.MaxInt64, ErrBadLength},
		{"64-bit all ones", rawHeader(0x82, true, math.MaxUint64, 64), math.MaxInt64, ErrBadLength},
		{"64-bit top bit on control", rawHeader(0x89, true, 1<<63|1, 64), math.MaxInt64, ErrBadLength},
		{"text over max (7-bit)", rawHeader(0x81, true, 11, 7), 10, ErrTooBig},
		{"binary over max (16-bit)", rawHeader(0x82, true, 1001, 16), 1000, ErrTooBig},
		{"text over max (64-bit)", rawHeader(0x81, true, 1<<33, 64), 1 << 32, ErrTooBig},
		{"continuation over max", rawHeader(0x80, true, 65535, 16), 65534, ErrTooBig},
		{"non-empty with max 0", rawHeader(0x81, true, 1, 7), 0, ErrTooBig},
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cases = append(cases,
			tcase{"opcode " + string("0123456789ABCDEF"[op]), rawHeader(0x80|op, true, 0, 7), 1 << 20, ErrUnknownOpcode},
			tcase{"opcode no fin " + string("0123456789ABCDEF"[op]), rawHeader(op, true, 0, 7), 1 << 20, ErrUnknownOpcode})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := ParseHeader(tc.b, tc.max)
			if n != 0 {
				t.Fatalf("n = %d on error", n)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			wantProtocolError(t, err, tc.want.Code)
		})
	}
}

// TestSentinelCodes pins the close code and text of each sentinel: the
// code closes the connection, the text is the close reason clients see.
func TestSentinelCodes(t *testing.T) {
	for _, tc := range []struct {
		err  *ProtocolError
		code CloseCode
		text string
	}{
		{ErrReservedBits, 1002, "websocket protocol error 1002: reserved bits set"},
		{ErrUnknownOpcode, 1002, "websocket protocol error 1002: unknown opcode"},
		{ErrUnmasked, 1002, "websocket protocol error 1002: unmasked client frame"},
		{ErrBadLength, 1002, "websocket protocol error 1002: invalid payload length"},
		{ErrFragmentedControl, 1002, "websocket protocol error 1002: fragmented control frame"},
		{ErrControlTooLong, 1002, "websocket protocol error 1002: control frame too long"},
		{ErrTooBig, 1009, "websocket protocol error 1009: message too big"},
		{ErrUnexpectedData, 1002, "websocket protocol error 1002: new data frame inside a fragmented message"},
		{ErrUnexpectedContinuation, 1002, "websocket protocol error 1002: continuation frame without a message"},
		{ErrInvalidUTF8, 1007, "websocket protocol error 1007: invalid UTF-8 in text message"},
		{ErrBadClosePayload, 1002, "websocket protocol error 1002: invalid close frame"},
		{ErrBadCloseCode, 1002, "websocket protocol error 1002: invalid close code"},
		{ErrCloseReasonUTF8, 1007, "websocket protocol error 1007: invalid UTF-8 in close reason"},
	} {
		if tc.err.Code != tc.code || tc.err.Error() != tc.text {
			t.Errorf("%v: code %d, want %d; text %q, want %q", tc.err, tc.err.Code, tc.code, tc.err.Error(), tc.text)
		}
	}
}

// TestParseFrameHeaderEarlyErrors: a violation is reported as soon as the
// bytes that show it are there, without waiting for the mask key.
func TestParseFrameHeaderEarlyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"RSV", []byte{0xC1, 0x85}},
		{"opcode 3", []byte{0x83, 0x85}},
		{"unmasked", []byte{0x81, 0x05}},
		{"fragmented ping", []byte{0x09, 0x80}},
		{"ping 200 (16-bit)", []byte{0x89, 0x80 | 126, 0, 200}},
		{"64-bit top bit", []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{"too big, 16-bit", []byte{0x81, 0x80 | 126, 0xFF, 0xFF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := ParseHeader(tc.b, 1000)
			if n != 0 {
				t.Fatalf("n = %d", n)
			}
			if err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// naiveUnmask is the RFC 6455 §5.3 definition.
func naiveUnmask(p []byte, key [4]byte, off int) {
	for i := range p {
		p[i] ^= key[(off+i)%4]
	}
}

func TestUnmask(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 40; n++ {
		for align := 0; align < 8; align++ {
			key := [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
			buf := make([]byte, align+n+8)
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			orig := append([]byte(nil), buf...)
			p := buf[align : align+n]

			Unmask(p, key)

			ref := append([]byte(nil), orig[align:align+n]...)
			ws.Cipher(ref, key, 0)
			if !bytes.Equal(p, ref) {
				t.Fatalf("len %d align %d: unmask != ws.Cipher\n got %x\nwant %x", n, align, p, ref)
			}
			naive := append([]byte(nil), orig[align:align+n]...)
			naiveUnmask(naive, key, 0)
			if !bytes.Equal(p, naive) {
				t.Fatalf("len %d align %d: unmask != RFC definition", n, align)
			}
			if !bytes.Equal(buf[:align], orig[:align]) || !bytes.Equal(buf[align+n:], orig[align+n:]) {
				t.Fatalf("len %d align %d: bytes outside the payload changed", n, align)
			}
			Unmask(p, key)
			if !bytes.Equal(buf, orig) {
				t.Fatalf("len %d align %d: round trip differs", n, align)
			}
			// A payload unmasked in two pieces with ws.Cipher's offset
			// equals one unmask of the whole (what a split read would do).
			for cut := 0; cut <= n; cut++ {
				two := append([]byte(nil), orig[align:align+n]...)
				ws.Cipher(two[:cut], key, 0)
				ws.Cipher(two[cut:], key, cut)
				if !bytes.Equal(two, ref) {
					t.Fatalf("len %d cut %d: split cipher differs", n, cut)
				}
			}
		}
	}
}
