package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Fuzz targets; seed corpora are the f.Add calls plus testdata/fuzz/<name>.
// Run one with: go test -run '^$' -fuzz '^FuzzFrameHeader$' -fuzztime 20s ./internal/wsframe/

func FuzzFrameHeader(f *testing.F) {
	f.Add(rawHeader(0x81, true, 5, 7), int64(1<<20))
	f.Add(rawHeader(0x82, true, 300, 16), int64(1<<20))
	f.Add(rawHeader(0x81, true, 70000, 64), int64(1<<20))
	f.Add(rawHeader(0x81, true, 1<<63, 64), int64(math.MaxInt64))
	f.Add(rawHeader(0x89, true, 200, 16), int64(1<<20))
	f.Add(rawHeader(0x09, true, 0, 7), int64(0))
	f.Add(rawHeader(0xC1, true, 1, 7), int64(10))
	f.Add(rawHeader(0x81, false, 1, 7), int64(10))
	f.Add(rawHeader(0x8F, true, 1, 7), int64(10))
	f.Add(rawHeader(0x88, true, 2, 7)[:5], int64(10))
	f.Add([]byte{}, int64(0))
	f.Add([]byte{0x81}, int64(-1))
	f.Fuzz(func(t *testing.T, b []byte, max int64) {
		h, n, err := ParseHeader(b, max)
		if err != nil {
			if n != 0 {
				t.Fatalf("n = %d with error %v", n, err)
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ProtocolError", err)
			}
			switch pe.Code {
			case CloseProtocolError:
			case CloseTooBig:
				if len(b) < 1 || b[0]&0x08 != 0 {
					t.Fatalf("1009 for a control frame %x", b)
				}
			default:
				t.Fatalf("unexpected close code %d", pe.Code)
			}
			return
		}
		// Bytes the header needs, from the first two bytes.
		need := 2
		if len(b) >= 2 {
			need = 6
			switch b[1] & 0x7F {
			case 126:
				need = 8
			case 127:
				need = 14
			}
		}
		if n == 0 {
			if len(b) >= need {
				t.Fatalf("n = 0 and no error for %d bytes, a whole %d-byte header: %x", len(b), need, b)
			}
			return
		}
		if n != need || n > len(b) {
			t.Fatalf("n = %d, want %d (input %d bytes)", n, need, len(b))
		}
		// The header agrees with the bytes.
		if b[0]&0x70 != 0 || b[1]&0x80 == 0 {
			t.Fatalf("accepted RSV bits or an unmasked frame: %x", b[:n])
		}
		if h.Fin != (b[0]&0x80 != 0) || h.Op != OpCode(b[0]&0x0F) || !h.Masked || !bytes.Equal(h.Mask[:], b[n-4:n]) {
			t.Fatalf("header %+v disagrees with %x", h, b[:n])
		}
		var length uint64
		switch n {
		case 6:
			length = uint64(b[1] & 0x7F)
		case 8:
			length = uint64(binary.BigEndian.Uint16(b[2:4]))
		case 14:
			length = binary.BigEndian.Uint64(b[2:10])
		}
		if length > math.MaxInt64 || h.Length != int64(length) {
			t.Fatalf("length %d, bytes say %d", h.Length, length)
		}
		switch h.Op {
		case OpContinuation, OpText, OpBinary:
			if h.Length > max {
				t.Fatalf("data frame of %d bytes over max %d accepted", h.Length, max)
			}
		case OpClose, OpPing, OpPong:
			if !h.Fin || h.Length > 125 {
				t.Fatalf("bad control frame accepted: %+v", h)
			}
		default:
			t.Fatalf("opcode %d accepted", h.Op)
		}
		gh, gerr := ws.ReadHeader(bytes.NewReader(b[:n]))
		if gerr != nil || gh.Fin != h.Fin || OpCode(gh.OpCode) != h.Op || gh.Length != h.Length || gh.Mask != h.Mask {
			t.Fatalf("ws.ReadHeader disagrees: %+v %v, ours %+v", gh, gerr, h)
		}
		// Every prefix of an accepted header means "need more bytes".
		for k := 0; k < n; k++ {
			if _, pn, perr := ParseHeader(b[:k], max); pn != 0 || perr != nil {
				t.Fatalf("prefix %d of an accepted header: n=%d err=%v", k, pn, perr)
			}
		}
	})
}

// FuzzFrameRoundTrip: what the writers produce, the readers read back:
// a masked client frame through ParseHeader and Unmask, an unmasked server
// frame through ParseFrame, and a close frame through ParseClosePayload.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add(byte(1), []byte("{\"type\":6}\x1e"), uint32(0x01020304), uint16(1000), "bye")
	f.Add(byte(2), bytes.Repeat([]byte{0xFF}, 300), uint32(0), uint16(4000), "")
	f.Add(byte(8), []byte{}, uint32(0xFFFFFFFF), uint16(1001), string(bytes.Repeat([]byte("é"), 80)))
	f.Fuzz(func(t *testing.T, op byte, payload []byte, mask uint32, code uint16, reason string) {
		o := OpCode(op & 0x0F)
		var key [4]byte
		binary.BigEndian.PutUint32(key[:], mask)
		cf := AppendMaskedFrame(nil, o, payload, key)
		h, n, err := ParseHeader(cf, math.MaxInt64)
		switch {
		case o != OpContinuation && o != OpText && o != OpBinary && !(o.IsControl() && o <= OpPong):
			if !errors.Is(err, ErrUnknownOpcode) {
				t.Fatalf("opcode %d: err %v", o, err)
			}
			return
		case o.IsControl() && len(payload) > 125:
			if !errors.Is(err, ErrControlTooLong) {
				t.Fatalf("control of %d bytes: err %v", len(payload), err)
			}
			return
		}
		if err != nil || n == 0 || h.Op != o || !h.Fin || h.Mask != key || h.Length != int64(len(payload)) || n+len(payload) != len(cf) {
			t.Fatalf("client frame: %+v n=%d err=%v", h, n, err)
		}
		p := cf[n:]
		Unmask(p, h.Mask)
		if !bytes.Equal(p, payload) {
			t.Fatal("unmask does not restore the payload")
		}
		sf := AppendFrame(nil, o, payload)
		fr, fn, err := ParseFrame(sf, math.MaxInt64)
		if err != nil || fn != len(sf) || fr.Op != o || !fr.Fin || !bytes.Equal(fr.Payload, payload) {
			t.Fatalf("server frame: %+v n=%d err=%v", fr, fn, err)
		}
		cl := AppendCloseFrame(nil, CloseCode(code), reason)
		fr, fn, err = ParseFrame(cl, 125)
		if err != nil || fn != len(cl) || fr.Op != OpClose || len(fr.Payload) > 125 {
			t.Fatalf("close frame %x: %v", cl, err)
		}
		c, r, err := ParseClosePayload(fr.Payload)
		want := reason
		if len(want) > MaxCloseReason {
			want = strings.ToValidUTF8(want[:MaxCloseReason], "")
		}
		valid := CloseCode(code).validOnWire()
		switch {
		case err == nil:
			if !valid || c != CloseCode(code) || string(r) != want {
				t.Fatalf("close %d %q parsed as %d %q, want %q", code, reason, c, r, want)
			}
		case errors.Is(err, ErrCloseReasonUTF8):
			if utf8.ValidString(want) {
				t.Fatalf("close %d %q: sent reason %q is valid UTF-8", code, reason, want)
			}
		case errors.Is(err, ErrBadCloseCode):
			if valid || !utf8.ValidString(want) {
				t.Fatalf("code %d rejected (reason %q)", code, want)
			}
		default:
			t.Fatalf("close %d %q: %v", code, reason, err)
		}
	})
}
