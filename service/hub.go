package service

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// hub is one hub's service state: its app servers' connections, the
// clients they host on this node, user groups and pending client
// invocations.
type hub struct {
	s    *Service
	name string // the configured (fanout) name
	fh   *fanout.Hub

	mu    sync.RWMutex
	all   []*serverConn // open connections, any type
	hosts []*serverConn // open connections that may host clients (not Weak)
	next  atomic.Uint32 // round-robin over hosts

	clients  clientTable      // relayed clients that need more than their connection, by id
	slots    [256]*serverConn // by serverConn.slot (1-255; under mu): compact clients' RelayTag
	partials [partialShards]partialStripe
	users    userGroups
	inv      invocations
}

func newHub(s *Service, name string, fh *fanout.Hub) *hub {
	h := &hub{s: s, name: name, fh: fh}
	h.clients.init()
	h.users.init(h)
	h.inv.init()
	return h
}

// join adds an open server connection; Weak ones host no clients.
func (h *hub) join(sc *serverConn) {
	h.mu.Lock()
	h.all = append(h.all, sc)
	if sc.typ != serviceproto.ConnectionWeak {
		h.hosts = append(h.hosts, sc)
		// A slot is free once its connection is closed and hosts nobody:
		// no client's RelayTag names it any more.
		for i := 1; i < len(h.slots); i++ {
			if x := h.slots[i]; x == nil || x.state.Load() == scClosed && x.hosted.Load() == 0 {
				h.slots[i], sc.slot = sc, uint8(i)
				break
			}
		}
	}
	h.mu.Unlock()
}

// slotConn is the server connection in slot i, or nil.
func (h *hub) slotConn(i uint8) *serverConn {
	if i == 0 {
		return nil
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.slots[i]
}

// partialsOf is client id's stripe of partial records.
func (h *hub) partialsOf(id string) *partialStripe {
	return &h.partials[h.clients.shard(id)%partialShards]
}

// dropPartial forgets a gone client's incomplete record.
func (h *hub) dropPartial(id string) {
	p := h.partialsOf(id)
	p.mu.Lock()
	p.keep(id, nil)
	p.mu.Unlock()
}

// leave removes a closed connection and closes the clients it hosted.
func (h *hub) leave(sc *serverConn) {
	h.mu.Lock()
	h.all = slices.DeleteFunc(h.all, func(x *serverConn) bool { return x == sc })
	h.hosts = slices.DeleteFunc(h.hosts, func(x *serverConn) bool { return x == sc })
	stillUp := false
	for _, x := range h.all {
		stillUp = stillUp || x.serverID == sc.serverID
	}
	h.mu.Unlock()
	if sc.hosted.Load() > 0 {
		var gone []*relayClient
		h.clients.each(func(rc *relayClient) {
			if rc.sc == sc {
				gone = append(gone, rc)
			}
		})
		if sc.slot != 0 { // compact clients: accepted, found through fanout
			seen := make(map[*conn.Conn]bool, len(gone))
			for _, rc := range gone {
				seen[rc.c] = true
			}
			h.fh.Each(func(e *fanout.Entry) {
				if c, ok := e.Member().(*conn.Conn); ok && c.RelayTag() == sc.slot && !seen[c] {
					seen[c] = true
					gone = append(gone, &relayClient{c: c, sc: sc})
				}
			})
		}
		for _, rc := range gone {
			if rc.c == nil {
				h.s.fl.hostGone(h, rc)
				continue
			}
			h.s.M.clientsDropped.Inc()
			rc.c.RelayClose("The app server's connection to the service was lost.", true)
		}
	}
	if !stillUp {
		h.inv.serverGone(h, sc.serverID)
	}
}

// pick chooses the server connection a new client goes to: one of the
// sticky server's if the client's token names one (asrs.s.sn; with
// asrs.s.ssticky Required none other will do), else round-robin over the
// hub's hosting connections, skipping servers shutting down.
func (h *hub) pick(sticky, mode string) *serverConn {
	h.mu.RLock()
	hosts := h.hosts
	h.mu.RUnlock()
	if sticky != "" && mode != "" && mode != "Disabled" {
		var mine []*serverConn
		for _, sc := range hosts {
			if sc.serverID == sticky && !sc.draining.Load() {
				mine = append(mine, sc)
			}
		}
		if len(mine) > 0 {
			return mine[rand.IntN(len(mine))]
		}
		if mode == "Required" {
			return nil
		}
	}
	n := len(hosts)
	start := int(h.next.Add(1))
	for i := 0; i < n; i++ {
		if sc := hosts[(start+i)%n]; !sc.draining.Load() {
			return sc
		}
	}
	return nil
}

// ofServer returns an open connection of an app server, or nil.
func (h *hub) ofServer(id string) *serverConn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var found []*serverConn
	for _, sc := range h.all {
		if sc.serverID == id && sc.state.Load() == scOpen {
			found = append(found, sc)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return found[rand.IntN(len(found))]
}

// drainServer stops routing new clients to an app server that announced
// its shutdown.
func (h *hub) drainServer(id string) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, sc := range h.all {
		if sc.serverID == id {
			sc.draining.Store(true)
		}
	}
}

// client is the relayClient of id, or nil; see clientAny.
func (h *hub) client(id string) *relayClient {
	return h.clients.get(id)
}

// clientAny is client's, or a relayClient made up for a compact client
// (accepted, no fleet relay) for reading.
func (h *hub) clientAny(id string) *relayClient {
	if rc := h.clients.get(id); rc != nil {
		return rc
	}
	c := h.compact(id)
	if c == nil {
		return nil
	}
	sc := h.slotConn(c.RelayTag())
	if sc == nil {
		return nil
	}
	rc := &relayClient{c: c, sc: sc, binary: c.RelayBinary()}
	rc.accepted.Store(true)
	return rc
}

// servers counts the distinct app servers connected.
func (h *hub) servers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	seen := map[string]bool{}
	for _, sc := range h.all {
		seen[sc.serverID] = true
	}
	return len(seen)
}
