package fanout

import (
	"hash/maphash"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
)

// Member is a local connection as fanout sees it.
type Member interface {
	// Deliver queues the message's frame in the member's protocol,
	// f.Frame(id), for the member (nothing when that is nil) and returns
	// the frame's size (0 for none), for the byte counters. It must not
	// block, must not modify the frame and must not keep f past the call;
	// a member whose queue is full disconnects itself (slow client).
	Deliver(f *Frames) int
}

// Subscriber is told when a hub gets its first local member of a group,
// user or connection, and when it loses the last. The backplane implements
// it; its methods must not block (they are called under registry locks so
// that subscribe and unsubscribe of one channel stay ordered).
type Subscriber interface {
	Subscribe(hub string, kind backplane.Kind, name string)
	Unsubscribe(hub string, kind backplane.Kind, name string)
}

const numShards = 64

// Lock order (never hold two locks of the same table at once):
//
//	connShard.mu  →  setShard.mu (groups or users)
//
// No I/O and no Member.Deliver call happens under any of them: recipients
// are snapshotted into a pooled slice, the lock released, then delivered.

// Entry is a registered member. It is returned by Add and passed back to
// Remove; callers treat it as opaque.
//
// Every connection embeds one, so its size counts per connection: 56 B on
// 64-bit platforms (TestEntrySize). Its position in the shard's list is
// the index's business (index.go), not the entry's. The groups joined, which few
// connections have, are behind a pointer allocated on the first join.
type Entry struct {
	m      Member
	id     string
	user   string
	groups *[]string // groups joined, nil if none; guarded by the conn shard's mu
}

// joined is the groups e has joined. The conn shard's mu must be held.
func (e *Entry) joined() []string {
	if e.groups == nil {
		return nil
	}
	return *e.groups
}

// ID is the member's connection id.
func (e *Entry) ID() string { return e.id }

// User is the member's user id ("" if anonymous).
func (e *Entry) User() string { return e.user }

// connShard is one shard of a hub's connections: a dense list, for
// broadcasts (slices, not maps, in the loop), and a compact open-addressing
// index of it by connection id instead of a map (see index.go). mu guards
// both.
type connShard struct {
	mu    sync.RWMutex
	list  []*Entry
	slots []int32      // index of list by id: position+1, 0 empty
	seed  maphash.Seed // the hub's seed (the index hashes ids with it)
}

// memberSet is a group's or a user's members: a dense slice plus positions.
type memberSet struct {
	list []*Entry
	pos  map[*Entry]int32
}

type setShard struct {
	mu   sync.RWMutex
	sets map[string]*memberSet
}

type setTable struct {
	kind   backplane.Kind
	shards [numShards]setShard
}

// Hub is the registry of one hub's local connections, groups and users.
type Hub struct {
	name  string
	sub   Subscriber
	seed  maphash.Seed
	conns [numShards]connShard
	group setTable
	users setTable
	count atomic.Int64
	stats *Stats
}

// Stats is the delivery hook shared by a Router's hubs.
type Stats struct {
	// OnDeliver, if set before the first delivery, is called once per
	// delivered message (not per recipient) with the number of recipients,
	// the frame bytes they were given in all (frames differ by protocol)
	// and how long queuing took; metrics hang off it.
	OnDeliver func(recipients, bytes int, took time.Duration)
}

func newHub(name string, sub Subscriber, stats *Stats) *Hub {
	h := &Hub{name: name, sub: sub, seed: maphash.MakeSeed(), stats: stats}
	for i := range h.conns {
		h.conns[i].seed = h.seed // index tables are allocated on first insert
	}
	h.group.kind, h.users.kind = backplane.Group, backplane.User
	for i := 0; i < numShards; i++ {
		h.group.shards[i].sets = make(map[string]*memberSet)
		h.users.shards[i].sets = make(map[string]*memberSet)
	}
	return h
}

// Name is the hub's name.
func (h *Hub) Name() string { return h.name }

// Len is the number of local connections.
func (h *Hub) Len() int { return int(h.count.Load()) }

func (h *Hub) shardOf(key string) int {
	return int(maphash.String(h.seed, key) % numShards)
}

// connShardOf returns the conn shard of id and id's hash, which the
// shard's index takes too (it uses the bits the shard choice does not).
func (h *Hub) connShardOf(id string) (*connShard, uint64) {
	hv := maphash.String(h.seed, id)
	return &h.conns[hv%numShards], hv
}

// Init sets a caller-owned entry's member, connection id and user before
// Insert (a connection can embed its Entry: no separate allocation).
func (e *Entry) Init(m Member, id, user string) { e.m, e.id, e.user = m, id, user }

// Add registers m under connection id (unique on this node) and user (may
// be ""). It reports false, registering nothing, if id is taken.
func (h *Hub) Add(m Member, id, user string) (*Entry, bool) {
	e := &Entry{}
	e.Init(m, id, user)
	return e, h.Insert(e)
}

// Insert registers an entry prepared with Init. It reports false,
// registering nothing, if its id is taken.
func (h *Hub) Insert(e *Entry) bool {
	id, user := e.id, e.user
	s, hv := h.connShardOf(id)
	s.mu.Lock()
	if !s.insert(e, hv) {
		s.mu.Unlock()
		return false
	}
	h.sub.Subscribe(h.name, backplane.Connection, id)
	if user != "" {
		h.users.add(h, user, e)
	}
	s.mu.Unlock()
	h.count.Add(1)
	return true
}

// Remove unregisters e from the hub, its groups and its user.
func (h *Hub) Remove(e *Entry) {
	s, hv := h.connShardOf(e.id)
	s.mu.Lock()
	if !s.remove(e, hv) {
		s.mu.Unlock()
		return
	}
	h.sub.Unsubscribe(h.name, backplane.Connection, e.id)
	for _, g := range e.joined() {
		h.group.remove(h, g, e)
	}
	e.groups = nil
	if e.user != "" {
		h.users.remove(h, e.user, e)
	}
	s.mu.Unlock()
	h.count.Add(-1)
}

// Member returns the member registered under connection id, or nil.
func (h *Hub) Member(id string) Member {
	s, hv := h.connShardOf(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.get(id, hv); e != nil {
		return e.m
	}
	return nil
}

// Lookup reports whether connection id is registered on this node.
func (h *Hub) Lookup(id string) bool {
	s, hv := h.connShardOf(id)
	s.mu.RLock()
	ok := s.get(id, hv) != nil
	s.mu.RUnlock()
	return ok
}

// AddToGroup adds connection id to group. It reports false if id is not a
// local connection. Adding twice is a no-op.
func (h *Hub) AddToGroup(id, group string) bool {
	return h.withEntry(id, func(e *Entry) {
		if slices.Contains(e.joined(), group) {
			return
		}
		if e.groups == nil {
			e.groups = &[]string{group}
		} else {
			*e.groups = append(*e.groups, group)
		}
		h.group.add(h, group, e)
	})
}

// RemoveFromGroup removes connection id from group. It reports false if id
// is not a local connection.
func (h *Hub) RemoveFromGroup(id, group string) bool {
	return h.withEntry(id, func(e *Entry) {
		gs := e.joined()
		i := slices.Index(gs, group)
		if i < 0 {
			return
		}
		last := len(gs) - 1
		gs[i] = gs[last]
		gs[last] = ""
		if last == 0 {
			e.groups = nil // the last group left: drop the allocation
		} else {
			*e.groups = gs[:last]
		}
		h.group.remove(h, group, e)
	})
}

// withEntry runs fn with the entry of connection id under its shard's
// write lock; false if id is not registered.
func (h *Hub) withEntry(id string, fn func(e *Entry)) bool {
	s, hv := h.connShardOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(id, hv)
	if e != nil {
		fn(e)
	}
	return e != nil
}

// GroupLen is the number of local members of group.
func (h *Hub) GroupLen(group string) int { return h.group.len(h, group) }

// UserLen is the number of local connections of user.
func (h *Hub) UserLen(user string) int { return h.users.len(h, user) }

// Lock should be held: the member's conn shard (write).
func (t *setTable) add(h *Hub, name string, e *Entry) {
	s := &t.shards[h.shardOf(name)]
	s.mu.Lock()
	ms, ok := s.sets[name]
	if !ok {
		ms = &memberSet{pos: make(map[*Entry]int32)}
		s.sets[name] = ms
		h.sub.Subscribe(h.name, t.kind, name)
	}
	if _, in := ms.pos[e]; !in {
		ms.pos[e] = int32(len(ms.list))
		ms.list = append(ms.list, e)
	}
	s.mu.Unlock()
}

// Lock should be held: the member's conn shard (write).
func (t *setTable) remove(h *Hub, name string, e *Entry) {
	s := &t.shards[h.shardOf(name)]
	s.mu.Lock()
	if ms, ok := s.sets[name]; ok {
		if i, in := ms.pos[e]; in {
			last := int32(len(ms.list) - 1)
			moved := ms.list[last]
			ms.list[i] = moved
			ms.pos[moved] = i
			ms.list[last] = nil
			ms.list = ms.list[:last]
			delete(ms.pos, e)
		}
		if len(ms.list) == 0 {
			delete(s.sets, name)
			h.sub.Unsubscribe(h.name, t.kind, name)
		}
	}
	s.mu.Unlock()
}

func (t *setTable) len(h *Hub, name string) int {
	s := &t.shards[h.shardOf(name)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ms, ok := s.sets[name]; ok {
		return len(ms.list)
	}
	return 0
}

var snapPool = sync.Pool{New: func() any { s := make([]*Entry, 0, 256); return &s }}

// getSnap returns a pooled, empty snapshot slice; putSnap gives it back.
func getSnap() *[]*Entry { sp := snapPool.Get().(*[]*Entry); *sp = (*sp)[:0]; return sp }

func putSnap(sp *[]*Entry, snap []*Entry) {
	clear(snap) // drop references before pooling
	if cap(snap) <= 1<<16 {
		*sp = snap[:0]
		snapPool.Put(sp)
	}
}

// parallelMin is the least number of recipients per goroutine of one
// delivery. Each recipient costs a socket write (~5-10 µs, the receiver's
// TCP work included on loopback) and a goroutine ~1 µs to start, so a
// message to 2×parallelMin recipients or more is split over up to
// GOMAXPROCS goroutines, as the floor splits its write loop over one
// thread per core; smaller ones run on the caller's goroutine alone.
const parallelMin = 1024

// workers is how many goroutines deliver a message to n recipients.
func workers(n int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n/parallelMin))
}

// Deliver hands the message's frames to the local recipients of (kind,
// name), skipping the excluded connection ids; each takes the frame of its
// protocol, built once for all of them. A large audience is split over
// several goroutines (workers); Deliver returns when every recipient has
// been handed the message, so messages delivered one after the other reach
// each connection in order. It returns the number of recipients.
func (h *Hub) Deliver(kind backplane.Kind, name string, excluded []string, frame *Frames) int {
	start := time.Now()
	n, bytes := 0, 0
	switch kind {
	case backplane.All:
		w := workers(h.Len())
		n, bytes = parallel(w, func(k int) (int, int) { return h.deliverShards(k, w, excluded, frame) })
	case backplane.Group, backplane.User:
		t := &h.group
		if kind == backplane.User {
			t = &h.users
		}
		sp := getSnap()
		snap := *sp
		s := &t.shards[h.shardOf(name)]
		s.mu.RLock()
		if ms, ok := s.sets[name]; ok {
			snap = append(snap, ms.list...)
		}
		s.mu.RUnlock()
		w := workers(len(snap))
		n, bytes = parallel(w, func(k int) (int, int) {
			return deliver(snap[k*len(snap)/w:(k+1)*len(snap)/w], excluded, frame)
		})
		putSnap(sp, snap)
	case backplane.Connection:
		s, hv := h.connShardOf(name)
		s.mu.RLock()
		e := s.get(name, hv)
		s.mu.RUnlock()
		if e != nil {
			n, bytes = deliver([]*Entry{e}, excluded, frame)
		}
	}
	if h.stats != nil && h.stats.OnDeliver != nil {
		h.stats.OnDeliver(n, bytes, time.Since(start))
	}
	return n
}

// deliverShards delivers to the connections of conn shards k, k+w, k+2w,
// …, one shard's snapshot at a time.
func (h *Hub) deliverShards(k, w int, excluded []string, frame *Frames) (n, bytes int) {
	sp := getSnap()
	snap := *sp
	for i := k; i < numShards; i += w {
		s := &h.conns[i]
		s.mu.RLock()
		snap = append(snap[:0], s.list...)
		s.mu.RUnlock()
		a, b := deliver(snap, excluded, frame)
		n, bytes = n+a, bytes+b
	}
	putSnap(sp, snap)
	return n, bytes
}

// parallel runs part(0), …, part(w-1): part 0 on the caller's goroutine,
// the others each on its own, and returns the sums of their counts once
// all are done.
func parallel(w int, part func(k int) (n, bytes int)) (n, bytes int) {
	if w <= 1 {
		return part(0)
	}
	counts := make([][2]int, w)
	var wg sync.WaitGroup
	wg.Add(w - 1)
	for k := 1; k < w; k++ {
		go func() {
			defer wg.Done()
			counts[k][0], counts[k][1] = part(k)
		}()
	}
	n, bytes = part(0)
	wg.Wait()
	for _, c := range counts[1:] {
		n, bytes = n+c[0], bytes+c[1]
	}
	return n, bytes
}

func deliver(snap []*Entry, excluded []string, frame *Frames) (n, bytes int) {
	for _, e := range snap {
		if len(excluded) > 0 && isExcluded(e.id, excluded) {
			continue
		}
		bytes += e.m.Deliver(frame)
		n++
	}
	return n, bytes
}

func isExcluded(id string, excluded []string) bool {
	for _, x := range excluded {
		if x == id {
			return true
		}
	}
	return false
}

// Each calls fn for every local member (snapshot; fn runs without locks).
func (h *Hub) Each(fn func(e *Entry)) {
	var snap []*Entry
	for i := range h.conns {
		s := &h.conns[i]
		s.mu.RLock()
		snap = append(snap[:0], s.list...)
		s.mu.RUnlock()
		for _, e := range snap {
			fn(e)
		}
	}
}

// Member returns the member registered under id, if any.
func (e *Entry) Member() Member { return e.m }
