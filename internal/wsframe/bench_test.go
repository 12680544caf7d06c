package wsframe

import (
	"bytes"
	"testing"
)

var (
	sinkBytes []byte
	sinkN     int
)

func BenchmarkParseHeader(b *testing.B) {
	hdr := AppendMaskedFrame(nil, OpText, []byte(`{"type":6}`+"\x1e"), [4]byte{1, 2, 3, 4})
	b.ReportAllocs()
	for b.Loop() {
		_, n, err := ParseHeader(hdr, 1<<20)
		if err != nil || n != 6 {
			b.Fatal(n, err)
		}
		sinkN = n
	}
}

func BenchmarkParseHeaderError(b *testing.B) {
	hdr := []byte{0xC1, 0x85, 1, 2, 3, 4}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseHeader(hdr, 1<<20); err != ErrReservedBits {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmask(b *testing.B) {
	p := bytes.Repeat([]byte("x"), 256)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		Unmask(p, [4]byte{1, 2, 3, 4})
	}
}

func BenchmarkTextFrame(b *testing.B) {
	p := bytes.Repeat([]byte("x"), 200)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = TextFrame(p)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	p := bytes.Repeat([]byte("x"), 200)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendFrame(buf[:0], OpText, p)
	}
}

func BenchmarkAppendCloseFrame(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendCloseFrame(nil, CloseNormal, "Server timeout elapsed without receiving a message from the client.")
	}
}

func BenchmarkParseFrame(b *testing.B) {
	frame := TextFrame(bytes.Repeat([]byte("x"), 200))
	b.ReportAllocs()
	for b.Loop() {
		f, n, err := ParseFrame(frame, 1<<20)
		if err != nil || n != len(frame) {
			b.Fatal(err)
		}
		sinkBytes = f.Payload
	}
}

func BenchmarkAppendClientFrame(b *testing.B) {
	p := []byte(`{"type":6}` + "\x1e")
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = AppendClientFrame(buf[:0], OpText, p)
	}
}
