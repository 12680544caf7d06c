package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// TestAppendFrameHeaderSizes: the length encoding switches at 126 and
// 65536 bytes, and the frame is exactly header + payload.
func TestAppendFrameHeaderSizes(t *testing.T) {
	for _, tc := range []struct {
		n    int
		head []byte
	}{
		{0, []byte{0x81, 0}},
		{1, []byte{0x81, 1}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xFF, 0xFF}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{70000, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70}},
	} {
		payload := bytes.Repeat([]byte{'p'}, tc.n)
		f := TextFrame(payload)
		if !bytes.Equal(f[:len(tc.head)], tc.head) || !bytes.Equal(f[len(tc.head):], payload) {
			t.Fatalf("n=%d: header %x, want %x (frame %d bytes)", tc.n, f[:min(len(f), 10)], tc.head, len(f))
		}
		if cap(f) != len(f) {
			t.Fatalf("n=%d: cap %d, len %d: TextFrame must allocate exactly", tc.n, cap(f), len(f))
		}
		b := BinaryFrame(payload)
		if b[0] != 0x82 || !bytes.Equal(b[1:], f[1:]) {
			t.Fatalf("n=%d: binary frame %x differs from the text frame but for the opcode", tc.n, b[:2])
		}
		// gobwas/ws agrees on the header.
		gh, err := ws.ReadHeader(bytes.NewReader(f))
		if err != nil || !gh.Fin || gh.OpCode != ws.OpText || gh.Masked || gh.Length != int64(tc.n) {
			t.Fatalf("n=%d: ws.ReadHeader %+v %v", tc.n, gh, err)
		}
	}
}

func TestAppendFrameAppends(t *testing.T) {
	dst := append(make([]byte, 0, 64), "keep"...)
	out := AppendFrame(dst, OpPong, []byte("hi"))
	if string(out) != "keep\x8a\x02hi" {
		t.Fatalf("got %q", out)
	}
	if &out[0] != &dst[:1][0] {
		t.Fatal("AppendFrame reallocated a buffer with room")
	}
	out = AppendFrame(out, OpClose, []byte{0x03, 0xE8})
	if string(out) != "keep\x8a\x02hi\x88\x02\x03\xe8" {
		t.Fatalf("second frame: %q", out)
	}
}

func TestAppendMaskedFrame(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	// Byte-exact: header with the mask bit, the key, payload XOR key.
	got := AppendMaskedFrame(nil, OpText, []byte("abcde"), key)
	want := []byte{0x81, 0x85, 1, 2, 3, 4, 'a' ^ 1, 'b' ^ 2, 'c' ^ 3, 'd' ^ 4, 'e' ^ 1}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i)
		}
		orig := append([]byte(nil), payload...)
		frame := AppendClientFrame(nil, OpBinary, payload)
		if !bytes.Equal(payload, orig) {
			t.Fatalf("n=%d: AppendClientFrame modified its payload", n)
		}
		// The server's parser accepts it, and unmasking restores the payload.
		h, hn, err := ParseHeader(frame, 1<<20)
		if err != nil || hn == 0 || !h.Fin || h.Op != OpBinary || !h.Masked || h.Length != int64(n) || hn+n != len(frame) {
			t.Fatalf("n=%d: ParseHeader %+v n=%d err=%v (frame %d bytes)", n, h, hn, err, len(frame))
		}
		p := append([]byte(nil), frame[hn:]...)
		Unmask(p, h.Mask)
		if !bytes.Equal(p, payload) {
			t.Fatalf("n=%d: unmasked payload differs", n)
		}
		// ParseFrame does the same in one step, in place.
		f, fn, err := ParseFrame(append([]byte(nil), frame...), 1<<20)
		if err != nil || fn != len(frame) || !f.Fin || f.Op != OpBinary || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("n=%d: ParseFrame fin %v op %d n %d/%d err %v", n, f.Fin, f.Op, fn, len(frame), err)
		}
		// Every proper prefix is "need more bytes".
		for cut := 0; cut < len(frame); cut += 1 + len(frame)/7 {
			if _, k, err := ParseFrame(append([]byte(nil), frame[:cut]...), 1<<20); k != 0 || err != nil {
				t.Fatalf("n=%d cut=%d: n=%d err=%v, want 0, nil", n, cut, k, err)
			}
		}
	}
	if a, b := NewMask(), NewMask(); a == b && NewMask() == a {
		t.Fatal("NewMask returns the same key three times")
	}
}

// TestParseServerFrames: two unmasked server frames back to back, a text
// frame with two records and a ping, as the load client reads them.
func TestParseServerFrames(t *testing.T) {
	in := []byte{0x81, 0x16}
	in = append(in, "{\"type\":6}\x1e{\"type\":6}\x1e"...)
	in = append(in, 0x89, 0x02, 'h', 'i')
	f, n, err := ParseFrame(in, 1<<20)
	if err != nil || f.Op != OpText || !f.Fin || n != 24 || string(f.Payload) != "{\"type\":6}\x1e{\"type\":6}\x1e" {
		t.Fatalf("first frame: op %d n %d payload %q err %v", f.Op, n, f.Payload, err)
	}
	f, n2, err := ParseFrame(in[n:], 1<<20)
	if err != nil || f.Op != OpPing || string(f.Payload) != "hi" || n2 != 4 {
		t.Fatalf("ping frame: op %d payload %q err %v", f.Op, f.Payload, err)
	}
	// A non-final frame, 16- and 64-bit lengths.
	for _, size := range []int{0, 200, 70000} {
		frame := AppendFrame(nil, OpBinary, bytes.Repeat([]byte{7}, size))
		frame[0] &^= 0x80
		f, k, err := ParseFrame(frame, 1<<20)
		if err != nil || f.Fin || f.Op != OpBinary || len(f.Payload) != size || k != len(frame) {
			t.Fatalf("size %d: fin %v op %d len %d n %d err %v", size, f.Fin, f.Op, len(f.Payload), k, err)
		}
	}
}

func TestParseFrameErrors(t *testing.T) {
	big := binary.BigEndian.AppendUint64([]byte{0x82, 127}, 1<<63)
	for _, tc := range []struct {
		name string
		b    []byte
		max  int64
		want error
	}{
		{"reserved bits", []byte{0xF1, 0x00}, 1 << 20, ErrReservedBits},
		{"RSV1 (compressed)", []byte{0xC1, 0x00}, 1 << 20, ErrReservedBits},
		{"64-bit top bit", big, 1 << 62, ErrBadLength},
		{"over max 7-bit", []byte{0x81, 11}, 10, ErrTooBig},
		{"over max 16-bit, before the payload", []byte{0x82, 126, 0x01, 0x00}, 255, ErrTooBig},
		{"over max masked", []byte{0x81, 0x80 | 11, 1, 2, 3, 4}, 10, ErrTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := ParseFrame(tc.b, tc.max)
			if n != 0 || !errors.Is(err, tc.want) {
				t.Fatalf("n=%d err=%v, want %v", n, err, tc.want)
			}
		})
	}
	// Within the limit exactly.
	if _, n, err := ParseFrame(append([]byte{0x81, 10}, make([]byte, 10)...), 10); err != nil || n != 12 {
		t.Fatalf("payload == max: n=%d err=%v", n, err)
	}
}
