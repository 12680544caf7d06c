package fanout

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"unsafe"

	"github.com/edgeplane/edgeplane/backplane"
)

// Every connection embeds an Entry: its size is paid per connection, and
// the gateway is over its per-connection memory budget. 56 B is m (16),
// id (16), user (16) and the groups pointer (8); anything added must move
// something else behind a pointer.
func TestEntrySize(t *testing.T) {
	if got := unsafe.Sizeof(Entry{}); got > 56 {
		t.Fatalf("unsafe.Sizeof(Entry{}) = %d B, budget 56 B: each connection embeds one, keep rare fields behind a pointer", got)
	}
}

// randomIDs returns n distinct connection-id-like strings.
func randomIDs(r *rand.Rand, n int) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	seen := make(map[string]bool, n)
	ids := make([]string, 0, n)
	for len(ids) < n {
		b := make([]byte, 1+r.IntN(22)) // short ids too: more equal-length keys
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if id := string(b); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

func newEntries(ids []string) []*Entry {
	es := make([]*Entry, len(ids))
	for i, id := range ids {
		es[i] = &Entry{}
		es[i].Init(nopMember{}, id, "")
	}
	return es
}

// checkShard verifies the index invariants of s exhaustively.
func checkShard(t *testing.T, s *connShard) {
	t.Helper()
	n, size := len(s.list), len(s.slots)
	if size == 0 {
		if n != 0 {
			t.Fatalf("%d entries but no table", n)
		}
		return
	}
	if size&(size-1) != 0 || size < minSlots {
		t.Fatalf("table size %d: not a power of two >= %d", size, minSlots)
	}
	if n*4 > size*3 {
		t.Fatalf("load %d/%d over 3/4", n, size)
	}
	if size > minSlots && n*8 < size {
		t.Fatalf("load %d/%d under 1/8 but not shrunk", n, size)
	}
	used := 0
	mask := size - 1
	for j, v := range s.slots {
		if v == 0 {
			continue
		}
		used++
		if int(v) > n {
			t.Fatalf("slot %d = %d, list has %d", j, v, n)
		}
		// Linear probing: no empty slot between the home and the slot.
		for i := home(s.slots, s.hash(s.list[v-1].id)); i != j; i = (i + 1) & mask {
			if s.slots[i] == 0 {
				t.Fatalf("slot %d (id %q) unreachable: empty slot %d on its probe run", j, s.list[v-1].id, i)
			}
		}
	}
	if used != n {
		t.Fatalf("%d slots used for %d entries", used, n)
	}
	for i, e := range s.list {
		if _, pos := s.find(e.id, s.hash(e.id)); pos != i {
			t.Fatalf("find(%q) = %d, want %d", e.id, pos, i)
		}
	}
}

func TestIndexInsertFindRemove(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := &connShard{seed: maphash.MakeSeed()}
	ids := randomIDs(r, 10000)
	es := newEntries(ids)

	sizes := map[int]bool{}
	for _, e := range es {
		if !s.insert(e, s.hash(e.id)) {
			t.Fatalf("insert %q rejected", e.id)
		}
		sizes[len(s.slots)] = true
	}
	checkShard(t, s)
	if len(s.slots) != 16384 || len(sizes) != 11 { // 16, 32, ..., 16384
		t.Fatalf("table grew to %d through %d sizes, want 16384 through 11", len(s.slots), len(sizes))
	}
	for _, e := range es {
		if got := s.get(e.id, s.hash(e.id)); got != e {
			t.Fatalf("get(%q) = %p, want %p", e.id, got, e)
		}
		dup := &Entry{}
		dup.Init(nopMember{}, e.id, "")
		if s.insert(dup, s.hash(e.id)) {
			t.Fatalf("duplicate %q accepted", e.id)
		}
		if s.remove(dup, s.hash(e.id)) {
			t.Fatalf("remove of an unregistered entry with a registered id %q", e.id)
		}
	}
	if len(s.list) != len(es) {
		t.Fatalf("list has %d entries after duplicates, want %d", len(s.list), len(es))
	}

	// Remove a random half in random order.
	perm := r.Perm(len(es))
	removed := map[*Entry]bool{}
	for _, i := range perm[:len(es)/2] {
		e := es[i]
		if !s.remove(e, s.hash(e.id)) {
			t.Fatalf("remove %q failed", e.id)
		}
		if s.remove(e, s.hash(e.id)) {
			t.Fatalf("second remove %q succeeded", e.id)
		}
		removed[e] = true
	}
	checkShard(t, s)
	for _, e := range es {
		got := s.get(e.id, s.hash(e.id))
		if removed[e] && got != nil {
			t.Fatalf("removed %q still found", e.id)
		}
		if !removed[e] && got != e {
			t.Fatalf("kept %q: get = %p, want %p", e.id, got, e)
		}
	}

	// Re-insert the removed half.
	for e := range removed {
		if !s.insert(e, s.hash(e.id)) {
			t.Fatalf("re-insert %q rejected", e.id)
		}
	}
	checkShard(t, s)
	for _, e := range es {
		if got := s.get(e.id, s.hash(e.id)); got != e {
			t.Fatalf("after re-insert get(%q) = %p, want %p", e.id, got, e)
		}
	}

	// Mass disconnect: the table and the list shrink back.
	bigCap := cap(s.list)
	for _, i := range r.Perm(len(es)) {
		e := es[i]
		if !s.remove(e, s.hash(e.id)) {
			t.Fatalf("remove %q failed", e.id)
		}
		if len(s.list) == 10 {
			checkShard(t, s)
			if len(s.slots) > 64 || cap(s.list) > 64 { // 10/128 would be under 1/8
				t.Fatalf("10 entries left: table %d slots, list cap %d (was %d): not shrunk", len(s.slots), cap(s.list), bigCap)
			}
		}
	}
	checkShard(t, s)
	if len(s.slots) != minSlots || cap(s.list) > minListCap {
		t.Fatalf("empty: table %d slots, list cap %d; want %d and <= %d", len(s.slots), cap(s.list), minSlots, minListCap)
	}
}

// TestIndexModel runs random operations against the index and a Go map.
func TestIndexModel(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	s := &connShard{seed: maphash.MakeSeed()}
	pool := newEntries(randomIDs(r, 5000))
	model := map[string]*Entry{}
	ops := 400000
	if testing.Short() {
		ops = 50000
	}
	maxSize, shrinks := 0, 0
	for op := 0; op < ops; op++ {
		// Phases of different key ranges and insert bias make the table
		// grow, churn at a steady size and shrink back, repeatedly.
		phase := op / 20000
		span := []int{20, 5000, 300, 5000, 60, 1000}[phase%6]
		insertBias := []int{60, 70, 50, 20, 50, 30}[phase%6]
		e := pool[r.IntN(span)]
		hv := s.hash(e.id)
		before := len(s.slots)
		switch k := r.IntN(100); {
		case k < insertBias:
			_, want := model[e.id]
			want = !want
			if got := s.insert(e, hv); got != want {
				t.Fatalf("op %d: insert %q = %v, want %v", op, e.id, got, want)
			}
			if want {
				model[e.id] = e
			}
		case k < 90:
			if len(s.list) > 0 && r.IntN(2) == 0 {
				e = s.list[r.IntN(len(s.list))] // drains keys outside span too
				hv = s.hash(e.id)
			}
			want := model[e.id] == e // not if a stale entry holds the id
			if got := s.remove(e, hv); got != want {
				t.Fatalf("op %d: remove %q = %v, want %v", op, e.id, got, want)
			}
			if want {
				delete(model, e.id)
			}
		case k < 95: // a stale or foreign entry with a registered id
			stale := &Entry{}
			stale.Init(nopMember{}, e.id, "")
			if s.remove(stale, hv) || s.insert(stale, hv) != (model[e.id] == nil) {
				t.Fatalf("op %d: stale entry %q misbehaved", op, e.id)
			}
			if model[e.id] == nil {
				model[e.id] = stale
			}
		default:
			if got := s.get(e.id, hv); got != model[e.id] {
				t.Fatalf("op %d: get %q = %p, want %p", op, e.id, got, model[e.id])
			}
		}
		if len(s.slots) < before {
			shrinks++
		}
		maxSize = max(maxSize, len(s.slots))
		if len(s.list) != len(model) {
			t.Fatalf("op %d: %d entries, model has %d", op, len(s.list), len(model))
		}
		if op%5000 == 0 {
			checkShard(t, s)
			for id, e := range model {
				if got := s.get(id, s.hash(id)); got != e {
					t.Fatalf("op %d: get %q = %p, want %p", op, id, got, e)
				}
			}
		}
	}
	checkShard(t, s)
	t.Logf("%d ops: table up to %d slots, %d shrinks, %d entries at the end", ops, maxSize, shrinks, len(model))
	if maxSize < 4096 || shrinks == 0 {
		t.Fatalf("workload did not exercise growth and shrink: max %d slots, %d shrinks", maxSize, shrinks)
	}
}

// TestHubIndex exercises the index through the Hub's API.
func TestHubIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	h := NewRouter([]string{"chat"}, nil).Hub("chat")
	ids := randomIDs(r, 10000)
	ms := make([]*recMember, len(ids))
	es := make([]*Entry, len(ids))
	for i, id := range ids {
		ms[i] = &recMember{}
		e, ok := h.Add(ms[i], id, "")
		if !ok {
			t.Fatalf("Add %q rejected", id)
		}
		es[i] = e
	}
	tableSlots := func() (n int) {
		for i := range h.conns {
			n += len(h.conns[i].slots)
		}
		return n
	}
	check := func(removed map[int]bool) {
		t.Helper()
		for i := range h.conns {
			checkShard(t, &h.conns[i])
		}
		if want := len(ids) - len(removed); h.Len() != want {
			t.Fatalf("Len = %d, want %d", h.Len(), want)
		}
		for i, id := range ids {
			in := !removed[i]
			if h.Lookup(id) != in {
				t.Fatalf("Lookup(%q) = %v, want %v", id, !in, in)
			}
			if m := h.Member(id); in && m != ms[i] || !in && m != nil {
				t.Fatalf("Member(%q) = %v", id, m)
			}
			if h.AddToGroup(id, "g") != in {
				t.Fatalf("AddToGroup(%q) != %v", id, in)
			}
			before := ms[i].count()
			n := h.Deliver(backplane.Connection, id, nil, NewFrames([]byte("x"), nil))
			if want := map[bool]int{true: 1}[in]; n != want || ms[i].count()-before != want {
				t.Fatalf("Deliver to %q: %d recipients, want %d", id, n, want)
			}
		}
		if got, want := h.GroupLen("g"), len(ids)-len(removed); got != want {
			t.Fatalf("GroupLen = %d, want %d", got, want)
		}
		if n := h.Deliver(backplane.All, "", nil, NewFrames([]byte("x"), nil)); n != h.Len() {
			t.Fatalf("broadcast reached %d, Len %d", n, h.Len())
		}
	}
	check(nil)
	full := tableSlots()

	for i, id := range ids {
		if _, ok := h.Add(&recMember{}, id, ""); ok {
			t.Fatalf("duplicate %q accepted", id)
		}
		h.Remove(&Entry{id: id}) // not the registered entry: no-op
		if !h.Lookup(id) || h.Member(id) != ms[i] {
			t.Fatalf("duplicate Add or foreign Remove disturbed %q", id)
		}
	}
	h.Remove(&Entry{}) // never initialised: no-op

	removed := map[int]bool{}
	for _, i := range r.Perm(len(ids))[:len(ids)/2] {
		h.Remove(es[i])
		h.Remove(es[i]) // twice is harmless
		if es[i].groups != nil {
			t.Fatalf("removed entry %q keeps its groups", ids[i])
		}
		removed[i] = true
	}
	check(removed)

	for i := range removed {
		if !h.Insert(es[i]) {
			t.Fatalf("re-Insert %q rejected", ids[i])
		}
	}
	check(nil)

	// Leaving the last group drops the groups allocation.
	for i, id := range ids {
		if !h.RemoveFromGroup(id, "g") || es[i].groups != nil {
			t.Fatalf("RemoveFromGroup(%q): groups %v", id, es[i].groups)
		}
	}
	if h.GroupLen("g") != 0 {
		t.Fatalf("GroupLen = %d after everyone left", h.GroupLen("g"))
	}

	for _, e := range es {
		h.Remove(e)
	}
	if h.Len() != 0 {
		t.Fatalf("Len = %d after removing all", h.Len())
	}
	empty := tableSlots()
	t.Logf("index slots over %d shards: %d at %d connections, %d when empty", numShards, full, len(ids), empty)
	if full < len(ids)*4/3 || empty != numShards*minSlots {
		t.Fatalf("index did not grow or shrink: %d slots full, %d empty", full, empty)
	}
	for i := range h.conns {
		if c := cap(h.conns[i].list); c > minListCap {
			t.Fatalf("shard %d keeps a list of capacity %d after a mass disconnect", i, c)
		}
	}
}

func TestEntryGroups(t *testing.T) {
	h := NewRouter([]string{"chat"}, nil).Hub("chat")
	e, _ := h.Add(nopMember{}, "c", "")
	if e.groups != nil {
		t.Fatal("groups allocated before any join")
	}
	for _, g := range []string{"a", "b", "a", "c"} {
		h.AddToGroup("c", g)
	}
	if got := e.joined(); len(got) != 3 {
		t.Fatalf("joined %v", got)
	}
	h.RemoveFromGroup("c", "b")
	h.RemoveFromGroup("c", "b")
	h.RemoveFromGroup("c", "a")
	if got := e.joined(); len(got) != 1 || got[0] != "c" || h.GroupLen("a") != 0 || h.GroupLen("c") != 1 {
		t.Fatalf("joined %v", got)
	}
	h.RemoveFromGroup("c", "c")
	if e.groups != nil || h.GroupLen("c") != 0 {
		t.Fatal("groups kept after leaving the last group")
	}
	h.AddToGroup("c", "d")
	h.Remove(e)
	if e.groups != nil || h.GroupLen("d") != 0 {
		t.Fatal("groups kept after Remove")
	}
}

// heapDelta returns the live heap bytes that build adds and keeps: the
// median of three runs. build's result is kept alive until the second
// reading. Each reading follows two GCs, the first of which moves
// sync.Pool contents to the victim caches and the second drops them: with
// one, pooled garbage from before (fmt's buffers, snapPool) would be freed
// between the readings and make the delta too small.
func heapDelta(build func() any) int64 {
	var d [3]int64
	for i := range d {
		var a, b runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&a)
		v := build()
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&b)
		runtime.KeepAlive(v)
		d[i] = int64(b.HeapAlloc) - int64(a.HeapAlloc)
	}
	slices.Sort(d[:])
	return d[1]
}

// TestIndexBytesPerEntry measures the live heap of a hub's connection
// registry (index tables plus lists, all shards) at 10,000 connections, and
// at 19,000 (the density benchmark's count); entries and ids are allocated
// beforehand, as the connections own them, and so are the hubs. The old
// map[string]*Entry plus list is measured the same way for reference (~52
// B per entry at 10,000, ~59 B at 19,000).
func TestIndexBytesPerEntry(t *testing.T) {
	const budget = 24
	for _, n := range []int{10000, 19000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { testBytesPerEntry(t, n, budget) })
	}
}

func testBytesPerEntry(t *testing.T, n, budget int) {
	r := rand.New(rand.NewPCG(5, uint64(n)))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%022x", r.Uint64()) // the size of a real connection id
	}
	es := make([]Entry, n)
	for i := range es {
		es[i].Init(nopMember{}, ids[i], "")
	}
	sub := nopSubscriber{}

	var hubs []*Hub
	for range 3 { // one per heapDelta run
		hubs = append(hubs, newHub("chat", sub, nil))
	}
	got := heapDelta(func() any {
		h := hubs[0]
		hubs = hubs[1:] // only the returned reference keeps it alive
		for i := range es {
			if !h.Insert(&es[i]) {
				panic("insert rejected")
			}
		}
		return h
	})
	perEntry := float64(got) / float64(n)

	// The structures' own accounting, for the log.
	h := newHub("chat", sub, nil)
	for i := range es {
		h.Insert(&es[i])
	}
	var listBytes, slotBytes int
	for i := range h.conns {
		listBytes += cap(h.conns[i].list) * int(unsafe.Sizeof((*Entry)(nil)))
		slotBytes += len(h.conns[i].slots) * 4
	}

	// The old registry, measured the same way.
	type oldShard struct {
		byID map[string]*Entry
		list []*Entry
	}
	var olds [][]oldShard
	for range 3 {
		shards := make([]oldShard, numShards)
		for i := range shards {
			shards[i].byID = make(map[string]*Entry)
		}
		olds = append(olds, shards)
	}
	seed := maphash.MakeSeed()
	ref := heapDelta(func() any {
		shards := olds[0]
		olds = olds[1:]
		for i := range es {
			s := &shards[maphash.String(seed, ids[i])%numShards]
			s.byID[ids[i]] = &es[i]
			s.list = append(s.list, &es[i])
		}
		return shards
	})
	refPerEntry := float64(ref) / float64(n)

	t.Logf("%d entries: index+list %.1f B/entry measured (accounted: list %.1f + index %.1f); old map+list %.1f B/entry",
		n, perEntry, float64(listBytes)/float64(n), float64(slotBytes)/float64(n), refPerEntry)
	if refPerEntry <= float64(budget) {
		t.Fatalf("the old map+list measured %.1f B/entry, within the %d B budget: the measurement is not seeing the allocations", refPerEntry, budget)
	}
	if perEntry > float64(budget) {
		t.Fatalf("connection registry costs %.1f B per entry at %d entries, budget %d B (index table + dense list; the gateway is over its per-connection budget)", perEntry, n, budget)
	}
}

// TestConcurrentIndexOps mixes lookups, sends to connections and group
// changes with churn that grows and shrinks the tables (run with -race).
func TestConcurrentIndexOps(t *testing.T) {
	h := NewRouter([]string{"chat"}, nil).Hub("chat")
	const workers, per = 4, 2000
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			id := fmt.Sprintf("%d-%d", i%workers, i%per)
			h.Lookup(id)
			h.Member(id)
			h.Deliver(backplane.Connection, id, nil, NewFrames([]byte("x"), nil))
			h.AddToGroup(id, "g")
			h.RemoveFromGroup(id, "g")
		}
	}()
	var churn sync.WaitGroup
	for w := range workers {
		churn.Add(1)
		go func() {
			defer churn.Done()
			es := make([]*Entry, per)
			for round := 0; round < 3; round++ {
				for i := range es {
					e, ok := h.Add(nopMember{}, fmt.Sprintf("%d-%d", w, i), "")
					if !ok {
						t.Error("add failed")
						return
					}
					es[i] = e
				}
				for _, e := range es {
					h.Remove(e)
				}
			}
		}()
	}
	churn.Wait()
	close(done)
	wg.Wait()
	if h.Len() != 0 || h.GroupLen("g") != 0 {
		t.Fatalf("leftovers: len=%d group=%d", h.Len(), h.GroupLen("g"))
	}
	for i := range h.conns {
		checkShard(t, &h.conns[i])
	}
}
