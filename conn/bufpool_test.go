package conn

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
)

func TestGetBufClasses(t *testing.T) {
	for _, tc := range []struct {
		n, wantCap int
	}{
		{0, 512}, {1, 512}, {511, 512}, {512, 512},
		{513, 4 << 10}, {4 << 10, 4 << 10},
		{4<<10 + 1, 16 << 10}, {16 << 10, 16 << 10},
		{16<<10 + 1, 64 << 10}, {64 << 10, 64 << 10},
		{64<<10 + 1, 64<<10 + 1}, {1 << 20, 1 << 20},
	} {
		// Twice: once possibly fresh, once after a put (from the pool).
		for round := 0; round < 2; round++ {
			b := getBuf(tc.n)
			if len(b) != 0 || cap(b) != tc.wantCap {
				t.Fatalf("getBuf(%d) round %d: len %d cap %d, want 0 and %d", tc.n, round, len(b), cap(b), tc.wantCap)
			}
			putBuf(append(b, 1, 2, 3))
		}
	}
}

func TestPutBufOddSizes(t *testing.T) {
	for _, odd := range [][]byte{
		nil,
		{},
		make([]byte, 0, 1),
		make([]byte, 0, 511),
		make([]byte, 0, 513),
		make([]byte, 100, 1000),
		make([]byte, 0, 64<<10+1),
		make([]byte, 0, 1<<20),
		make([]byte, 512, 1024)[10:], // a sub-slice: cap 1014
	} {
		putBuf(odd)
	}
	for i := 0; i < 100; i++ {
		for _, n := range []int{0, 100, 600, 5000, 20000, 60000} {
			b := getBuf(n)
			if len(b) != 0 {
				t.Fatalf("getBuf(%d) has len %d", n, len(b))
			}
			switch cap(b) {
			case 512, 4 << 10, 16 << 10, 64 << 10:
			default:
				t.Fatalf("getBuf(%d) returned an odd-sized buffer, cap %d", n, cap(b))
			}
			if cap(b) < n {
				t.Fatalf("getBuf(%d) cap %d", n, cap(b))
			}
		}
	}
	// A full-length class buffer comes back empty.
	full := make([]byte, 512)
	for i := range full {
		full[i] = 0xEE
	}
	putBuf(full)
	if b := getBuf(10); len(b) != 0 {
		t.Fatalf("pooled buffer came back with len %d", len(b))
	}
}

func TestAppendPooled(t *testing.T) {
	t.Run("nil plus nothing", func(t *testing.T) {
		if b := appendPooled(nil, nil); len(b) != 0 {
			t.Fatalf("len %d", len(b))
		}
	})
	t.Run("fits: same backing array", func(t *testing.T) {
		b := append(getBuf(10), "abc"...)
		nb := appendPooled(b, []byte("def"))
		if string(nb) != "abcdef" || &nb[0] != &b[0] {
			t.Fatalf("got %q (moved: %v)", nb, &nb[0] != &b[0])
		}
		putBuf(nb)
	})
	t.Run("fills to the last byte: same backing array", func(t *testing.T) {
		b := append(getBuf(10), "abc"...)
		nb := appendPooled(b, make([]byte, cap(b)-len(b)))
		if len(nb) != cap(b) || &nb[0] != &b[0] {
			t.Fatalf("len %d of cap %d (moved: %v)", len(nb), cap(b), &nb[0] != &b[0])
		}
		putBuf(nb)
	})
	t.Run("growth keeps content", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for trial := 0; trial < 20; trial++ {
			var b []byte
			var want []byte
			for want == nil || len(want) < 150<<10 {
				chunk := make([]byte, r.IntN(9000))
				for i := range chunk {
					chunk[i] = byte(r.Uint32())
				}
				oldCap := cap(b)
				b = appendPooled(b, chunk)
				want = append(want, chunk...)
				if !bytes.Equal(b, want) {
					t.Fatalf("trial %d: content differs after %d bytes", trial, len(want))
				}
				if cap(b) < len(b) {
					t.Fatal("cap < len")
				}
				if cap(b) != oldCap && len(b) <= 64<<10 {
					switch cap(b) {
					case 512, 4 << 10, 16 << 10, 64 << 10:
					default:
						t.Fatalf("grew to a non-class capacity %d for %d bytes", cap(b), len(b))
					}
				}
			}
			putBuf(b)
		}
	})
	t.Run("from an unpooled buffer", func(t *testing.T) {
		src := []byte("hello")
		nb := appendPooled(src[:5:5], []byte(" world"))
		if string(nb) != "hello world" || string(src) != "hello" {
			t.Fatalf("got %q, src %q", nb, src)
		}
	})
}

// TestBufPoolConcurrent: buffers handed out concurrently are never shared
// (each goroutine's content stays its own), under -race.
func TestBufPoolConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 9))
			mark := byte(g + 1)
			for i := 0; i < 300; i++ {
				var b []byte
				n := 0
				for k := r.IntN(6); k >= 0; k-- {
					chunk := bytes.Repeat([]byte{mark}, r.IntN(20000))
					b = appendPooled(b, chunk)
					n += len(chunk)
				}
				if len(b) != n || !allByte(b, mark) {
					t.Errorf("goroutine %d: buffer of %d bytes (want %d) holds foreign bytes", g, len(b), n)
					return
				}
				if b != nil {
					putBuf(b)
				}
			}
		}()
	}
	wg.Wait()
}

func allByte(b []byte, c byte) bool {
	for _, x := range b {
		if x != c {
			return false
		}
	}
	return true
}
