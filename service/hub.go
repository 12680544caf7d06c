package service

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

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

	clients clientTable // relayed clients by connection id
	users   userGroups
	inv     invocations
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
	}
	h.mu.Unlock()
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

func (h *hub) client(id string) *relayClient {
	return h.clients.get(id)
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
