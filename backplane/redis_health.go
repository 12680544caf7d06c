package backplane

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// Health and readiness. The node is ready while nothing is faulty: every
// subscription connection is up (its last resubscription confirmed) and,
// in a cluster, no slot's subscriptions are being restored; and the
// publish path works (the health probe's last round trip succeeded).
//
// A fault is one part of the subscription state that is not working: a
// subscription connection (down, or reconnected but its resubscription not
// confirmed yet) or, in a cluster, a slot whose subscriptions Redis
// dropped or redirected. It begins at the last moment the subscription was
// known to work (the last bytes read) and ends when a sync PING written
// after the resubscription is answered; that interval is the gap, in which
// messages published on its channels were lost. Gaps are counted
// (gaps_total by reason, gap_seconds_total) and logged with their bounds.
// All of it is under r.stateMu.

// fault is one part of the subscription state that is not working.
type fault struct {
	reason string
	since  time.Time // the subscription was last known to work
	gap    bool      // messages may have been lost (not so while starting)
	// sub is the subscriber whose sync clears the fault (a slot's: the one
	// it was placed on; nil until placed), need that sync's sequence
	// number (0: not written yet).
	sub  *subscriber
	need uint64
}

// probePayload is the health probe: an ack no RemoteGroup waits for (ids
// are positive), published on this node's own ack channel.
var probePayload = wire.AppendAck(nil, -1)

// Ready implements Backplane: every subscription is in effect and the
// publish path works.
func (r *Redis) Ready() bool {
	if !r.started.Load() || r.closed.Load() {
		return false
	}
	return r.ready.Load() && !r.pubFailing.Load()
}

// probeChannel is the channel the health probe publishes on: this node's
// ack channel of its first configured hub ("" without hubs: a PING).
func (r *Redis) probeChannel() string {
	if len(r.cfg.Hubs) == 0 {
		return ""
	}
	hubs := make([]string, 0, len(r.cfg.Hubs))
	for h := range r.cfg.Hubs {
		hubs = append(hubs, h)
	}
	sort.Strings(hubs)
	return r.Prefix(hubs[0]) + ":internal:ack:" + r.name
}

// probe does a real round trip on the command connection: a publish on
// this node's own ack channel. A Redis that is paused (SIGSTOP) or
// unreachable without a reset turns the node not-ready within one
// HealthInterval; the first good round trip turns it back. And a publish
// that reaches no subscriber while this node believes itself subscribed
// means the command connection and the subscription connection reach
// different servers (Redis moved behind a stable address while the old
// one still runs): the subscriptions are restored where publishes go.
func (r *Redis) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HealthInterval)
	defer cancel()
	if r.probeCh == "" {
		var err error
		if r.cluster {
			err = r.cc.Ping(ctx).Err()
		} else {
			err = r.sc.Ping(ctx).Err()
		}
		r.setPublishFailing(err != nil, err)
		return
	}
	before := r.subscribedTo(r.probeCh)
	var n int64
	var err error
	if r.cluster {
		n, err = r.cc.SPublish(ctx, r.probeCh, probePayload).Result()
	} else {
		n, err = r.sc.Publish(ctx, r.probeCh, probePayload).Result()
	}
	r.setPublishFailing(err != nil, err)
	if err == nil && n == 0 && before && r.subscribedTo(r.probeCh) {
		r.notSubscribed(r.probeCh)
	}
}

// subscribedTo reports whether the node is ready on the subscription side
// and Redis confirmed its subscription to ch.
func (r *Redis) subscribedTo(ch string) bool {
	if !r.ready.Load() {
		return false
	}
	r.mu.RLock()
	rt, ok := r.routes[ch]
	r.mu.RUnlock()
	return ok && rt.confirmed
}

// notSubscribed handles a publish on ch, a channel this node subscribes
// to, that reached no subscriber: with a single server the subscription is
// not in effect where publishes go, and is restored. In a cluster the
// publish may instead have gone to a replica (the client's slot map lagging
// a failover; a replica passes SPUBLISH on to its shard but counts only its
// own subscribers): the client reloads its map, and the flusher checks the
// subscription where the slot is served (PUBSUB SHARDNUMSUB) before
// restoring it.
func (r *Redis) notSubscribed(ch string) {
	if r.cluster {
		r.cc.ReloadState(context.Background())
		r.mu.Lock()
		r.verify[hashSlot(ch)] = ch
		r.mu.Unlock()
		r.signal()
		return
	}
	r.subMu.Lock()
	var s *subscriber
	for _, x := range r.subs {
		s = x
	}
	r.subMu.Unlock()
	if s != nil {
		r.log.Warn("a publish to a channel this node subscribes to reached no subscriber; resubscribing", "channel", ch)
		s.restart(reasonNotSubscribed)
	}
}

func (r *Redis) setPublishFailing(failing bool, cause error) {
	if r.pubFailing.Swap(failing) != failing {
		if failing {
			r.log.Warn("redis backplane cannot publish; node not ready", "err", cause)
		} else {
			r.log.Info("redis backplane can publish again")
		}
	}
}

// health probes the publish path every HealthInterval (every eighth of it
// while the probe fails, so that the node is ready again soon after Redis
// is back) and keeps the down and gap time counters current.
// (Subscription connections watch their own liveness: aliveReader.)
func (r *Redis) health() {
	defer r.wg.Done()
	t := time.NewTimer(r.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
		r.stateMu.Lock()
		now := time.Now()
		r.accountDownLocked(now)
		r.accountGapLocked(now)
		r.stateMu.Unlock()
		r.probe()
		next := r.cfg.HealthInterval
		if r.pubFailing.Load() {
			next = max(next/8, 10*time.Millisecond)
		}
		t.Reset(next)
	}
}

// updateReadyLocked recomputes r.ready. stateMu must be held.
func (r *Redis) updateReadyLocked() { r.ready.Store(r.downN == 0 && r.everUp) }

// addFaultLocked records f in *slot (a subscriber's fault or a slot's) and
// counts it. stateMu must be held; *slot must be nil.
func (r *Redis) addFaultLocked(slot **fault, f *fault) {
	*slot = f
	f.gap = f.reason != reasonStart
	now := time.Now()
	r.downN++
	if r.downN == 1 && r.everUp && !r.closed.Load() {
		r.downSince, r.downCounted = now, now
		r.m.disconnects.Inc()
		r.m.connected.Dec()
		r.log.Warn("redis backplane not receiving; node not ready, messages published meanwhile are lost", "reason", f.reason)
	}
	if f.gap {
		if r.gapN == 0 {
			r.gapCounted = f.since
		}
		r.gapN++
	}
	r.updateReadyLocked()
}

// dropFaultLocked removes the fault in *slot without counting a gap (its
// subscriber was closed: its channels are gone or carried elsewhere, with
// faults of their own).
func (r *Redis) dropFaultLocked(slot **fault, now time.Time) {
	f := *slot
	*slot = nil
	if f.gap {
		r.accountGapLocked(now)
		r.gapN--
	}
	r.downLocked(now)
}

// dropSlotFaultLocked removes slot's fault, if any, without counting a
// gap (the slot has no channels any more). stateMu must be held.
func (r *Redis) dropSlotFaultLocked(slot uint16, now time.Time) {
	if f := r.slotFaults[slot]; f != nil {
		r.dropFaultLocked(&f, now)
		delete(r.slotFaults, slot)
	}
}

// endFaultLocked removes the fault in *slot, which was cleared now, and
// returns it for the gap report.
func (r *Redis) endFaultLocked(slot **fault, now time.Time) *fault {
	f := *slot
	*slot = nil
	if f.gap {
		r.m.gaps(f.reason).Inc()
		r.accountGapLocked(now)
		r.gapN--
	}
	r.downLocked(now)
	return f
}

// downLocked counts one fault less.
func (r *Redis) downLocked(now time.Time) {
	if r.downN == 1 {
		r.accountDownLocked(now) // while downN still counts this fault
	}
	r.downN--
	if r.downN == 0 && !r.closed.Load() {
		r.m.connected.Inc()
		if r.everUp {
			r.m.reconnects.Inc()
			r.log.Info("redis backplane receiving again", "down", now.Sub(r.downSince).Round(time.Millisecond))
		}
		r.everUp = true
	}
	r.updateReadyLocked()
}

// subscriptionLost records that s stopped working (its connection failed
// or could not be made). In a cluster the flusher then checks whether the
// server still serves s's slots.
func (r *Redis) subscriptionLost(s *subscriber, reason string, since time.Time, cause error) {
	r.stateMu.Lock()
	if s.closed || r.closed.Load() {
		r.stateMu.Unlock()
		return
	}
	first := s.fault == nil
	if first {
		r.addFaultLocked(&s.fault, &fault{reason: reason, since: since, sub: s})
	}
	// What was written on the failed connection no longer counts.
	s.fault.need = 0
	for _, f := range r.slotFaults {
		if f.sub == s {
			f.need = 0
		}
	}
	r.stateMu.Unlock()
	if first {
		r.log.Warn("redis subscription connection lost; resubscribing", "redis", s.addr, "reason", reason, "err", cause)
	} else {
		r.log.Debug("redis subscription connection still down", "redis", s.addr, "err", cause)
	}
	if r.cluster {
		r.mu.Lock()
		r.checks[s] = struct{}{}
		r.mu.Unlock()
		r.signal()
	}
}

// slotLost records that the subscriptions of a cluster slot in use are not
// in effect on the connection that carried them (Redis dropped or
// redirected them) and asks the flusher to place them again, on hint if
// set (the server a MOVED named), else where the topology says, read
// first from source (the server that dropped them knows who took over).
func (r *Redis) slotLost(slot uint16, reason string, since time.Time, hint, source string) {
	r.mu.Lock()
	if r.slots.use[slot] == 0 {
		r.mu.Unlock()
		return
	}
	if old, ok := r.reroutes[slot]; !ok || old == "" {
		r.reroutes[slot] = hint
	}
	if source != "" {
		r.prefer[source] = true
	}
	r.mu.Unlock()
	r.stateMu.Lock()
	if f := r.slotFaults[slot]; f != nil {
		// Already being restored, and that failed too (a MOVED to the
		// SSUBSCRIBE that restored it): only a new placement clears it,
		// not the sync PING written after the failed one.
		f.sub, f.need = nil, 0
	} else if !r.closed.Load() {
		r.addFaultLocked(&f, &fault{reason: reason, since: since})
		r.slotFaults[slot] = f
	}
	r.stateMu.Unlock()
	r.signal()
}

// dropped handles Redis dropping s's subscription to ch (an unsubscribe
// confirmation this node did not ask for).
func (r *Redis) dropped(s *subscriber, ch string) {
	if !r.cluster {
		r.log.Warn("redis dropped a subscription; resubscribing", "channel", ch)
		s.restart(reasonNotSubscribed)
		return
	}
	slot := hashSlot(ch)
	r.mu.RLock()
	_, active := r.active[ch]
	carried := r.slots.on(slot, s.addr)
	r.mu.RUnlock()
	if active && carried {
		// Redis dropped the slot before its notice was read: the gap
		// starts no later than the read before (publishes executed after
		// the drop, but answered before the notice was read, are in it).
		r.slotLost(slot, reasonSlotMoved, s.prevRead, "", s.addr)
	}
}

// moved handles a MOVED reply to a subscription command s wrote for slot:
// the slot is served by addr.
func (r *Redis) moved(s *subscriber, slot uint16, addr string) {
	r.mu.RLock()
	carried := r.slots.on(slot, s.addr)
	r.mu.RUnlock()
	if carried {
		r.slotLost(slot, reasonSlotMoved, s.prevRead, addr, "")
	}
}

// writtenLocked records that everything s carries was subscribed on its
// new connection before the sync PING seq. stateMu and s.wmu must be held
// (writeSlots relies on the latter).
func (r *Redis) writtenLocked(s *subscriber, seq uint64) {
	if s.fault != nil {
		s.fault.need = seq
	}
	for _, f := range r.slotFaults {
		if f.sub == s {
			f.need = seq
		}
	}
}

// synced handles the answer to s's sync PING seq: the faults it clears end
// here, and their gap is counted and logged. In a cluster they end only
// once the server has also said that it is the master of the slots s
// carries (the flusher asks it: confirmMasters), because a replica takes
// an SSUBSCRIBE for its shard without a word, and passes on only what its
// master sends it over the cluster bus: a subscription placed on a server
// a stale topology still named master, just demoted by a failover, is
// acknowledged and then hears nothing while the new master does not yet
// count it among its replicas.
func (r *Redis) synced(s *subscriber, seq uint64) {
	if r.cluster {
		r.stateMu.Lock()
		pending := !s.closed && r.clearsLocked(s, seq)
		r.stateMu.Unlock()
		if pending {
			r.mu.Lock()
			r.confirms[s] = max(r.confirms[s], seq)
			r.mu.Unlock()
			r.signal()
		}
		return
	}
	r.endSynced(s, seq)
}

// clearsLocked reports whether s's sync PING seq clears a fault.
// stateMu must be held.
func (r *Redis) clearsLocked(s *subscriber, seq uint64) bool {
	if f := s.fault; f != nil && f.need != 0 && f.need <= seq {
		return true
	}
	for _, f := range r.slotFaults {
		if f.sub == s && f.need != 0 && f.need <= seq {
			return true
		}
	}
	return false
}

// endSynced ends the faults s's sync PING seq cleared, and counts and logs
// their gap.
func (r *Redis) endSynced(s *subscriber, seq uint64) {
	r.stateMu.Lock()
	if s.closed {
		r.stateMu.Unlock()
		return
	}
	now := time.Now()
	var ended []*fault
	var slots int
	if f := s.fault; f != nil && f.need != 0 && f.need <= seq {
		ended = append(ended, r.endFaultLocked(&s.fault, now))
	}
	for slot, f := range r.slotFaults {
		if f.sub == s && f.need != 0 && f.need <= seq {
			ff := f
			ended = append(ended, r.endFaultLocked(&ff, now))
			delete(r.slotFaults, slot)
			slots++
		}
	}
	r.stateMu.Unlock()
	r.reportGap(s, ended, slots, now)
}

// reportGap logs the gaps of the faults that just ended: one line, with
// the earliest start, for the channels that were deaf.
func (r *Redis) reportGap(s *subscriber, ended []*fault, slots int, now time.Time) {
	var from time.Time
	reasons := map[string]int{}
	for _, f := range ended {
		if !f.gap {
			continue
		}
		if from.IsZero() || f.since.Before(from) {
			from = f.since
		}
		reasons[f.reason]++
	}
	if from.IsZero() {
		return
	}
	var why []string
	for k := range reasons {
		why = append(why, k)
	}
	sort.Strings(why)
	r.log.Warn("redis subscriptions restored after a gap; messages published on their channels during the gap were lost",
		"redis", s.addr, "reason", strings.Join(why, ","), "slots", slots,
		"gap_from", from.UTC().Format(time.RFC3339Nano), "gap_to", now.UTC().Format(time.RFC3339Nano),
		"gap", now.Sub(from).Round(time.Millisecond))
}

// accountDownLocked adds the down time since the last call to the counter.
// stateMu must be held.
func (r *Redis) accountDownLocked(now time.Time) {
	if r.downN > 0 && r.everUp && now.After(r.downCounted) {
		r.m.downSeconds.Add(now.Sub(r.downCounted).Seconds())
		r.downCounted = now
	}
}

// accountGapLocked adds the gap time since the last call to the counter:
// wall time during which at least one subscription was in a gap, from the
// moment it was last known to work. stateMu must be held.
func (r *Redis) accountGapLocked(now time.Time) {
	if r.gapN > 0 && now.After(r.gapCounted) {
		r.m.gapSeconds.Add(now.Sub(r.gapCounted).Seconds())
		r.gapCounted = now
	}
}

// faultSummary describes what keeps the node from being ready (for logs
// and tests).
func (r *Redis) faultSummary() string {
	r.subMu.Lock()
	subs := make([]*subscriber, 0, len(r.subs))
	for _, s := range r.subs {
		subs = append(subs, s)
	}
	r.subMu.Unlock()
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	var parts []string
	if r.starting != nil {
		parts = append(parts, "starting")
	}
	for _, s := range subs {
		if s.fault != nil {
			parts = append(parts, s.addr+": "+s.fault.reason)
		}
	}
	if n := len(r.slotFaults); n > 0 {
		parts = append(parts, strconv.Itoa(n)+" slots")
	}
	if r.pubFailing.Load() {
		parts = append(parts, "publish failing")
	}
	return fmt.Sprintf("faults %d: %s", r.downN, strings.Join(parts, ", "))
}
