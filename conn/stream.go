package conn

import (
	"fmt"
	"sync"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// Streams, cancellation and the client's Completions (HubProtocol.md,
// "Streaming", "Upload streaming"). The node relays them and keeps only
// what it needs to tell the upstream, when a connection ends, which of
// its streams were abandoned:
//
//   - a StreamInvocation goes upstream as an invocation entry marked
//     streamInvocation, an invocation's streamIds with it;
//   - a client StreamItem, Completion and CancelInvocation go upstream
//     as entries of their own, in order with the connection's other
//     entries (one writer per node, one queue);
//   - a Completion that answers a client-result invocation
//     (results.go) goes back to whoever asked and not upstream.
//
// Open streams: the ids of the stream invocations and upload streams a
// connection opened and did not end itself (a CancelInvocation, an
// upload stream's Completion). The upstream completes stream
// invocations by publishing to the connection, which the node does not
// read, so the set can hold ids the upstream has finished: the
// disconnected entry lists them as "abandoned" and the upstream ignores
// the ones it finished. One disconnected entry rather than one cancel per
// stream: it is one write, it arrives after every entry of the
// connection, and it cannot be half-lost. Connections that never stream
// keep nothing; one that does keeps at most maxOpenStreams ids (the
// oldest are forgotten first: long finished, most likely).

// maxOpenStreams bounds the ids kept per connection for its disconnected
// entry.
const maxOpenStreams = 32

// flStreams: the connection has ids in Server.streams.
const flStreams uint32 = 1 << 21

// openStreams are the streams of the connections that have some.
type openStreams struct {
	mu  sync.Mutex
	ids map[*Conn][]string
}

func (o *openStreams) open(c *Conn, ids ...string) {
	o.mu.Lock()
	if o.ids == nil {
		o.ids = make(map[*Conn][]string)
	}
	l := append(o.ids[c], ids...)
	if len(l) > maxOpenStreams {
		l = append(l[:0], l[len(l)-maxOpenStreams:]...)
	}
	o.ids[c] = l
	o.mu.Unlock()
	c.flags.Or(flStreams)
}

// end forgets id and reports whether the connection had it open.
func (o *openStreams) end(c *Conn, id string) bool {
	if !c.has(flStreams) {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.ids[c]
	for i, s := range l {
		if s == id {
			l = append(l[:i], l[i+1:]...)
			if len(l) == 0 {
				delete(o.ids, c)
			} else {
				o.ids[c] = l
			}
			return true
		}
	}
	return false
}

// take removes and returns c's open ids.
func (o *openStreams) take(c *Conn) []string {
	if !c.has(flStreams) {
		return nil
	}
	o.mu.Lock()
	l := o.ids[c]
	delete(o.ids, c)
	o.mu.Unlock()
	return l
}

// onStreamMessage handles a client StreamItem, Completion or
// CancelInvocation.
func (c *Conn) onStreamMessage(m *hubproto.Message) {
	switch m.Type {
	case hubproto.TypeCompletion:
		if c.srv.results.complete(c, m) {
			return // a client result: answered to whoever asked
		}
		c.srv.streams.end(c, m.InvocationID)
	case hubproto.TypeCancelInvocation:
		c.srv.streams.end(c, m.InvocationID)
	}
	up := c.srv.cfg.Upstream
	if up == nil {
		c.srv.M.dropped.Inc()
		return
	}
	e := backplane.Event{Hub: c.hub.Name(), ConnID: c.entry.ID(), UserID: c.entry.User(), InvocationID: m.InvocationID}
	switch m.Type {
	case hubproto.TypeStreamItem:
		e.Kind = backplane.EventStreamItem
	case hubproto.TypeCompletion:
		e.Kind = backplane.EventCompletion
		e.Error, e.HasError = m.Error, m.HasError
	case hubproto.TypeCancelInvocation:
		e.Kind = backplane.EventCancelInvocation
	}
	if len(m.Arguments) > 0 {
		v, err := c.upstreamValue(m.Arguments)
		if err != nil {
			// Cannot say it in JSON: the upstream learns the stream
			// ended in an error rather than losing an item silently.
			c.srv.M.dropped.Inc()
			e.Kind, e.Error, e.HasError = backplane.EventCompletion, fmt.Sprintf("%s cannot be forwarded: %v", m.Type, err), true
		} else {
			e.Arguments = v
		}
	}
	if err := up.Send(&e); err != nil {
		c.srv.M.upstreamErr.Inc()
		c.srv.M.dropped.Inc()
	}
}

// upstreamValue is a stream item or result as the upstream's entries
// carry it: JSON, converted once from a MessagePack client's.
func (c *Conn) upstreamValue(v []byte) ([]byte, error) {
	if c.proto() != hubproto.IDMessagePack {
		return v, nil
	}
	return hubproto.MessagePackToJSON(nil, v)
}
