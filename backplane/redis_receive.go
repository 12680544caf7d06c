package backplane

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// The receive path: each subscriber's read loop, and the decoding and
// dispatch of what it reads (invocations to Receiver.Deliver, group
// commands and acks to redis_groups.go, confirmations and dropped
// subscriptions to the subscription bookkeeping).

// loop's retry backoff after the connection failed.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// errErrorReply wraps an error reply to a subscription command.
var errErrorReply = errors.New("redis refused a subscription command")

// read reads c until it fails, and returns why.
func (s *subscriber) read(c *subConn) error {
	r := s.r
	rep := &s.rep
	for {
		if err := c.rd.read(rep); err != nil {
			return err
		}
		switch rep.kind {
		case '*':
			if err := s.push(c, rep); err != nil {
				return err
			}
		case '$':
			// A PING's answer on a connection subscribed to nothing.
			s.pong(rep.text)
		case '-':
			if err := s.errorReply(rep.text); err != nil {
				return err
			}
		case '+', ':':
			// PONG or OK of a connection subscribed to nothing.
		}
		if r.closed.Load() {
			return ErrClosed
		}
	}
}

// push handles one array reply: a message, a (un)subscribe confirmation or
// a PONG.
func (s *subscriber) push(c *subConn, rep *respReply) error {
	r := s.r
	kind := rep.elems[0]
	switch string(kind) {
	case "message", "smessage":
		if rep.n != 3 {
			return fmt.Errorf("%w: %s with %d elements", errRESP, kind, rep.n)
		}
		r.handle(s, rep.elems[1], rep.payload)
	case "subscribe", "ssubscribe":
		if rep.n == 3 {
			r.confirm(string(rep.elems[1]))
		}
	case "unsubscribe", "sunsubscribe":
		if rep.n == 3 && rep.elems[1] != nil && !c.unsubscribed(rep.elems[1]) {
			// Redis dropped a subscription this node did not give up: in
			// a cluster, the slot moved to another master.
			r.dropped(s, string(rep.elems[1]))
		}
	case "pong":
		if rep.n == 2 {
			s.pong(rep.elems[1])
		}
	case "pmessage", "psubscribe", "punsubscribe":
		// Never asked for.
	default:
		return fmt.Errorf("%w: unknown push %q", errRESP, truncate(kind))
	}
	return nil
}

// pong handles a PING's answer: a sync PING's confirms everything written
// before it.
func (s *subscriber) pong(payload []byte) {
	v, ok := bytes.CutPrefix(payload, []byte(syncPrefix))
	if !ok {
		return
	}
	seq, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return
	}
	s.synced.Store(seq)
	s.r.synced(s, seq)
}

// errorReply handles an error reply on a subscription connection: a MOVED
// (a cluster slot served elsewhere) re-places that slot; anything else
// fails the connection, so that everything is subscribed again after a
// backoff rather than left unsubscribed.
func (s *subscriber) errorReply(text []byte) error {
	r := s.r
	if rest, ok := bytes.CutPrefix(text, []byte("MOVED ")); ok && r.cluster {
		slotText, addr, ok := bytes.Cut(rest, []byte(" "))
		slot, err := strconv.Atoi(string(slotText))
		if ok && err == nil && slot >= 0 && slot < clusterSlots {
			r.moved(s, uint16(slot), string(addr))
			return nil
		}
	}
	r.errLog.warn(r.log, "redis refused a subscription command; resubscribing", "redis", s.addr, "err", string(text))
	return fmt.Errorf("%w: %s", errErrorReply, truncate(text))
}

// handle decodes one message from Redis and hands it on. It runs on the
// subscriber's read goroutine; s.msg and s.excluded are its scratch.
// payload is the message's own memory: it, and sub-slices and strings made
// from it, are immutable and may be kept (Message.Payload is).
func (r *Redis) handle(s *subscriber, channel, payload []byte) {
	r.mu.RLock()
	rt, ok := r.routes[string(channel)]
	r.mu.RUnlock()
	if !ok {
		r.m.unrouted.Inc()
		return
	}
	switch rt.kind {
	case chanGroups:
		r.m.received(rt.kind).Inc()
		r.handleGroupCommand(rt.hub, string(channel), payload)
	case chanFleet:
		r.m.received(rt.kind).Inc()
		r.handleFleetCommand(rt.hub, string(channel), payload)
	case chanRelay:
		r.rl.handle(payload)
	case chanAck:
		if bytes.Equal(payload, probePayload) {
			return // this node's health probe
		}
		r.m.received(rt.kind).Inc()
		r.handleAck(string(channel), payload)
	case chanReturn:
		r.m.received(rt.kind).Inc()
		proto, completion, err := wire.ReadCompletion(payload)
		if err != nil {
			r.decodeError(string(channel), err)
			return
		}
		if rr, ok := r.recv.(ReturnReceiver); ok {
			rr.DeliverReturn(rt.hub, proto, completion)
		}
	default:
		r.m.received(rt.kind).Inc()
		ex, js, mp, err := wire.ReadInvocationWithMessagePack(payload, s.excluded[:0])
		if err == nil && (len(js) == 0 || js[len(js)-1] != 0x1e) {
			err = fmt.Errorf("%w: json entry is not a record ending in 0x1e", wire.ErrMalformed)
		}
		if err != nil {
			r.decodeError(string(channel), err)
			return
		}
		if cap(ex) <= 1024 {
			s.excluded = ex[:0]
		}
		s.msg = Message{Hub: rt.hub, Kind: Kind(rt.kind), Name: rt.name, Excluded: ex, Payload: js, MessagePack: mp}
		if rt.kind == chanConnection {
			// A client result asked for: an ASP.NET Core server's
			// InvokeAsync, or a REST :invoke on any node.
			if s.msg.InvocationID, s.msg.ReturnChannel, err = wire.ReadInvocationReturn(payload); err != nil {
				r.decodeError(string(channel), err)
				return
			}
		}
		r.recv.Deliver(&s.msg)
		s.msg = Message{}
	}
}

func (r *Redis) decodeError(channel string, err error) {
	r.m.decodeErrors.Inc()
	r.errLog.warn(r.log, "undecodable backplane message dropped", "channel", channel, "err", err)
}
