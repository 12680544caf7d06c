package backplane

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisUpstream appends client events to a Redis Stream per hub,
// P:upstream, bounded with XADD MAXLEN ~ RedisConfig.UpstreamMaxLen.
// Application servers read it with consumer groups (XREADGROUP). The entry
// fields are documented in the package documentation.
//
// Send only queues (RedisConfig.UpstreamBuffer events); one goroutine
// writes them in pipelined batches. Events that do not fit, or that are
// sent while Redis is unreachable, are refused with ErrUnavailable and
// counted as dropped; a batch that fails to write is counted as errors.
type RedisUpstream struct {
	r      *Redis
	events chan Event
	stop   chan struct{}
	done   chan struct{}
	mu     sync.RWMutex // Send holds it shared; close exclusive
	closed bool
}

const upstreamBatch = 256

// Upstream returns the backplane's upstream (created on first use). It
// shares the backplane's Redis client and is closed with it.
func (r *Redis) Upstream() *RedisUpstream {
	r.upOnce.Do(func() {
		u := &RedisUpstream{
			r:      r,
			events: make(chan Event, r.cfg.UpstreamBuffer),
			stop:   make(chan struct{}),
			done:   make(chan struct{}),
		}
		go u.loop()
		r.upstream = u
	})
	return r.upstream
}

// Stream is the name of hub's upstream stream.
func (u *RedisUpstream) Stream(hub string) string { return u.r.Prefix(hub) + ":upstream" }

// Send implements Upstream. It never blocks on I/O.
func (u *RedisUpstream) Send(e *Event) error {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.closed {
		return ErrClosed
	}
	if !u.r.Ready() {
		u.r.m.upstreamDropped.Inc()
		return fmt.Errorf("backplane: upstream event for %s: %w", e.Hub, ErrUnavailable)
	}
	select {
	case u.events <- *e:
		return nil
	default:
		u.r.m.upstreamDropped.Inc()
		return fmt.Errorf("backplane: upstream buffer full (%d events): %w", cap(u.events), ErrUnavailable)
	}
}

func (u *RedisUpstream) loop() {
	defer close(u.done)
	batch := make([]Event, 0, upstreamBatch)
	for {
		select {
		case e := <-u.events:
			batch = append(batch[:0], e)
		case <-u.stop:
			// Drain what was accepted, then stop.
			for {
				batch = batch[:0]
				for len(batch) < upstreamBatch {
					select {
					case e := <-u.events:
						batch = append(batch, e)
						continue
					default:
					}
					break
				}
				if len(batch) == 0 {
					return
				}
				u.write(batch)
			}
		}
	more:
		for len(batch) < upstreamBatch {
			select {
			case e := <-u.events:
				batch = append(batch, e)
			default:
				break more
			}
		}
		u.write(batch)
		clear(batch) // drop references to arguments
	}
}

func (u *RedisUpstream) write(batch []Event) {
	ctx, cancel := context.WithTimeout(context.Background(), u.r.cfg.PublishTimeout)
	defer cancel()
	// An app answers a connected event or an invocation by publishing to
	// P:connection:{id}: make sure this node's subscription to it is
	// confirmed first, or the reply could arrive before it and be lost
	// (likely on a cluster, where the channel's slot may need a new
	// connection). Bounded by the publish time-out.
	wctx, wcancel := context.WithTimeout(ctx, u.r.cfg.PublishTimeout/2)
	defer wcancel()
	for i := range batch {
		e := &batch[i]
		if e.ConnID == "" || e.Kind == EventDisconnected {
			continue
		}
		if err := u.r.WaitSubscribed(wctx, e.Hub, Connection, e.ConnID); err != nil {
			u.r.m.upstreamUnconfirmed.Inc()
			break // write anyway: late is better than never
		}
	}
	pipe := u.r.client.Pipeline()
	for i := range batch {
		e := &batch[i]
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: u.Stream(e.Hub),
			MaxLen: u.r.cfg.UpstreamMaxLen,
			Approx: true,
			Values: eventFields(e, u.r.name),
		})
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		u.r.m.upstreamSent.Add(len(batch))
		return
	}
	failed := 0
	for _, c := range cmds {
		if c.Err() != nil {
			failed++
		}
	}
	if len(cmds) == 0 {
		failed = len(batch)
	}
	u.r.m.upstreamErrors.Add(failed)
	u.r.m.upstreamSent.Add(len(batch) - failed)
	u.r.errLog.warn(u.r.log, "upstream events not written", "events", failed, "err", err)
}

// eventFields are the stream entry's fields, in the order documented in
// doc.go. Empty optional fields are left out.
func eventFields(e *Event, server string) []any {
	v := make([]any, 0, 16)
	v = append(v, "type", e.Kind.String(), "hub", e.Hub, "connectionId", e.ConnID)
	if e.UserID != "" {
		v = append(v, "userId", e.UserID)
	}
	switch e.Kind {
	case EventInvocation:
		if e.InvocationID != "" {
			v = append(v, "invocationId", e.InvocationID)
		}
		args := e.Arguments
		if len(args) == 0 {
			args = []byte("[]")
		}
		v = append(v, "target", e.Target, "arguments", args)
	case EventConnected:
		v = appendContext(v, e.Context)
	case EventDisconnected:
		v = append(v, "reason", e.Reason)
	}
	return append(v, "server", server)
}

// appendContext adds a connected event's request context, in the order
// documented in doc.go; empty parts are left out.
func appendContext(v []any, c *ConnectContext) []any {
	if c == nil {
		return v
	}
	if c.RemoteAddr != "" {
		v = append(v, "remoteAddress", c.RemoteAddr)
	}
	if c.Query != "" {
		v = append(v, "query", c.Query)
	}
	if len(c.Headers) > 0 {
		if h, err := json.Marshal(c.Headers); err == nil { // a map of strings always encodes
			v = append(v, "headers", h)
		}
	}
	if len(c.Claims) > 0 {
		v = append(v, "claims", c.Claims)
	}
	if c.Truncated {
		v = append(v, "truncated", "true")
	}
	return v
}

// close stops accepting events and writes the accepted ones (for at most
// PublishTimeout per batch).
func (u *RedisUpstream) close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	u.mu.Unlock()
	close(u.stop)
	select {
	case <-u.done:
	case <-time.After(2 * u.r.cfg.PublishTimeout):
		u.r.log.Warn("upstream writer did not finish in time", "queued", len(u.events))
	}
}
