package backplane

import (
	"context"
	"fmt"
	"time"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// Group commands for connections on other nodes (RemoteGroup publishes
// them on P:internal:groups and waits for the owner's ack on this node's
// ack channel), and the acks this node sends for the commands it applies.

// ackReq is an ack to publish for a group command applied here.
type ackReq struct {
	channel string
	id      int32
	// For an add, the subscription to hub's channel for group must be
	// confirmed before the ack (an add completes once the node can
	// receive the group's messages).
	hub, group string
	add        bool
	// payload, when set, is published instead of a plain ack (a fleet
	// command's reply).
	payload []byte
}

// RemoteGroup implements Backplane: it publishes a group command on
// P:internal:groups and waits for the owner's ack on this node's ack
// channel, for at most AckTimeout (or ctx): ErrNotFound without an ack.
func (r *Redis) RemoteGroup(ctx context.Context, hub string, action GroupAction, group, connID string) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if r.ensureHub(hub) {
		// The ack channel of a hub seen for the first time must be
		// subscribed before the ack can come back.
		if err := r.waitFlushed(ctx); err != nil {
			return fmt.Errorf("backplane: group command: %w", err)
		}
	}
	if !r.Ready() {
		return fmt.Errorf("backplane: group command for %s: %w", connID, ErrUnavailable)
	}
	id := r.ackID.Add(1) & 0x7fffffff
	done := make(chan struct{})
	r.ackMu.Lock()
	r.waiters[id] = done
	r.ackMu.Unlock()
	defer func() {
		r.ackMu.Lock()
		delete(r.waiters, id)
		r.ackMu.Unlock()
	}()

	b := wire.AppendGroupCommand(nil, &wire.GroupCommand{
		ID: id, ServerName: r.name, Action: uint8(action), Group: group, ConnectionID: connID,
	})
	if _, err := r.publish(ctx, r.Prefix(hub)+":internal:groups", b); err != nil {
		return err
	}
	r.m.groupCommands.Inc()
	t := time.NewTimer(r.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		r.m.ackTimeouts.Inc()
		return fmt.Errorf("backplane: no node acknowledged the group command for connection %q within %v: %w", connID, r.cfg.AckTimeout, ErrNotFound)
	case <-ctx.Done():
		r.m.ackTimeouts.Inc()
		return fmt.Errorf("backplane: no node acknowledged the group command for connection %q (%w): %w", connID, ctx.Err(), ErrNotFound)
	case <-r.stop:
		return ErrClosed
	}
}

// handleGroupCommand applies a group command received on hub's
// P:internal:groups if this node owns the connection, and queues its ack.
func (r *Redis) handleGroupCommand(hub, channel string, b []byte) {
	var c wire.GroupCommand
	if err := wire.ReadGroupCommand(b, &c); err != nil {
		r.decodeError(channel, err)
		return
	}
	if r.recv.ApplyGroup(hub, GroupAction(c.Action), c.Group, c.ConnectionID) {
		select {
		case r.acks <- ackReq{channel: r.Prefix(hub) + ":internal:ack:" + c.ServerName, id: c.ID,
			hub: hub, group: c.Group, add: GroupAction(c.Action) == GroupAdd}:
		default:
			r.m.acksDropped.Inc()
			r.errLog.warn(r.log, "ack queue full; ack dropped", "channel", channel)
		}
	}
}

// handleAck wakes the RemoteGroup call waiting for the ack received on
// this node's ack channel.
func (r *Redis) handleAck(channel string, b []byte) {
	id, err := wire.ReadAck(b)
	if err != nil {
		r.decodeError(channel, err)
		return
	}
	r.ackMu.Lock()
	if w := r.waiters[id]; w != nil {
		close(w)
		delete(r.waiters, id)
	} else if w := r.replies[id]; w != nil {
		r.deliverReply(w, channel, b)
	}
	r.ackMu.Unlock()
}

// ackSender publishes acks for group commands applied here, off the receive
// path.
func (r *Redis) ackSender() {
	defer r.wg.Done()
	for {
		select {
		case a := <-r.acks:
			if a.add {
				ctx, cancel := context.WithTimeout(context.Background(), r.cfg.PublishTimeout)
				if err := r.WaitSubscribed(ctx, a.hub, Group, a.group); err != nil {
					r.errLog.warn(r.log, "group subscription not confirmed before ack", "group", a.group, "err", err)
				}
				cancel()
			}
			b := a.payload
			if b == nil {
				b = wire.AppendAck(nil, a.id)
			}
			if _, err := r.publish(context.Background(), a.channel, b); err != nil {
				r.errLog.warn(r.log, "ack not published", "channel", a.channel, "err", err)
			}
		case <-r.stop:
			return
		}
	}
}
