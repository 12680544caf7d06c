package fanout

import (
	"slices"
	"sync"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// Router holds the hubs of a node and is the backplane's Receiver: each
// message is encoded once into a WebSocket frame and the same bytes are
// queued to every local recipient.
type Router struct {
	hubs  map[string]*Hub
	Stats Stats

	metricsOnce sync.Once
	metrics     *metricset.Set
}

// NewRouter builds the registries of the named hubs. sub is told about
// first/last local members (the backplane); nil means nobody listens.
func NewRouter(hubs []string, sub Subscriber) *Router {
	if sub == nil {
		sub = nopSubscriber{}
	}
	r := &Router{hubs: make(map[string]*Hub, len(hubs))}
	for _, name := range hubs {
		r.hubs[name] = newHub(name, sub, &r.Stats)
	}
	return r
}

// Hub returns the named hub's registry, or nil if it is not configured.
func (r *Router) Hub(name string) *Hub { return r.hubs[name] }

// HubNames lists the hubs' names, sorted.
func (r *Router) HubNames() []string {
	names := make([]string, 0, len(r.hubs))
	for name := range r.hubs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Hubs calls fn for each hub.
func (r *Router) Hubs(fn func(*Hub)) {
	for _, h := range r.hubs {
		fn(h)
	}
}

// Deliver implements backplane.Receiver: m.Payload (a complete JSON hub
// record) is framed once and queued to every local recipient.
func (r *Router) Deliver(m *backplane.Message) {
	h := r.hubs[m.Hub]
	if h == nil || len(m.Payload) == 0 {
		return
	}
	h.Deliver(m.Kind, m.Name, m.Excluded, wsframe.TextFrame(m.Payload))
}

// ApplyGroup implements backplane.Receiver.
func (r *Router) ApplyGroup(hub string, action backplane.GroupAction, group, connID string) bool {
	h := r.hubs[hub]
	if h == nil {
		return false
	}
	switch action {
	case backplane.GroupAdd:
		return h.AddToGroup(connID, group)
	case backplane.GroupRemove:
		return h.RemoveFromGroup(connID, group)
	}
	return false
}

type nopSubscriber struct{}

func (nopSubscriber) Subscribe(string, backplane.Kind, string)   {}
func (nopSubscriber) Unsubscribe(string, backplane.Kind, string) {}
