package fanout

import (
	"hash/maphash"
	"math/bits"
)

// The connection registry of a shard is two slices and no map:
//
//	list  []*Entry  dense, in no particular order; broadcasts copy it
//	slots []int32   open-addressing index of list by connection id
//
// Why not map[string]*Entry: a swiss-table slot holds the key's string
// header and the pointer (24 B) plus a control byte, at up to 7/8 load and
// with group and directory overhead on top; measured with the list it came
// to ~52-60 B per connection at 10,000-19,000 connections. The index only
// needs to find a position in list, whose entries already hold their ids,
// so a slot is an int32 (4 B): position+1, 0 meaning empty. With the table
// between 1/8 and 3/4 full (~1/2 on average) that is ~7-8 B per connection,
// and list, grown by ~1/4 at a time (growList), ~9-10 B: ~16 B in all
// (TestIndexBytesPerEntry measures it).
//
// The table's length is a power of two (minSlots or more, allocated on the
// first insert). An id's home slot is the top bits of its maphash hash
// (the Hub's seed; the hub picks the shard with the low bits, so the two
// are independent and the hash is computed once per operation). Collisions
// probe linearly; a lookup compares list[pos].id with the key. Deletion
// shifts the following entries of the run back (no tombstones, so probe
// runs never rot under churn). Insert doubles the table when it would be
// more than 3/4 full; remove rehashes it smaller when it is under 1/8 full
// and longer than minSlots, and reallocates list when it is under 1/4 of
// its capacity, so a mass disconnect gives the memory back.
//
// list stays dense: remove moves the last entry into the hole and points
// that entry's slot at its new position.
//
// All of it is guarded by the shard's mu (the methods assume it is held).

const (
	minSlots   = 16 // smallest index table (64 B)
	minListCap = 64 // list capacity below which remove never reallocates
)

// hash is id's hash with the shard's seed.
func (s *connShard) hash(id string) uint64 { return maphash.String(s.seed, id) }

// home is the slot where a hash's probe starts: its top log2(len(slots))
// bits. len(slots) must be a power of two > 1.
func home(slots []int32, hv uint64) int {
	return int(hv >> (bits.LeadingZeros64(uint64(len(slots))) + 1))
}

// find returns the position in list of the entry with id (hv its hash), or
// -1, and the slot holding it, or the empty slot where it would go (none,
// 0, if the table is not allocated yet: insert allocates it first).
func (s *connShard) find(id string, hv uint64) (slot, pos int) {
	if len(s.slots) == 0 {
		return 0, -1
	}
	mask := len(s.slots) - 1
	for i := home(s.slots, hv); ; i = (i + 1) & mask {
		v := s.slots[i]
		if v == 0 {
			return i, -1
		}
		if s.list[v-1].id == id {
			return i, int(v - 1)
		}
	}
}

// get returns the entry registered under id (hv its hash), or nil.
func (s *connShard) get(id string, hv uint64) *Entry {
	if _, pos := s.find(id, hv); pos >= 0 {
		return s.list[pos]
	}
	return nil
}

// insert appends e (hv the hash of e.id) to list and indexes it. It
// reports false, changing nothing, if e.id is taken.
func (s *connShard) insert(e *Entry, hv uint64) bool {
	slot, pos := s.find(e.id, hv)
	if pos >= 0 {
		return false
	}
	n := len(s.list) + 1
	if n*4 > len(s.slots)*3 {
		s.rehash(max(minSlots, 2*len(s.slots)))
		slot = s.free(hv)
	}
	if n > cap(s.list) {
		s.growList()
	}
	s.list = append(s.list, e)
	s.slots[slot] = int32(n)
	return true
}

// remove unregisters e (hv the hash of e.id). It reports false, changing
// nothing, if e is not the entry registered under e.id.
func (s *connShard) remove(e *Entry, hv uint64) bool {
	slot, pos := s.find(e.id, hv)
	if pos < 0 || s.list[pos] != e {
		return false
	}
	s.unslot(slot)
	last := len(s.list) - 1
	if pos != last {
		// Fill the hole with the last entry and repoint its slot.
		moved := s.list[last]
		s.slots[s.slotOf(s.hash(moved.id), last)] = int32(pos + 1)
		s.list[pos] = moved
	}
	s.list[last] = nil
	s.list = s.list[:last]

	if len(s.slots) > minSlots && last*8 < len(s.slots) {
		s.rehash(slotsFor(last))
	}
	if c := cap(s.list); c > minListCap && last < c/4 {
		l := make([]*Entry, last, 2*last)
		copy(l, s.list)
		s.list = l
	}
	return true
}

// growList makes room in list for at least one more entry, growing its
// capacity by ~1/4 (rounded up to the allocator's size class) where append
// would double it up to 256 and then grow by 1.25-2x: at a few hundred
// connections per shard that is ~9-10 B per connection instead of ~14.
func (s *connShard) growList() {
	c := cap(s.list)
	l := append([]*Entry(nil), make([]*Entry, c+c/4+16)...) // size-class rounded
	copy(l, s.list)
	s.list = l[:len(s.list)]
}

// slotsFor is the table length for n entries after a shrink: the smallest
// power of two, at least minSlots, that is at most half full.
func slotsFor(n int) int {
	size := minSlots
	for size < 2*n {
		size *= 2
	}
	return size
}

// rehash replaces the table by one of size slots (a power of two large
// enough for list) and indexes list into it.
func (s *connShard) rehash(size int) {
	s.slots = make([]int32, size)
	for i, e := range s.list {
		s.slots[s.free(s.hash(e.id))] = int32(i + 1)
	}
}

// free returns the first empty slot of hv's probe sequence.
func (s *connShard) free(hv uint64) int {
	mask := len(s.slots) - 1
	i := home(s.slots, hv)
	for s.slots[i] != 0 {
		i = (i + 1) & mask
	}
	return i
}

// slotOf returns the slot holding list position pos, whose id hashes to hv.
func (s *connShard) slotOf(hv uint64, pos int) int {
	mask := len(s.slots) - 1
	i := home(s.slots, hv)
	for s.slots[i] != int32(pos+1) {
		i = (i + 1) & mask
	}
	return i
}

// unslot empties slot i by backward shift: each later entry of the probe
// run moves into the hole if the hole is not before its home slot, so that
// every entry stays reachable from its home without tombstones.
func (s *connShard) unslot(i int) {
	mask := len(s.slots) - 1
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		v := s.slots[j]
		if v == 0 {
			break
		}
		h := home(s.slots, s.hash(s.list[v-1].id))
		// The entry at j may move back to i iff i lies cyclically in
		// [h, j], i.e. it is at least as far from j as its home.
		if (j-h)&mask >= (j-i)&mask {
			s.slots[i] = v
			i = j
		}
	}
	s.slots[i] = 0
}
