package backplane

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Relay on Redis (relay.go): each node subscribes to its own
// edgeplane:relay:{node} when a relay handler is set; presence is kept
// in two sorted sets scored by expiry, written and read in one MULTI.

var _ Relay = (*Redis)(nil)

// chanRelay is this node's relay channel.
const chanRelay chanKind = 13

// redisRelay is the Redis backplane's relay state.
type redisRelay struct {
	handle func(b []byte)

	mu        sync.Mutex
	announced map[string]bool // host members this node wrote
}

// NodeName implements Relay: the node's ServerName.
func (r *Redis) NodeName() string { return r.name }

// HandleRelay implements Relay.
func (r *Redis) HandleRelay(h func(b []byte)) {
	r.rl = &redisRelay{handle: h, announced: map[string]bool{}}
}

// RelayChannel is the channel node's relay messages travel on.
func RelayChannel(node string) string { return relayChannel + node }

// subscribeRelayLocked queues this node's relay channel. r.mu must be
// held.
func (r *Redis) subscribeRelayLocked() {
	if r.rl != nil {
		r.wantLocked(RelayChannel(r.name), route{kind: chanRelay}, true)
	}
}

// SendRelay implements Relay.
func (r *Redis) SendRelay(ctx context.Context, node string, b []byte) error {
	if r.closed.Load() {
		return ErrClosed
	}
	ch := RelayChannel(node)
	if !r.Ready() {
		r.m.lost.Inc()
		return fmt.Errorf("backplane: relay to %s: %w", node, ErrUnavailable)
	}
	n, err := r.publish(ctx, ch, b)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("backplane: relay to %s: no node listens on %s: %w", node, ch, ErrNotFound)
	}
	return nil
}

// hostMember is a host's member in RelayHostsKey: node, hub and server
// separated by 0x1f (node and hub names cannot hold it).
func hostMember(h RelayHost) string { return h.Node + "\x1f" + h.Hub + "\x1f" + h.Server }

// Announce implements Relay.
func (r *Redis) Announce(ctx context.Context, hosts []RelayHost, ttl time.Duration) (*Presence, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if r.rl == nil {
		return nil, fmt.Errorf("backplane: announce: no relay handler")
	}
	now := time.Now()
	exp := float64(now.Add(ttl).UnixMilli())
	cur := make(map[string]bool, len(hosts))
	members := make([]redis.Z, 0, len(hosts))
	for _, h := range hosts {
		h.Node = r.name
		m := hostMember(h)
		if !cur[m] {
			cur[m] = true
			members = append(members, redis.Z{Score: exp, Member: m})
		}
	}
	r.rl.mu.Lock()
	var gone []any
	for m := range r.rl.announced {
		if !cur[m] {
			gone = append(gone, m)
		}
	}
	r.rl.announced = cur
	r.rl.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	nowMS := strconv.FormatInt(now.UnixMilli(), 10)
	var nodes *redis.ZSliceCmd
	var hs *redis.StringSliceCmd
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, RelayNodesKey, redis.Z{Score: exp, Member: r.name})
		if len(members) > 0 {
			p.ZAdd(ctx, RelayHostsKey, members...)
		}
		if len(gone) > 0 {
			p.ZRem(ctx, RelayHostsKey, gone...)
		}
		p.ZRemRangeByScore(ctx, RelayNodesKey, "-inf", "("+nowMS)
		p.ZRemRangeByScore(ctx, RelayHostsKey, "-inf", "("+nowMS)
		nodes = p.ZRangeByScoreWithScores(ctx, RelayNodesKey, &redis.ZRangeBy{Min: nowMS, Max: "+inf"})
		hs = p.ZRangeByScore(ctx, RelayHostsKey, &redis.ZRangeBy{Min: nowMS, Max: "+inf"})
		return nil
	})
	if err != nil {
		r.rl.mu.Lock()
		r.rl.announced = map[string]bool{} // unknown: write everything next time
		for m := range cur {
			r.rl.announced[m] = true
		}
		for _, m := range gone {
			r.rl.announced[m.(string)] = true // still to remove
		}
		r.rl.mu.Unlock()
		return nil, fmt.Errorf("backplane: announce presence: %w: %w", ErrUnavailable, err)
	}
	p := &Presence{Nodes: make(map[string]time.Time, len(nodes.Val()))}
	for _, z := range nodes.Val() {
		name, _ := z.Member.(string)
		p.Nodes[name] = time.UnixMilli(int64(z.Score))
	}
	for _, m := range hs.Val() {
		parts := strings.SplitN(m, "\x1f", 3)
		if len(parts) == 3 {
			p.Hosts = append(p.Hosts, RelayHost{Node: parts[0], Hub: parts[1], Server: parts[2]})
		}
	}
	return p, nil
}

// Withdraw implements Relay.
func (r *Redis) Withdraw(ctx context.Context) error {
	if r.closed.Load() || r.rl == nil {
		return ErrClosed
	}
	r.rl.mu.Lock()
	gone := make([]any, 0, len(r.rl.announced))
	for m := range r.rl.announced {
		gone = append(gone, m)
	}
	r.rl.announced = map[string]bool{}
	r.rl.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, RelayNodesKey, r.name)
		if len(gone) > 0 {
			p.ZRem(ctx, RelayHostsKey, gone...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("backplane: withdraw presence: %w: %w", ErrUnavailable, err)
	}
	return nil
}
