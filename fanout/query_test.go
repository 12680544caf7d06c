package fanout

import (
	"slices"
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
)

// TestQueries: EachOf lists a group's and a user's local members,
// InGroup answers membership, RemoveFromAllGroups leaves every group
// (unsubscribing the ones left empty) and nothing else.
func TestQueries(t *testing.T) {
	sub := &recSub{}
	r := NewRouter([]string{"chat"}, sub)
	h := r.Hub("chat")
	h.Add(&recMember{}, "a", "alice")
	h.Add(&recMember{}, "b", "bob")
	h.Add(&recMember{}, "c", "alice")
	h.AddToGroup("a", "g1")
	h.AddToGroup("a", "g2")
	h.AddToGroup("b", "g1")
	ids := func(kind backplane.Kind, name string) []string {
		var out []string
		h.EachOf(kind, name, func(e *Entry) { out = append(out, e.ID()) })
		slices.Sort(out)
		return out
	}
	if got := ids(backplane.User, "alice"); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("alice: %v", got)
	}
	if got := ids(backplane.Group, "g1"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("g1: %v", got)
	}
	if got := ids(backplane.Group, "none"); got != nil {
		t.Fatalf("none: %v", got)
	}
	if got := ids(backplane.All, ""); got != nil {
		t.Fatalf("EachOf(All) listed %v", got)
	}
	if !h.InGroup("a", "g2") || h.InGroup("b", "g2") || h.InGroup("zz", "g1") {
		t.Fatal("InGroup")
	}
	if !h.RemoveFromAllGroups("a") || h.RemoveFromAllGroups("zz") {
		t.Fatal("RemoveFromAllGroups result")
	}
	if h.InGroup("a", "g1") || h.InGroup("a", "g2") || !h.InGroup("b", "g1") || h.GroupLen("g2") != 0 || h.GroupLen("g1") != 1 {
		t.Fatal("after RemoveFromAllGroups")
	}
	if !slices.Contains(sub.ops, "-chat:group:g2") || slices.Contains(sub.ops, "-chat:group:g1") {
		t.Fatalf("subscriptions: %v", sub.ops)
	}
	h.AddToGroup("a", "g3") // the entry can join again
	if !h.InGroup("a", "g3") {
		t.Fatal("rejoin")
	}
}
