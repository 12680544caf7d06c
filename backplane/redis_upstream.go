package backplane

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisUpstream appends client events to a Redis Stream per hub,
// P:upstream. Application servers read it with consumer groups
// (XREADGROUP). The entry fields are documented in the package
// documentation.
//
// Each stream is bounded three ways, whether an app reads it or not:
//
//   - by entries: XADD MAXLEN ~ RedisConfig.UpstreamMaxLen;
//   - by bytes: the MAXLEN given is lowered to UpstreamMaxBytes divided by
//     the stream's bytes per entry, estimated from what this node writes
//     (rising at once with a larger entry, falling slowly) and, at most
//     once a second per stream, measured in Redis (MEMORY USAGE / XLEN,
//     which sees every node's entries);
//   - by age: XTRIM MINID ~ (now - UpstreamMaxAge) once per stream and
//     batch.
//
// The "~" bounds are Redis' approximate trimming: whole stream nodes (100
// entries or 4 KiB by default) go at once, so a stream may exceed a bound
// by up to one node.
//
// Send only queues (RedisConfig.UpstreamBuffer events); one goroutine
// writes them in pipelined batches. Events that do not fit, or that are
// sent while Redis is unreachable, are refused with ErrUnavailable and
// counted as dropped; a batch that fails to write is counted as errors.
// With RedisConfig.UpstreamURL the streams live on their own Redis: Send
// then does not depend on the backplane being up, and a write that fails
// there (down, or refused at its maxmemory) is counted as errors.
type RedisUpstream struct {
	r      *Redis
	client redis.UniversalClient // the backplane's, or own (UpstreamURL)
	own    *redis.Client
	events chan Event
	stop   chan struct{}
	done   chan struct{}
	mu     sync.RWMutex // Send holds it shared; close exclusive
	closed bool

	bounds map[string]*streamBound // by stream; the writer goroutine only
}

// streamBound is what the writer knows of one stream's bytes per entry.
type streamBound struct {
	own      float64   // this node's entries: up at once, down slowly
	measured float64   // MEMORY USAGE / XLEN, every node's entries
	at       time.Time // when measured was last asked for
}

const (
	upstreamBatch = 256
	// entryOverhead approximates a stream entry's bytes in Redis besides
	// its fields' names and values (id, flags, listpack lengths).
	entryOverhead = 24
	fieldOverhead = 4
	// measureEvery: how often a stream's memory is measured in Redis.
	measureEvery = time.Second
)

// Defaults of the upstream streams' bounds.
const (
	DefaultUpstreamMaxBytes = 64 << 20  // RedisConfig.UpstreamMaxBytes, per hub
	DefaultUpstreamMaxAge   = time.Hour // RedisConfig.UpstreamMaxAge
)

// upstreamOptions are the options of the upstream's own Redis client, nil
// without RedisConfig.UpstreamURL.
func upstreamOptions(cfg RedisConfig) (*redis.Options, error) {
	if cfg.UpstreamURL == "" {
		return nil, nil
	}
	opt, err := redis.ParseURL(cfg.UpstreamURL)
	if err != nil {
		return nil, fmt.Errorf("backplane: upstream redis URL %q: %w", cfg.UpstreamURL, err)
	}
	commandOptions(opt, cfg)
	return opt, nil
}

// Upstream returns the backplane's upstream (created on first use). It
// shares the backplane's Redis client and is closed with it.
func (r *Redis) Upstream() *RedisUpstream {
	r.upOnce.Do(func() {
		u := &RedisUpstream{
			r:      r,
			client: r.client,
			events: make(chan Event, r.cfg.UpstreamBuffer),
			stop:   make(chan struct{}),
			done:   make(chan struct{}),
			bounds: make(map[string]*streamBound),
		}
		if opt, _ := upstreamOptions(r.cfg); opt != nil { // validated by NewRedis
			u.own = redis.NewClient(opt)
			u.client = u.own
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
	if u.own == nil && !u.r.Ready() {
		u.r.m.upstreamDropped.Inc()
		return fmt.Errorf("backplane: upstream event for %s: %w", e.Hub, ErrUnavailable)
	}
	ev := *e
	ev.Record = nil // valid only during Send; the stream entries carry JSON
	select {
	case u.events <- ev:
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
	now := time.Now()
	pipe := u.client.Pipeline()
	adds := make([]*redis.StringCmd, len(batch))
	streams := make(map[string]*streamBound, 1)
	for i := range batch {
		e := &batch[i]
		stream := u.Stream(e.Hub)
		b := u.bound(stream)
		streams[stream] = b
		fields := eventFields(e, u.r.name)
		adds[i] = pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: stream,
			MaxLen: b.maxLen(entrySize(fields), u.r.cfg.UpstreamMaxLen, u.r.cfg.UpstreamMaxBytes),
			Approx: true,
			Values: fields,
		})
	}
	minID := strconv.FormatInt(now.Add(-u.r.cfg.UpstreamMaxAge).UnixMilli(), 10) + "-0"
	var usage []*redis.IntCmd
	var lens []*redis.IntCmd
	var measured []*streamBound
	for stream, b := range streams {
		pipe.XTrimMinIDApprox(ctx, stream, minID, 0)
		if now.Sub(b.at) >= measureEvery {
			b.at = now
			usage = append(usage, pipe.MemoryUsage(ctx, stream))
			lens = append(lens, pipe.XLen(ctx, stream))
			measured = append(measured, b)
		}
	}
	_, err := pipe.Exec(ctx)
	for i, b := range measured {
		if n, l := usage[i].Val(), lens[i].Val(); usage[i].Err() == nil && lens[i].Err() == nil && l > 0 {
			b.measured = float64(n) / float64(l)
		}
	}
	failed := 0
	for _, c := range adds {
		if c.Err() != nil {
			failed++
		}
	}
	u.r.m.upstreamSent.Add(len(batch) - failed)
	if failed > 0 {
		u.r.m.upstreamErrors.Add(failed)
		u.r.errLog.warn(u.r.log, "upstream events not written", "events", failed, "err", err)
	}
}

// bound returns the writer's knowledge of stream's size.
func (u *RedisUpstream) bound(stream string) *streamBound {
	b := u.bounds[stream]
	if b == nil {
		if len(u.bounds) >= 4096 { // streams are per hub: never in practice
			clear(u.bounds)
		}
		b = &streamBound{}
		u.bounds[stream] = b
	}
	return b
}

// maxLen folds an entry of size bytes into the estimate and returns the
// MAXLEN that keeps the stream within maxBytes and maxLen entries.
func (b *streamBound) maxLen(size int, maxLen, maxBytes int64) int64 {
	s := float64(size)
	if s >= b.own {
		b.own = s
	} else {
		b.own -= (b.own - s) / 64
	}
	per := max(b.own, b.measured, 1)
	return max(min(maxLen, int64(float64(maxBytes)/per)), 1)
}

// entrySize approximates the bytes of a stream entry with fields in Redis.
func entrySize(fields []any) int {
	n := entryOverhead
	for _, f := range fields {
		switch v := f.(type) {
		case string:
			n += len(v) + fieldOverhead
		case []byte:
			n += len(v) + fieldOverhead
		}
	}
	return n
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
		if e.Stream {
			v = append(v, "messageType", "streamInvocation")
		}
		if len(e.StreamIDs) > 0 {
			v = append(v, "streamIds", jsonStrings(e.StreamIDs))
		}
	case EventStreamItem:
		item := e.Arguments
		if len(item) == 0 {
			item = []byte("null")
		}
		v = append(v, "invocationId", e.InvocationID, "item", item)
	case EventCompletion:
		v = append(v, "invocationId", e.InvocationID)
		if e.HasError {
			v = append(v, "error", e.Error)
		} else if len(e.Arguments) > 0 {
			v = append(v, "result", e.Arguments)
		}
	case EventCancelInvocation:
		v = append(v, "invocationId", e.InvocationID)
	case EventConnected:
		v = appendContext(v, e.Context)
	case EventDisconnected:
		v = append(v, "reason", e.Reason)
		if len(e.Abandoned) > 0 {
			v = append(v, "abandoned", jsonStrings(e.Abandoned))
		}
	}
	return append(v, "server", server)
}

// jsonStrings is ids as a JSON array of strings.
func jsonStrings(ids []string) []byte {
	b, _ := json.Marshal(ids) // strings always encode
	return b
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
	if u.own != nil {
		_ = u.own.Close()
	}
}
