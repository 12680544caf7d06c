package serviceproto

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func addSeeds(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(unhex(f, v.Hex))
	}
}

// FuzzParse: Parse never panics and fails only with ErrMalformed; what it
// accepts writes a current layout that parses to a message which writes
// the same bytes again (the writer's output is a fixed point).
//
//	go test -run XXX -fuzz FuzzParse -fuzztime 30s ./internal/serviceproto/
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body)
		if err != nil {
			if m != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse: %#v, %v", m, err)
			}
			return
		}
		b1 := m.AppendBody(nil)
		m2, err := Parse(b1)
		if err != nil {
			t.Fatalf("rewritten %T does not parse: %v\n in  %x\n out %x", m, err, body, b1)
		}
		if m2.Type() != m.Type() {
			t.Fatalf("type %s became %s", m.Type(), m2.Type())
		}
		if b2 := m2.AppendBody(nil); !bytes.Equal(b1, b2) {
			t.Fatalf("not a fixed point:\n %x\n %x", b1, b2)
		}
		// Writing the message must not have changed it.
		m3, _ := Parse(body)
		if !reflect.DeepEqual(m, m3) {
			t.Fatalf("AppendBody changed the message: %#v, was %#v", m, m3)
		}
	})
}

// FuzzSplitter: however a stream of messages is cut into pieces, the
// Splitter returns the same bodies; on a broken stream it fails with one
// of its sentinels and never holds more than the limit.
func FuzzSplitter(f *testing.F) {
	var stream []byte
	for _, v := range loadVectors(f) {
		stream = append(stream, unhex(f, v.FramedHex)...)
	}
	f.Add(stream[:200], []byte{1, 2, 3})
	f.Add(stream, []byte{7})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, []byte{1})
	f.Add([]byte{0x05, 0x91, 0x03}, []byte{2, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		const limit = 1 << 10
		whole := Splitter{MaxMessageBytes: limit}
		var want [][]byte
		werr := whole.Feed(data, func(b []byte) error { want = append(want, bytes.Clone(b)); return nil })
		pieces := Splitter{MaxMessageBytes: limit}
		var got [][]byte
		var gerr error
		off := 0
		for i := 0; off < len(data) && gerr == nil; i++ {
			n := len(data) - off
			if len(cuts) > 0 {
				n = min(n, int(cuts[i%len(cuts)])+1)
			}
			gerr = pieces.Feed(data[off:off+n], func(b []byte) error { got = append(got, bytes.Clone(b)); return nil })
			off += n
			if pieces.Buffered() > limit+maxPrefix {
				t.Fatalf("holds %d bytes, limit %d", pieces.Buffered(), limit)
			}
		}
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("whole: %v, in pieces: %v", werr, gerr)
		}
		for _, err := range []error{werr, gerr} {
			if err != nil && !errors.Is(err, ErrLengthPrefix) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not a sentinel", err)
			}
		}
		if werr == nil {
			if len(got) != len(want) {
				t.Fatalf("%d messages in pieces, %d whole", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("message %d differs", i)
				}
			}
			if whole.Buffered() != pieces.Buffered() {
				t.Fatalf("left over: %d whole, %d in pieces", whole.Buffered(), pieces.Buffered())
			}
		}
	})
}
