package backplane

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// subscriber is one subscription connection (a go-redis PubSub) and the
// goroutine that reads it (loop, in redis_receive.go). A single server
// needs one; a cluster needs one per hash slot in use, because SSUBSCRIBE,
// and go-redis's resubscribe after a reconnect, may only name channels of
// one slot.
//
// The read goroutine calls Receiver.Deliver itself: nothing is buffered
// between Redis and the receiver, so nothing is dropped here. A receiver
// that is slow holds up reading; Redis then buffers for this client up to
// its client-output-buffer-limit for pubsub (default 32 MB hard, 8 MB for
// 60 s soft) and beyond that disconnects it; the reconnect is counted
// and the messages in between are lost.
type subscriber struct {
	r     *Redis
	slot  uint16
	ps    *redis.PubSub
	nchan int // flusher-owned: channels subscribed through ps

	down   atomic.Bool // written under r.stateMu
	closed bool        // guarded by r.stateMu
	recvd  atomic.Bool // something arrived since the last health tick
	done   chan struct{}

	// Receive-goroutine scratch, reused for every message.
	msg      Message
	excluded []string
}

// newSubscriber creates the subscription connection for slot with its
// first channels and starts reading it. Until the backplane has been up
// once, a new subscriber counts as down until Redis confirms it; later ones
// count as up (a failure marks them down).
func (r *Redis) newSubscriber(ctx context.Context, slot uint16, chans []string) *subscriber {
	s := &subscriber{r: r, slot: slot, nchan: len(chans), done: make(chan struct{}), excluded: make([]string, 0, 16)}
	r.stateMu.Lock()
	if !r.everUp {
		s.down.Store(true)
		r.downN++
		r.updateReadyLocked()
	}
	r.stateMu.Unlock()
	// The first subscribe dials: in a cluster, the node that owns the slot
	// of chans[0]. The read loop starts after it, so that it does not dial
	// a random node with no channels.
	var err error
	if r.cluster {
		s.ps = r.cc.SSubscribe(ctx)
		err = s.ps.SSubscribe(ctx, chans...)
	} else {
		s.ps = r.sc.Subscribe(ctx)
		err = s.ps.Subscribe(ctx, chans...)
	}
	r.m.subscribeCmds.Inc()
	if err != nil {
		r.setDown(s, true, err)
		r.log.Debug("subscribe not written; the reconnect will restore it", "channels", len(chans), "err", err)
	}
	go s.loop()
	return s
}

func (s *subscriber) subscribe(ctx context.Context, chans []string) error {
	if s.r.cluster {
		return s.ps.SSubscribe(ctx, chans...)
	}
	return s.ps.Subscribe(ctx, chans...)
}

func (s *subscriber) isClosed() bool {
	s.r.stateMu.Lock()
	defer s.r.stateMu.Unlock()
	return s.closed
}

// close closes the PubSub and waits for the read loop to end.
func (s *subscriber) close() {
	r := s.r
	r.stateMu.Lock()
	if s.closed {
		r.stateMu.Unlock()
		return
	}
	s.closed = true
	if s.down.Load() {
		s.down.Store(false)
		r.downN--
		if r.downN == 0 && r.everUp && !r.closed.Load() {
			// The last subscriber that was down is gone: up again.
			r.accountDownLocked(time.Now())
			r.m.connected.Inc()
		}
		r.updateReadyLocked()
	}
	r.stateMu.Unlock()
	_ = s.ps.Close()
	<-s.done
}
