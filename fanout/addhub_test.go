package fanout

import (
	"bytes"
	"slices"
	"sync"
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
)

// TestAddHub: a hub added to a running router delivers like the others,
// shows in the hub list and gets its gauge; adding it again returns the
// same hub; concurrent adds and lookups agree.
func TestAddHub(t *testing.T) {
	r := NewRouter([]string{"chat"}, nil)
	set := r.Metrics()
	h := r.AddHub("news")
	if h == nil || r.Hub("news") != h || r.AddHub("news") != h || r.AddHub("chat") != r.Hub("chat") {
		t.Fatal("AddHub")
	}
	if !slices.Equal(r.HubNames(), []string{"chat", "news"}) {
		t.Fatalf("hubs %v", r.HubNames())
	}
	m := &recMember{}
	h.Add(m, "c1", "")
	r.Deliver(&backplane.Message{Hub: "news", Kind: backplane.All, Payload: []byte("{}\x1e")})
	if m.count() != 1 {
		t.Fatal("no delivery in the added hub")
	}
	var b bytes.Buffer
	set.WritePrometheus(&b)
	if !bytes.Contains(b.Bytes(), []byte(`edgeplane_connections{hub="news"} 1`)) {
		t.Fatalf("no gauge for the added hub:\n%s", b.String())
	}
	var wg sync.WaitGroup
	got := make([]*Hub, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = r.AddHub("race")
			_ = r.Hub("chat")
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g != got[0] || g != r.Hub("race") {
			t.Fatal("concurrent adds made different hubs")
		}
	}
}
