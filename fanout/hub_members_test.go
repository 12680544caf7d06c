package fanout

import (
	"slices"
	"testing"
)

// TestMembershipQueries: the snapshots the REST API acts on name exactly
// the local members of a user or group and a connection's groups, and do
// not change when the hub does afterwards.
func TestMembershipQueries(t *testing.T) {
	r := NewRouter([]string{"chat"}, nil)
	h := r.Hub("chat")
	a, _ := h.Add(&recMember{}, "a", "alice")
	h.Add(&recMember{}, "b", "bob")
	h.Add(&recMember{}, "c", "alice")
	h.AddToGroup("a", "g1")
	h.AddToGroup("a", "g2")
	h.AddToGroup("b", "g1")

	ids := func(es []*Entry) []string {
		var s []string
		for _, e := range es {
			s = append(s, e.ID()+"/"+e.User())
		}
		slices.Sort(s)
		return s
	}
	if got := ids(h.UserEntries("alice")); !slices.Equal(got, []string{"a/alice", "c/alice"}) {
		t.Errorf("UserEntries(alice) = %v", got)
	}
	if got := ids(h.GroupEntries("g1")); !slices.Equal(got, []string{"a/alice", "b/bob"}) {
		t.Errorf("GroupEntries(g1) = %v", got)
	}
	if got := h.ConnGroups("a"); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"g1", "g2"}) {
		t.Errorf("ConnGroups(a) = %v", got)
	}
	if h.UserEntries("nobody") != nil || h.GroupEntries("none") != nil || h.ConnGroups("c") != nil || h.ConnGroups("zz") != nil {
		t.Error("an unknown user, group or connection, or one in no group, has members or groups")
	}
	groups := h.ConnGroups("a")
	snap := h.GroupEntries("g1")
	h.RemoveFromGroup("a", "g1")
	h.Remove(a)
	if len(groups) != 2 || len(snap) != 2 {
		t.Errorf("snapshots changed with the hub: %v %v", groups, ids(snap))
	}
	if got := ids(h.GroupEntries("g1")); !slices.Equal(got, []string{"b/bob"}) {
		t.Errorf("GroupEntries(g1) after a left = %v", got)
	}
}
