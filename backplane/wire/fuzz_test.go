package wire

import (
	"bytes"
	"errors"
	"testing"
)

func addVectorSeeds(f *testing.F) {
	v := loadVectors(f)
	for _, a := range v.Ack {
		f.Add(unhex(f, a.Hex))
	}
	for _, g := range v.GroupCommand {
		f.Add(unhex(f, g.Hex))
	}
	for _, i := range v.Invocation {
		f.Add(unhex(f, i.Hex))
	}
	for _, r := range v.Realistic {
		f.Add(unhex(f, r.Hex))
	}
}

// FuzzReadInvocation: never panics; anything accepted re-encodes to a
// payload that decodes to the same values.
func FuzzReadInvocation(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, js, err := ReadInvocation(b, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		ex2, js2, err := ReadInvocation(AppendInvocation(nil, ex, js), nil)
		if err != nil || !bytes.Equal(js, js2) || len(ex) != len(ex2) {
			t.Fatalf("round trip: %q %q %v, was %q %q", ex2, js2, err, ex, js)
		}
		for i := range ex {
			if ex[i] != ex2[i] {
				t.Fatalf("excluded[%d] = %q, was %q", i, ex2[i], ex[i])
			}
		}
	})
}

func FuzzReadGroupCommand(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		var c GroupCommand
		if err := ReadGroupCommand(b, &c); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		var d GroupCommand
		if err := ReadGroupCommand(AppendGroupCommand(nil, &c), &d); err != nil || d != c {
			t.Fatalf("round trip: %+v %v, was %+v", d, err, c)
		}
	})
}

func FuzzReadAck(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ReadAck(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if id2, err := ReadAck(AppendAck(nil, id)); err != nil || id2 != id {
			t.Fatalf("round trip %d: %d %v", id, id2, err)
		}
	})
}

func BenchmarkReadInvocation(b *testing.B) {
	v := loadVectors(b)
	p := unhex(b, v.Realistic[1].Hex)
	ex := make([]string, 0, 8)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		var err error
		if ex, _, err = ReadInvocation(p, ex[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
