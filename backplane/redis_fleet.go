package backplane

import (
	"context"
	"fmt"
	"time"
)

// Fleet commands on Redis (fleet.go): published on P:internal:edgeplane,
// which every edgeplane node subscribes to for every hub it serves; the
// replies come back on the asking node's ack channel, matched to the
// command by its id (drawn from the same counter as group-command acks, so
// the two never collide).

// fleetChannel is the suffix of a hub's fleet-command channel.
const fleetChannel = ":internal:edgeplane"

// HandleCommands implements Fleet.
func (r *Redis) HandleCommands(h CommandHandler) { r.cmd = h }

// Command implements Fleet.
func (r *Redis) Command(ctx context.Context, hub string, c *Command, want int) ([]Reply, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if r.ensureHub(hub) {
		// The ack channel of a hub seen for the first time must be
		// subscribed before a reply can come back.
		if err := r.waitFlushed(ctx); err != nil {
			return nil, fmt.Errorf("backplane: fleet command: %w", err)
		}
	}
	if !r.Ready() {
		return nil, fmt.Errorf("backplane: fleet command %s: %w", c.Op, ErrUnavailable)
	}
	cc := *c
	cc.ID, cc.From = 0, ""
	var replies chan Reply
	if want > 0 {
		id := r.ackID.Add(1) & 0x7fffffff
		if id == 0 {
			id = r.ackID.Add(1) & 0x7fffffff // 0 means "no reply"
		}
		replies = make(chan Reply, want)
		r.ackMu.Lock()
		r.replies[id] = replies
		r.ackMu.Unlock()
		defer func() {
			r.ackMu.Lock()
			delete(r.replies, id)
			r.ackMu.Unlock()
		}()
		cc.ID, cc.From = id, r.name
	}
	if _, err := r.publish(ctx, r.Prefix(hub)+fleetChannel, appendFleetCommand(nil, &cc)); err != nil {
		return nil, err
	}
	r.m.fleetCommands.Inc()
	var got []Reply
	if want == 0 {
		return got, nil
	}
	t := time.NewTimer(r.cfg.AckTimeout)
	defer t.Stop()
	for len(got) < want {
		select {
		case rep := <-replies:
			got = append(got, rep)
		case <-t.C:
			r.m.fleetReplyTimeouts.Inc()
			return got, fmt.Errorf("%w: %s: %d of %d nodes replied within %v", ErrIncomplete, c.Op, len(got), want, r.cfg.AckTimeout)
		case <-ctx.Done():
			r.m.fleetReplyTimeouts.Inc()
			return got, fmt.Errorf("%w: %s: %d of %d nodes replied: %w", ErrIncomplete, c.Op, len(got), want, ctx.Err())
		case <-r.stop:
			return got, ErrClosed
		}
	}
	return got, nil
}

// Holders implements Fleet: PUBSUB NUMSUB of the channel (SHARDNUMSUB on
// the master serving its slot, in a cluster). A node subscribes to a
// group's, user's or connection's channel while it has a local member, so
// this counts the nodes that have one (and ASP.NET Core servers sharing
// the backplane that do).
func (r *Redis) Holders(ctx context.Context, hub string, kind Kind, name string) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	ch := r.Channel(hub, kind, name)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	defer cancel()
	var n int64
	if r.cluster {
		c, err := r.cc.MasterForKey(ctx, ch)
		if err != nil {
			return 0, fmt.Errorf("backplane: subscribers of %s: %w: %w", ch, ErrUnavailable, err)
		}
		m, err := c.PubSubShardNumSub(ctx, ch).Result()
		if err != nil {
			return 0, fmt.Errorf("backplane: subscribers of %s: %w: %w", ch, ErrUnavailable, err)
		}
		n = m[ch]
	} else {
		m, err := r.sc.PubSubNumSub(ctx, ch).Result()
		if err != nil {
			return 0, fmt.Errorf("backplane: subscribers of %s: %w: %w", ch, ErrUnavailable, err)
		}
		n = m[ch]
	}
	return int(n), nil
}

// handleFleetCommand applies a fleet command received on hub's command
// channel and queues this node's reply, if the asker wants one and the
// handler has one.
func (r *Redis) handleFleetCommand(hub, channel string, b []byte) {
	var c Command
	if err := readFleetCommand(b, &c); err != nil {
		r.decodeError(channel, err)
		return
	}
	h := r.cmd
	if h == nil {
		return
	}
	rep := h(hub, &c)
	if rep == nil || c.ID == 0 || c.From == "" {
		return
	}
	select {
	case r.acks <- ackReq{channel: r.Prefix(hub) + ":internal:ack:" + c.From, id: c.ID,
		hub: hub, group: rep.AwaitGroup, add: rep.AwaitGroup != "", payload: appendReply(nil, c.ID, rep)}:
	default:
		r.m.acksDropped.Inc()
		r.errLog.warn(r.log, "ack queue full; fleet reply dropped", "channel", channel, "op", c.Op.String())
	}
}

// deliverReply hands a reply to the Command call waiting for it. r.ackMu
// must be held.
func (r *Redis) deliverReply(w chan Reply, channel string, b []byte) {
	rep, err := readReply(b)
	if err != nil {
		r.decodeError(channel, err)
		return
	}
	select {
	case w <- rep:
	default: // more replies than asked for (a node that gained members meanwhile)
	}
}
