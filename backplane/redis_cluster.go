package backplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster: sharded pub/sub over one subscription connection per
// master. Each slot in use is placed on the master that serves it (by the
// cluster's own CLUSTER SLOTS); its channels are subscribed there with
// SSUBSCRIBEs of their own (one command may name channels of one slot
// only), so a node holds one connection per master however many slots its
// channels spread over.
//
// When a slot moves (CLUSTER FAILOVER, a replica taking over a dead
// master, resharding), Redis 7 sends the subscribers of its channels an
// sunsubscribe each, and an SSUBSCRIBE sent to the wrong master gets a
// MOVED: either makes the slot faulty (the node is not ready) and the
// flusher places it again on the master that serves it now, asking the
// cluster for its current topology first. A subscription connection that
// fails and cannot be dialed again has its slots checked the same way.
// A replica takes an SSUBSCRIBE for its shard without a MOVED, so a
// placement counts only once the server, asked after it acknowledged the
// subscriptions, says it is their slots' master (confirmMaster): a
// topology read from a server that has not heard of a failover yet names
// the demoted master. All of it runs on the flusher goroutine.

const (
	// rerouteRetry: slots that could not be placed (no master serves
	// them yet, the cluster unreachable) are tried again after this long.
	rerouteRetry = 200 * time.Millisecond
	// topologyTimeout bounds one CLUSTER SLOTS.
	topologyTimeout = 500 * time.Millisecond
)

// slotRange is a range of slots, the master serving it and its replicas.
type slotRange struct {
	start, end uint16
	addr       string
	replicas   []string
}

// applyCluster writes a flush's changes: per slot, on the subscriber that
// carries the slot, in one write per subscriber; a slot newly in use is
// placed on its master first; a subscriber left with no slot is closed.
func (r *Redis) applyCluster(subs, unsubs []string) {
	bySlot := make(map[uint16]*chanChange)
	get := func(ch string) *chanChange {
		slot := hashSlot(ch)
		c := bySlot[slot]
		if c == nil {
			c = &chanChange{}
			bySlot[slot] = c
		}
		return c
	}
	for _, ch := range subs {
		c := get(ch)
		c.subs = append(c.subs, ch)
	}
	for _, ch := range unsubs {
		c := get(ch)
		c.unsubs = append(c.unsubs, ch)
	}
	var place, released []uint16
	known := make(map[uint16][]string) // a new slot's channels, when all are in this flush
	perSub := make(map[*subscriber][]chanChange)
	r.mu.RLock()
	r.subMu.Lock()
	for slot, c := range bySlot {
		addr, placed := r.slots.addr(slot)
		use := int(r.slots.use[slot])
		switch {
		case !placed && use > 0:
			place = append(place, slot)
			if use == len(c.subs) {
				known[slot] = c.subs
			}
		case placed:
			if s := r.subs[addr]; s != nil {
				perSub[s] = append(perSub[s], *c)
			}
			if use == 0 {
				released = append(released, slot)
			}
		}
	}
	r.subMu.Unlock()
	r.mu.RUnlock()
	for s, batches := range perSub {
		s.changes(batches, false)
	}
	for _, slot := range released {
		r.mu.RLock()
		addr, _ := r.slots.addr(slot)
		r.mu.RUnlock()
		r.subMu.Lock()
		s := r.subs[addr]
		r.subMu.Unlock()
		if s != nil {
			r.unplace(slot, s)
		}
	}
	if len(place) > 0 {
		r.placeSlots(place, nil, known)
	}
}

// placeSlots places each slot (with all of its channels) on hints[slot] if
// set, else on the master the topology names, refreshing it once if a slot
// is not in it, and subscribes the channels there: known[slot] if given,
// else the slot's active channels. Each subscriber gets one write, ending
// in a sync PING whose answer clears the slots' faults (writeSlots). Slots
// that cannot be placed now are queued for a retry; a subscriber left with
// no slot is closed.
func (r *Redis) placeSlots(slots []uint16, hints map[uint16]string, known map[uint16][]string) {
	where := make(map[uint16]string, len(slots))
	refreshed := false
	for _, slot := range slots {
		addr := hints[slot]
		if addr == "" {
			addr = r.owner(slot)
		}
		if addr == "" && !refreshed {
			refreshed = true
			if err := r.refreshTopology(nil); err != nil {
				r.errLog.warn(r.log, "redis cluster topology unavailable; retrying", "err", err)
			}
			addr = r.owner(slot)
		}
		if addr == "" {
			r.mu.Lock()
			if _, ok := r.reroutes[slot]; !ok {
				r.reroutes[slot] = ""
			}
			r.mu.Unlock()
			continue
		}
		where[slot] = addr
	}
	scan := make(map[uint16]bool)
	for slot := range where {
		if _, ok := known[slot]; !ok {
			scan[slot] = true
		}
	}
	var found map[uint16][]string
	if len(scan) > 0 {
		found = r.channelsInSlots(scan)
	}

	type target struct {
		batches []chanChange
		slots   []uint16
	}
	targets := make(map[*subscriber]*target)
	olds := make(map[*subscriber]bool)
	for slot, addr := range where {
		s := r.subscriber(addr)
		r.mu.Lock()
		if r.slots.use[slot] == 0 {
			r.mu.Unlock()
			r.stateMu.Lock()
			r.dropSlotFaultLocked(slot, time.Now())
			r.stateMu.Unlock()
			continue
		}
		if prev, ok := r.slots.addr(slot); !ok || prev != addr {
			if ok {
				r.subMu.Lock()
				old := r.subs[prev]
				r.subMu.Unlock()
				if old != nil {
					old.nslots--
					olds[old] = true
				}
			}
			r.slots.place(slot, addr)
			s.nslots++
		}
		r.mu.Unlock()
		t := targets[s]
		if t == nil {
			t = &target{}
			targets[s] = t
		}
		chans, ok := known[slot]
		if !ok {
			chans = found[slot]
		}
		t.batches = append(t.batches, chanChange{subs: chans})
		t.slots = append(t.slots, slot)
	}
	for s, t := range targets {
		seq := r.writeSlots(s, t.slots, t.batches)
		if r.hooks != nil && r.hooks.written != nil {
			r.hooks.written(s, seq)
		}
	}
	for old := range olds {
		r.closeIfIdle(old)
	}
}

// writeSlots subscribes the channels of slots, just placed on s, and
// hands their faults to s: the answer to the sync PING written after them
// clears them. It returns that PING's sequence number (0: s is not
// connected; its connect subscribes what s carries and writes the sync).
//
// It holds s.wmu throughout, as s's connect does from listing what s
// carries to recording its own sync (writtenLocked, for the faults that
// name s then): the two never interleave. Recording after the write
// without it let a connect run in between (s not connected at the write,
// connected and synced before the record), whose sync was then
// overwritten with "not written": the slot's channels delivered, its
// fault never cleared, the node not ready for good. And the faults name s
// before the write, so that a MOVED or sunsubscribe for them read before
// the record (slotLost: they wait for a new placement) is not undone by it.
func (r *Redis) writeSlots(s *subscriber, slots []uint16, batches []chanChange) uint64 {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	r.stateMu.Lock()
	for _, slot := range slots {
		if f := r.slotFaults[slot]; f != nil {
			f.sub, f.need = s, 0
		}
	}
	r.stateMu.Unlock()
	seq := s.changesLocked(batches, true)
	if seq == 0 {
		return 0
	}
	r.stateMu.Lock()
	for _, slot := range slots {
		// A fault slotLost took off s since the write (a MOVED or an
		// sunsubscribe read meanwhile) waits for its next placement, not
		// for this sync.
		if f := r.slotFaults[slot]; f != nil && f.sub == s {
			f.need = seq
		}
	}
	r.stateMu.Unlock()
	// The sync may have been answered already, read before need was set
	// (the read goroutine records it first): handle it here, or the
	// faults would wait for an answer that has come and gone.
	if s.synced.Load() >= seq {
		r.synced(s, seq)
	}
	return seq
}

// unplace forgets a slot no longer in use; s carried it.
func (r *Redis) unplace(slot uint16, s *subscriber) {
	r.mu.Lock()
	if r.slots.on(slot, s.addr) {
		r.slots.unplace(slot)
		s.nslots--
	}
	r.mu.Unlock()
	r.stateMu.Lock()
	r.dropSlotFaultLocked(slot, time.Now())
	r.stateMu.Unlock()
	r.closeIfIdle(s)
}

// closeIfIdle closes s if it carries no slot.
func (r *Redis) closeIfIdle(s *subscriber) {
	r.mu.RLock()
	idle := s.nslots <= 0
	r.mu.RUnlock()
	if !idle {
		return
	}
	r.subMu.Lock()
	if r.subs[s.addr] == s {
		delete(r.subs, s.addr)
	}
	r.subMu.Unlock()
	s.close()
}

// channelsInSlots lists the active channels of the given slots, by slot.
func (r *Redis) channelsInSlots(slots map[uint16]bool) map[uint16][]string {
	out := make(map[uint16][]string, len(slots))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for ch := range r.active {
		if slot := hashSlot(ch); slots[slot] {
			out[slot] = append(out[slot], ch)
		}
	}
	return out
}

// reroute places the slots whose subscriptions were lost, and checks the
// slots of subscribers that failed: those served elsewhere now move. It
// reports whether something is left to retry.
func (r *Redis) reroute() bool {
	r.mu.Lock()
	moves, checks, verify, confirms := r.reroutes, r.checks, r.verify, r.confirms
	if len(moves)+len(checks)+len(verify)+len(confirms) == 0 {
		r.mu.Unlock()
		return false
	}
	r.reroutes = make(map[uint16]string)
	r.checks = make(map[*subscriber]struct{})
	r.verify = make(map[uint16]string)
	r.confirms = make(map[*subscriber]uint64)
	r.mu.Unlock()

	retry := false
	for s, seq := range confirms {
		if !r.confirmMaster(s, seq, moves) {
			retry = true
		}
	}

	// Ask the cluster where slots are now, preferring the servers that
	// just reported a change (the one that dropped a slot knows who took
	// it over).
	r.mu.Lock()
	prefer := make([]string, 0, len(r.prefer)+len(checks))
	for a := range r.prefer {
		prefer = append(prefer, a)
	}
	clear(r.prefer)
	r.mu.Unlock()
	for s := range checks {
		prefer = append(prefer, s.addr)
	}
	unhinted := len(checks)+len(verify) > 0
	for _, hint := range moves {
		unhinted = unhinted || hint == ""
	}
	if unhinted {
		if err := r.refreshTopology(prefer); err != nil {
			r.errLog.warn(r.log, "redis cluster topology unavailable; retrying", "err", err)
			r.mu.Lock()
			for slot, hint := range moves {
				if _, ok := r.reroutes[slot]; !ok {
					r.reroutes[slot] = hint
				}
			}
			for s := range checks {
				r.checks[s] = struct{}{}
			}
			for slot, ch := range verify {
				r.verify[slot] = ch
			}
			for _, a := range prefer {
				r.prefer[a] = true
			}
			r.mu.Unlock()
			return true
		}
	}

	// A slot a publish on reached no subscriber: the subscription is fine
	// if the server it is on (the slot's master or one of its replicas)
	// counts it; else it is subscribed again on the master.
	for slot, ch := range verify {
		owner := r.owner(slot)
		r.mu.RLock()
		placed, _ := r.slots.addr(slot)
		r.mu.RUnlock()
		if owner == "" || placed == "" {
			continue
		}
		if r.inShard(slot, placed) {
			if n, err := r.shardNumSub(placed, ch); err != nil || n > 0 {
				continue // in effect: the publish went to a replica
			}
		} else {
			// Still subscribed on a server outside the shard: give it up
			// there first (no message twice).
			r.subMu.Lock()
			old := r.subs[placed]
			r.subMu.Unlock()
			if old != nil {
				old.change(r.channelsInSlots(map[uint16]bool{slot: true})[slot], false, false)
			}
		}
		r.log.Warn("a publish to a channel this node subscribes to reached no subscriber, and the server carrying the subscription does not count it; resubscribing", "channel", ch, "redis", placed, "master", owner)
		r.slotLost(slot, reasonNotSubscribed, time.Now(), owner, "")
		r.mu.Lock()
		delete(r.reroutes, slot)
		r.mu.Unlock()
		if _, ok := moves[slot]; !ok {
			moves[slot] = owner
		}
	}

	// A failed subscriber's slots that another master serves now move
	// there, carrying its gap.
	for s := range checks {
		r.stateMu.Lock()
		var sf fault
		if s.fault != nil {
			sf = *s.fault
		}
		closed := s.closed
		r.stateMu.Unlock()
		if closed {
			continue
		}
		r.mu.RLock()
		mine := r.slots.placedOn(s.addr)
		r.mu.RUnlock()
		for _, slot := range mine {
			owner := r.owner(slot)
			if owner == "" || owner == s.addr {
				continue
			}
			if _, ok := moves[slot]; !ok {
				moves[slot] = owner
			}
			r.stateMu.Lock()
			if r.slotFaults[slot] == nil && sf.reason != "" {
				var f *fault
				r.addFaultLocked(&f, &fault{reason: sf.reason, since: sf.since})
				r.slotFaults[slot] = f
			}
			r.stateMu.Unlock()
		}
	}
	if len(moves) == 0 {
		return retry
	}
	slots := make([]uint16, 0, len(moves))
	servers := map[string]int{}
	for slot, hint := range moves {
		slots = append(slots, slot)
		if hint == "" {
			hint = r.owner(slot)
		}
		servers[hint]++
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	// Publishes follow: the cluster client reloads its slot map.
	r.cc.ReloadState(context.Background())
	r.log.Info("redis cluster slots moved; subscribing their channels on the masters that serve them now", "slots", len(slots), "to", servers)
	r.placeSlots(slots, moves, nil)
	r.mu.RLock()
	left := len(r.reroutes) > 0
	r.mu.RUnlock()
	return left || retry
}

// confirmMaster ends the faults s's answered sync PING seq clears, once
// the server s is connected to says, after that answer, that it is the
// master of the slots s carries (synced explains why). Slots it serves
// only as a replica, or not at all, are given up there and added to moves
// (with the master the server names), carrying the gap of the faults s
// was clearing; their faults wait for the new placement. It reports false
// if the server could not be asked: the check is queued again for the
// flusher's retry, the faults left as they are.
func (r *Redis) confirmMaster(s *subscriber, seq uint64, moves map[uint16]string) bool {
	r.stateMu.Lock()
	closed := s.closed
	r.stateMu.Unlock()
	if closed {
		return true
	}
	myID, slots, err := r.serverView(s.addr)
	if err != nil {
		r.errLog.warn(r.log, "redis cluster node did not say which slots it serves; asking again", "redis", s.addr, "err", err)
		r.mu.Lock()
		r.confirms[s] = max(r.confirms[s], seq)
		r.mu.Unlock()
		return false
	}
	// The server's own view is as fresh a topology as any.
	r.topo = topoOf(slots)
	r.mu.RLock()
	mine := r.slots.placedOn(s.addr)
	r.mu.RUnlock()
	away := make(map[uint16]string)
	for _, slot := range mine {
		master, ok := masterIn(slots, slot)
		if ok && (master.ID == myID || master.Addr == s.addr) {
			continue // (by address too: a server that lists no ids)
		}
		away[slot] = master.Addr // "" if no one serves it: the topology decides
	}
	if len(away) > 0 {
		r.stateMu.Lock()
		// A slot without a fault of its own takes s's (a connection's
		// resubscription: its gap, or none while starting), else the
		// earliest gap s was clearing.
		carried := fault{reason: reasonSlotMoved}
		if f := s.fault; f != nil {
			carried = fault{reason: f.reason, since: f.since}
		} else {
			for _, f := range r.slotFaults {
				if f.sub == s && f.gap && (carried.since.IsZero() || f.since.Before(carried.since)) {
					carried.since = f.since
				}
			}
		}
		if carried.since.IsZero() {
			carried.since = time.Now()
		}
		for slot := range away {
			if f := r.slotFaults[slot]; f != nil {
				f.sub, f.need = nil, 0
			} else if !r.closed.Load() {
				c := carried
				r.addFaultLocked(&f, &c)
				r.slotFaults[slot] = f
			}
		}
		r.stateMu.Unlock()
		chans := r.channelsInSlots(keysOf(away))
		for slot, hint := range away {
			if c := chans[slot]; len(c) > 0 {
				s.change(c, false, false) // no message twice, once placed on the master
			}
			if _, ok := moves[slot]; !ok {
				moves[slot] = hint
			}
		}
		r.log.Warn("a redis cluster node acknowledged subscriptions for slots it does not serve as master; placing them on the master",
			"redis", s.addr, "slots", len(away))
	}
	r.endSynced(s, seq)
	return true
}

func keysOf(m map[uint16]string) map[uint16]bool {
	out := make(map[uint16]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// masterIn is the master serving slot in slots (false if none).
func masterIn(slots []redis.ClusterSlot, slot uint16) (redis.ClusterNode, bool) {
	for _, sr := range slots {
		if len(sr.Nodes) > 0 && int(slot) >= sr.Start && int(slot) <= sr.End {
			return sr.Nodes[0], true
		}
	}
	return redis.ClusterNode{}, false
}

// serverView asks the cluster node at addr for its own id and its CLUSTER
// SLOTS: the node's word on what it serves as master (a demoted master
// knows it at once; the rest of the cluster learns it by gossip).
func (r *Redis) serverView(addr string) (string, []redis.ClusterSlot, error) {
	c := r.nodeClient(addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	id, err := c.ClusterMyID(ctx).Result()
	if err != nil {
		return "", nil, fmt.Errorf("backplane: CLUSTER MYID on %s: %w", addr, err)
	}
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", nil, fmt.Errorf("backplane: CLUSTER SLOTS on %s: %w", addr, err)
	}
	return id, slots, nil
}

// owner is the master serving slot by the last topology read ("" if
// unknown). Only the flusher calls it.
func (r *Redis) owner(slot uint16) string {
	if rg := r.rangeOf(slot); rg != nil {
		return rg.addr
	}
	return ""
}

// inShard reports whether addr serves slot, as its master or a replica
// (a replica's subscribers get the shard's messages too).
func (r *Redis) inShard(slot uint16, addr string) bool {
	rg := r.rangeOf(slot)
	return rg != nil && (rg.addr == addr || slices.Contains(rg.replicas, addr))
}

func (r *Redis) rangeOf(slot uint16) *slotRange {
	i := sort.Search(len(r.topo), func(i int) bool { return r.topo[i].end >= slot })
	if i < len(r.topo) && r.topo[i].start <= slot {
		return &r.topo[i]
	}
	return nil
}

// nodeClient is a one-off client of one cluster node.
func (r *Redis) nodeClient(addr string) *redis.Client {
	o := r.cc.Options()
	return redis.NewClient(&redis.Options{
		Addr: addr, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: topologyTimeout, ReadTimeout: topologyTimeout, WriteTimeout: topologyTimeout,
	})
}

// shardNumSub is PUBSUB SHARDNUMSUB ch on the node at addr: the
// subscribers it serves ch to.
func (r *Redis) shardNumSub(addr, ch string) (int64, error) {
	c := r.nodeClient(addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	m, err := c.PubSubShardNumSub(ctx, ch).Result()
	if err != nil {
		return 0, err
	}
	return m[ch], nil
}

// refreshTopology reads CLUSTER SLOTS from the first server that answers:
// prefer, then the masters of the last topology, then the seeds.
func (r *Redis) refreshTopology(prefer []string) error {
	seen := map[string]bool{}
	var cands []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			cands = append(cands, a)
		}
	}
	for _, a := range prefer {
		add(a)
	}
	for _, rg := range r.topo {
		add(rg.addr)
	}
	for _, a := range r.cfg.ClusterAddrs {
		add(a)
	}
	var errs []error
	for _, addr := range cands {
		c := r.nodeClient(addr)
		ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
		slots, err := c.ClusterSlots(ctx).Result()
		cancel()
		_ = c.Close()
		if err == nil && len(slots) == 0 {
			err = errors.New("no slots served")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		r.topo = topoOf(slots)
		if r.hooks != nil && r.hooks.topology != nil {
			r.topo = r.hooks.topology(r.topo)
		}
		return nil
	}
	return fmt.Errorf("backplane: CLUSTER SLOTS: %w", errors.Join(errs...))
}

// topoOf is a CLUSTER SLOTS answer as sorted slot ranges.
func topoOf(slots []redis.ClusterSlot) []slotRange {
	topo := make([]slotRange, 0, len(slots))
	for _, s := range slots {
		if len(s.Nodes) == 0 || s.Start < 0 || s.End >= clusterSlots || s.Start > s.End {
			continue
		}
		rg := slotRange{start: uint16(s.Start), end: uint16(s.End), addr: s.Nodes[0].Addr}
		for _, n := range s.Nodes[1:] {
			rg.replicas = append(rg.replicas, n.Addr)
		}
		topo = append(topo, rg)
	}
	sort.Slice(topo, func(i, j int) bool { return topo[i].start < topo[j].start })
	return topo
}
