package fanout

import "slices"

// Queries of a hub's local membership for the REST API and fleet commands
// (close a user's or a group's connections, list a group's members, take a
// connection out of every group). Each returns a snapshot taken under the
// lock and released before the caller acts on it.

// UserEntries returns the entries of user's local connections.
func (h *Hub) UserEntries(user string) []*Entry { return h.users.entries(h, user) }

// GroupEntries returns the entries of group's local members.
func (h *Hub) GroupEntries(group string) []*Entry { return h.group.entries(h, group) }

// ConnGroups returns the groups local connection id has joined (a copy);
// nil if none or if id is not local.
func (h *Hub) ConnGroups(id string) []string {
	s, hv := h.connShardOf(id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.get(id, hv); e != nil {
		return slices.Clone(e.joined())
	}
	return nil
}

func (t *setTable) entries(h *Hub, name string) []*Entry {
	s := &t.shards[h.shardOf(name)]
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ms, ok := s.sets[name]; ok {
		return slices.Clone(ms.list)
	}
	return nil
}
