package backplane

import (
	"context"
	"time"
)

// Subscription bookkeeping: Subscribe and Unsubscribe only queue a change
// (under r.mu); the flusher goroutine writes everything queued in one
// (S)SUBSCRIBE/(S)UNSUBSCRIBE per subscription connection, and Redis's
// confirmations are recorded for WaitSubscribed.

// chanKind is what a subscribed channel carries.
type chanKind uint8

const (
	chanAll                 = chanKind(All)
	chanGroup               = chanKind(Group)
	chanUser                = chanKind(User)
	chanConnection          = chanKind(Connection)
	chanGroups     chanKind = 10 // P:internal:groups
	chanAck        chanKind = 11 // P:internal:ack:{this server}
	chanFleet      chanKind = 12 // P:internal:edgeplane (fleet commands)
	chanReturn     chanKind = 14 // P:internal:return:{this server} (client results; 13 is chanRelay, redis_relay.go)
)

// route is what a channel name stands for.
type route struct {
	hub       string
	kind      chanKind
	confirmed bool // Redis confirmed the subscription (guarded by r.mu)
	name      string
}

// addHubLocked queues the static channels of a hub not seen before and
// reports whether it was new. r.mu must be held.
func (r *Redis) addHubLocked(hub string) bool {
	if _, ok := r.hubs[hub]; ok {
		return false
	}
	r.hubs[hub] = struct{}{}
	p := r.Prefix(hub)
	r.wantLocked(p+":all", route{hub: hub, kind: chanAll}, true)
	r.wantLocked(p+":internal:groups", route{hub: hub, kind: chanGroups}, true)
	r.wantLocked(p+":internal:ack:"+r.name, route{hub: hub, kind: chanAck}, true)
	r.wantLocked(p+fleetChannel, route{hub: hub, kind: chanFleet}, true)
	r.wantLocked(r.ReturnChannel(hub), route{hub: hub, kind: chanReturn}, true)
	return true
}

// ensureHub makes sure hub's static channels are (being) subscribed and
// reports whether it queued them now.
func (r *Redis) ensureHub(hub string) bool {
	r.mu.RLock()
	_, ok := r.hubs[hub]
	r.mu.RUnlock()
	if ok {
		return false
	}
	r.mu.Lock()
	added := r.addHubLocked(hub)
	r.mu.Unlock()
	if added {
		r.signal()
	}
	return added
}

// wantLocked records a subscription change for the flusher. r.mu must be
// held.
func (r *Redis) wantLocked(ch string, rt route, sub bool) {
	if sub {
		if _, ok := r.routes[ch]; !ok {
			r.routes[ch] = rt
		}
	}
	r.pending[ch] = sub
	r.gen++
}

func (r *Redis) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Subscribe implements Backplane. It does not block: the change is queued
// and written with others in one SUBSCRIBE.
func (r *Redis) Subscribe(hub string, kind Kind, name string) {
	if r.closed.Load() {
		return
	}
	r.ensureHub(hub)
	ch := r.Channel(hub, kind, name)
	r.mu.Lock()
	r.wantLocked(ch, route{hub: hub, kind: chanKind(kind), name: name}, true)
	r.mu.Unlock()
	r.signal()
}

// Unsubscribe implements Backplane; like Subscribe it only queues the
// change. A Subscribe and Unsubscribe of the same channel between two
// flushes cancel out.
func (r *Redis) Unsubscribe(hub string, kind Kind, name string) {
	if r.closed.Load() || kind == All {
		return // P:all stays subscribed
	}
	ch := r.Channel(hub, kind, name)
	r.mu.Lock()
	if _, ok := r.routes[ch]; ok {
		r.wantLocked(ch, route{}, false)
	}
	r.mu.Unlock()
	r.signal()
}

// waitFlushed waits until every subscription change queued before the call
// has been written to Redis (not necessarily confirmed by it).
func (r *Redis) waitFlushed(ctx context.Context) error {
	r.mu.RLock()
	gen := r.gen
	r.mu.RUnlock()
	return r.waitFor(ctx, func() (bool, chan struct{}) {
		return r.doneGen >= gen, r.flushed
	})
}

// confirm records Redis's confirmation of a (s)subscribe and wakes
// WaitSubscribed callers.
func (r *Redis) confirm(ch string) {
	r.mu.Lock()
	if rt, ok := r.routes[ch]; ok && !rt.confirmed {
		rt.confirmed = true
		r.routes[ch] = rt
		close(r.confirmed)
		r.confirmed = make(chan struct{})
	}
	r.mu.Unlock()
}

// WaitSubscribed waits until Redis has confirmed this node's subscription
// to the channel of (hub, kind, name), so that a reply published to it from
// now on is delivered. It returns at once if the node has not asked for
// that subscription, and ctx's error on time-out.
func (r *Redis) WaitSubscribed(ctx context.Context, hub string, kind Kind, name string) error {
	ch := r.Channel(hub, kind, name)
	return r.waitFor(ctx, func() (bool, chan struct{}) {
		rt, ok := r.routes[ch]
		return !ok || rt.confirmed, r.confirmed // not subscribed (nothing to wait for), or confirmed
	})
}

// waitFor waits until cond reports done. cond is called with r.mu
// read-locked and also returns the channel that is closed when its answer
// may change. waitFor returns ctx's error when ctx ends first and ErrClosed
// when the backplane is closed.
func (r *Redis) waitFor(ctx context.Context, cond func() (done bool, wake chan struct{})) error {
	for {
		r.mu.RLock()
		done, wake := cond()
		r.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stop:
			return ErrClosed
		}
	}
}

// flusher writes queued subscription changes (everything queued while the
// previous batch was being written goes out together: one command per
// subscription connection, per slot in a cluster) and, in a cluster,
// places slots whose subscriptions were lost on their current master. It
// is the only goroutine that creates or closes subscribers and assigns
// slots to them.
func (r *Redis) flusher() {
	defer r.wg.Done()
	var retry <-chan time.Time
	for {
		select {
		case <-r.kick:
		case <-retry:
		case <-r.stop:
			return
		}
		retry = nil
		r.flush()
		if r.cluster && r.reroute() {
			retry = time.After(rerouteRetry)
		}
		r.started1()
	}
}

// started1 ends the start-up fault once every slot in use has been placed
// (so that the node is not ready before all of its first subscription
// connections exist and have confirmed their channels).
func (r *Redis) started1() {
	r.mu.RLock()
	pending := len(r.reroutes) > 0
	r.mu.RUnlock()
	if pending {
		return
	}
	r.stateMu.Lock()
	if r.starting != nil {
		r.dropFaultLocked(&r.starting, time.Now())
	}
	r.stateMu.Unlock()
}

func (r *Redis) flush() {
	r.mu.Lock()
	gen := r.gen
	var subs, unsubs []string
	for ch, want := range r.pending {
		_, isActive := r.active[ch]
		switch {
		case want && !isActive:
			subs = append(subs, ch)
			r.active[ch] = struct{}{}
			if r.cluster {
				r.slots.use[hashSlot(ch)]++
			}
		case !want && isActive:
			unsubs = append(unsubs, ch)
			delete(r.active, ch)
			delete(r.routes, ch)
			if r.cluster {
				slot := hashSlot(ch)
				r.slots.use[slot]--
			}
		case !want:
			delete(r.routes, ch)
		}
	}
	if len(r.pending) > 1024 {
		r.pending = make(map[string]bool) // clear would keep a burst's buckets
	} else {
		clear(r.pending)
	}
	r.mu.Unlock()

	r.m.subscriptions.Add(float64(len(subs) - len(unsubs)))
	if r.cluster {
		r.applyCluster(subs, unsubs)
	} else if len(subs)+len(unsubs) > 0 {
		r.subscriber(r.sc.Options().Addr).changes([]chanChange{{subs: subs, unsubs: unsubs}}, false)
	}

	r.mu.Lock()
	r.doneGen = max(r.doneGen, gen)
	close(r.flushed)
	r.flushed = make(chan struct{})
	r.mu.Unlock()
}

// channelsOf lists the channels s carries, by slot (slot 0 with a single
// server), for its (re)subscription.
func (r *Redis) channelsOf(s *subscriber) map[uint16][]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[uint16][]string)
	for ch := range r.active {
		if !r.cluster {
			out[0] = append(out[0], ch)
			continue
		}
		slot := hashSlot(ch)
		if r.slots.on(slot, s.addr) {
			out[slot] = append(out[slot], ch)
		}
	}
	return out
}
