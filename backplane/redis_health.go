package backplane

import (
	"context"
	"time"
)

// Connection health and readiness: the subscription connections' up/down
// state (under r.stateMu), the publish round trip, the health ticker that
// pings idle subscriptions, and the down-time accounting.

// Ready implements Backplane: every subscription connection is up.
func (r *Redis) Ready() bool {
	if !r.started.Load() || r.closed.Load() {
		return false
	}
	return r.ready.Load() && !r.pubFailing.Load()
}

// checkPublish does a real round trip on the command connection (a PING;
// a subscription's ping only proves the write). A Redis that is paused
// (SIGSTOP) or unreachable without a reset turns the node not-ready within
// one HealthInterval; the first good round trip turns it back.
func (r *Redis) checkPublish() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HealthInterval)
	defer cancel()
	var err error
	if r.cluster {
		err = r.cc.Ping(ctx).Err()
	} else {
		err = r.sc.Ping(ctx).Err()
	}
	r.setPublishFailing(err != nil, err)
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

// updateReadyLocked recomputes r.ready. stateMu must be held.
func (r *Redis) updateReadyLocked() { r.ready.Store(r.downN == 0 && r.everUp) }

// health pings idle subscription connections (a failed ping makes go-redis
// reconnect and resubscribe) and keeps the down-time counter current.
func (r *Redis) health() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.HealthInterval)
	defer t.Stop()
	var subs []*subscriber
	for {
		select {
		case <-t.C:
		case <-r.stop:
			return
		}
		r.stateMu.Lock()
		r.accountDownLocked(time.Now())
		r.stateMu.Unlock()
		r.checkPublish()
		subs = subs[:0]
		r.subMu.Lock()
		for _, s := range r.subs {
			subs = append(subs, s)
		}
		r.subMu.Unlock()
		for _, s := range subs {
			if s.recvd.Swap(false) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.HealthInterval)
			_ = s.ps.Ping(ctx)
			cancel()
		}
	}
}

// setDown records a subscriber's connection state change. Once Close has
// accounted for the state, changes are ignored (a read loop still running
// must not count a reconnect, or connected 1, after Close).
func (r *Redis) setDown(s *subscriber, down bool, cause error) {
	if s.down.Load() == down {
		return
	}
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	if s.closed || r.closed.Load() || s.down.Load() == down {
		return
	}
	s.down.Store(down)
	now := time.Now()
	if down {
		r.downN++
		if r.downN == 1 && r.everUp {
			r.downSince, r.downCounted = now, now
			r.m.disconnects.Inc()
			r.m.connected.Dec()
			r.log.Warn("redis backplane disconnected; messages published meanwhile are lost", "err", cause)
		}
		r.updateReadyLocked()
		return
	}
	// The down time since the last health tick, counted while downN still
	// says down (an outage shorter than HealthInterval counted nothing).
	r.accountDownLocked(now)
	r.downN--
	if r.downN == 0 {
		r.m.connected.Inc()
		if r.everUp {
			r.m.reconnects.Inc()
			r.log.Info("redis backplane reconnected", "down", now.Sub(r.downSince).Round(time.Millisecond))
		}
		r.everUp = true
	}
	r.updateReadyLocked()
}

// accountDownLocked adds the down time since the last call to the counter.
// stateMu must be held.
func (r *Redis) accountDownLocked(now time.Time) {
	if r.downN > 0 && r.everUp && now.After(r.downCounted) {
		r.m.downSeconds.Add(now.Sub(r.downCounted).Seconds())
		r.downCounted = now
	}
}
