package fanout

import (
	"slices"

	"github.com/edgeplane/edgeplane/backplane"
)

// Queries and bulk group changes the service mode needs (Azure SignalR's
// user groups, closes and existence checks): what a hub's registry holds
// for a group or a user, read under the same locks as a delivery.

// EachOf calls fn for every local member of a group or a user (kind
// backplane.Group or backplane.User), on a snapshot: fn runs without
// locks and may change the registry.
func (h *Hub) EachOf(kind backplane.Kind, name string, fn func(e *Entry)) {
	t := &h.group
	if kind == backplane.User {
		t = &h.users
	} else if kind != backplane.Group {
		return
	}
	s := &t.shards[h.shardOf(name)]
	s.mu.RLock()
	var snap []*Entry
	if ms, ok := s.sets[name]; ok {
		snap = append(snap, ms.list...)
	}
	s.mu.RUnlock()
	for _, e := range snap {
		fn(e)
	}
}

// InGroup reports whether connection id is a local member of group.
func (h *Hub) InGroup(id, group string) bool {
	s, hv := h.connShardOf(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.get(id, hv)
	return e != nil && slices.Contains(e.joined(), group)
}

// RemoveFromAllGroups removes connection id from every group it joined.
// It reports false if id is not a local connection.
func (h *Hub) RemoveFromAllGroups(id string) bool {
	return h.withEntry(id, func(e *Entry) {
		for _, g := range e.joined() {
			h.group.remove(h, g, e)
		}
		e.groups = nil
	})
}
