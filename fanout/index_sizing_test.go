package fanout

import (
	"hash/maphash"
	"math/rand/v2"
	"testing"
)

// TestIndexSizing: the table and list follow the sizing rules exactly (the
// per-entry memory budget rests on them): the table doubles on the insert
// that would make it more than 3/4 full, list grows only when full, the
// table shrinks to the smallest power of two at most half full when it
// falls under 1/8 full (never under minSlots), and list is reallocated to
// twice its length when under 1/4 of a capacity above minListCap.
func TestIndexSizing(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := &connShard{seed: maphash.MakeSeed()}
	es := newEntries(randomIDs(r, 3000))
	size, grows := 0, 0
	for i, e := range es {
		n := i + 1
		if n*4 > size*3 {
			size = max(minSlots, 2*size)
		}
		oldLen, oldCap := len(s.list), cap(s.list)
		if !s.insert(e, s.hash(e.id)) {
			t.Fatalf("insert %d rejected", n)
		}
		if len(s.slots) != size {
			t.Fatalf("after %d inserts: %d slots, want %d", n, len(s.slots), size)
		}
		if c := cap(s.list); c != oldCap {
			grows++
			if oldLen != oldCap || c < oldCap+oldCap/4+16 {
				t.Fatalf("insert %d: list grew from cap %d (len %d) to %d, want growth only when full, by a quarter and 16 or more", n, oldCap, oldLen, c)
			}
		}
	}
	if grows < 10 {
		t.Fatalf("list grew %d times over 3,000 inserts", grows)
	}
	for i, e := range es {
		last := len(es) - i - 1
		oldCap := cap(s.list)
		if !s.remove(e, s.hash(e.id)) {
			t.Fatalf("remove %d failed", i)
		}
		if size > minSlots && last*8 < size {
			size = slotsFor(last)
		}
		if len(s.slots) != size {
			t.Fatalf("%d left: %d slots, want %d", last, len(s.slots), size)
		}
		wantCap := oldCap
		if oldCap > minListCap && last < oldCap/4 {
			wantCap = 2 * last
		}
		if cap(s.list) != wantCap || len(s.list) != last {
			t.Fatalf("%d left: list len %d cap %d (was %d), want cap %d", last, len(s.list), cap(s.list), oldCap, wantCap)
		}
	}
	for n, want := range map[int]int{0: 16, 8: 16, 9: 32, 16: 32, 17: 64, 1000: 2048} {
		if got := slotsFor(n); got != want {
			t.Errorf("slotsFor(%d) = %d, want %d", n, got, want)
		}
	}
}
