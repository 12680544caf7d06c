package service

import (
	"hash/maphash"
	"sync"
)

// clientShards is the number of shards of a hub's relayed clients.
const clientShards = 64

// clientTable is a hub's relayed clients on this node by connection id:
// sharded maps, each behind its own lock (a sync.Map would keep two maps
// of every entry while clients come and go: ~2x the memory per client).
type clientTable struct {
	seed   maphash.Seed
	shards [clientShards]struct {
		mu sync.RWMutex
		m  map[string]*relayClient
	}
}

func (t *clientTable) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].m = map[string]*relayClient{}
	}
}

func (t *clientTable) shard(id string) int { return int(maphash.String(t.seed, id) % clientShards) }

// add stores rc under id unless id is taken; it reports whether it did.
func (t *clientTable) add(id string, rc *relayClient) bool {
	s := &t.shards[t.shard(id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return false
	}
	s.m[id] = rc
	return true
}

func (t *clientTable) get(id string) *relayClient {
	s := &t.shards[t.shard(id)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[id]
}

// removeIf deletes id if rc is what is there.
func (t *clientTable) removeIf(id string, rc *relayClient) {
	s := &t.shards[t.shard(id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[id] == rc {
		delete(s.m, id)
	}
}

// remove deletes id and returns what was there, or nil.
func (t *clientTable) remove(id string) *relayClient {
	s := &t.shards[t.shard(id)]
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.m[id]
	delete(s.m, id)
	return rc
}

// each calls fn for every client, on a snapshot of each shard (fn runs
// without locks).
func (t *clientTable) each(fn func(rc *relayClient)) {
	var snap []*relayClient
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		snap = snap[:0]
		for _, rc := range s.m {
			snap = append(snap, rc)
		}
		s.mu.RUnlock()
		for _, rc := range snap {
			fn(rc)
		}
	}
}

// partialShards is the number of stripes of a hub's partial records.
const partialShards = 64

// partialStripe serializes the app's writes to the clients whose id
// hashes to it (hub.toClient) and keeps their incomplete records (an
// older SDK's raw chunks), so no client pays for a lock or buffer of its
// own.
type partialStripe struct {
	mu sync.Mutex
	m  map[string][]byte // allocated on first use
}

// keep holds an incomplete record of client id (a copy; nil drops it).
// p.mu is held.
func (p *partialStripe) keep(id string, rest []byte) {
	if len(rest) == 0 {
		if p.m != nil {
			delete(p.m, id)
		}
		return
	}
	if p.m == nil {
		p.m = map[string][]byte{}
	}
	p.m[id] = append([]byte(nil), rest...)
}
