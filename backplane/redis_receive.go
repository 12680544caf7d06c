package backplane

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// The receive path: each subscriber's read loop, and the decoding and
// dispatch of what it reads (invocations to Receiver.Deliver, group
// commands and acks to redis_groups.go).

// loop's retry backoff after the connection failed.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// loop reads the subscription connection until the subscriber is closed.
// go-redis reconnects and resubscribes every channel of the PubSub
// (including those added while it was down) on the first Receive after a
// failure; loop retries with a capped backoff.
func (s *subscriber) loop() {
	defer close(s.done)
	r := s.r
	ctx := context.Background()
	backoff := minBackoff
	for {
		msg, err := s.ps.Receive(ctx)
		if err != nil {
			if s.isClosed() || r.closed.Load() {
				return
			}
			var rerr redis.Error
			if errors.As(err, &rerr) {
				// An error reply (e.g. a rejected command): the
				// connection itself is fine.
				r.errLog.warn(r.log, "redis error on the subscription connection", "err", err)
				continue
			}
			r.setDown(s, true, err)
			select {
			case <-time.After(backoff):
			case <-s.r.stop:
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		s.recvd.Store(true)
		if s.down.Load() {
			r.setDown(s, false, nil)
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.handle(s, m.Channel, m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
				r.confirm(m.Channel)
			}
		}
	}
}

// handle decodes one message from Redis and hands it on. It runs on the
// subscriber's receive goroutine; s.msg and s.excluded are its scratch.
func (r *Redis) handle(s *subscriber, channel, payload string) {
	r.mu.RLock()
	rt, ok := r.routes[channel]
	r.mu.RUnlock()
	if !ok {
		r.m.unrouted.Inc()
		return
	}
	r.m.received(rt.kind).Inc()
	// go-redis allocated payload for this message and nobody writes to it:
	// the bytes, and sub-slices and strings made from them, are immutable
	// and may be kept (Message.Payload is).
	b := unsafe.Slice(unsafe.StringData(payload), len(payload))
	switch rt.kind {
	case chanGroups:
		r.handleGroupCommand(rt.hub, channel, b)
	case chanAck:
		r.handleAck(channel, b)
	default:
		ex, js, err := wire.ReadInvocation(b, s.excluded[:0])
		if err == nil && (len(js) == 0 || js[len(js)-1] != 0x1e) {
			err = fmt.Errorf("%w: json entry is not a record ending in 0x1e", wire.ErrMalformed)
		}
		if err != nil {
			r.decodeError(channel, err)
			return
		}
		if cap(ex) <= 1024 {
			s.excluded = ex[:0]
		}
		s.msg = Message{Hub: rt.hub, Kind: Kind(rt.kind), Name: rt.name, Excluded: ex, Payload: js}
		r.recv.Deliver(&s.msg)
		s.msg = Message{}
	}
}

func (r *Redis) decodeError(channel string, err error) {
	r.m.decodeErrors.Inc()
	r.errLog.warn(r.log, "undecodable backplane message dropped", "channel", channel, "err", err)
}
