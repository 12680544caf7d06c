package e2e

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestGoroutinesFlat: the node's goroutine count does not grow with idle
// connections (no goroutine per connection), from 100 to 5,000.
func TestGoroutinesFlat(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend)
		settle := func(want int) float64 {
			testutil.WaitUntil(t, 30*time.Second, "connections registered", func() bool {
				return n.metric(`edgeplane_connections{hub="chat"}`) == float64(want)
			})
			time.Sleep(500 * time.Millisecond) // let transient workers finish
			g := n.metric("go_goroutines")
			for i := 0; i < 10; i++ { // take the minimum of a few samples
				time.Sleep(100 * time.Millisecond)
				if v := n.metric("go_goroutines"); v < g {
					g = v
				}
			}
			return g
		}
		conns := openConns(t, n, 100)
		g100 := settle(100)
		conns = append(conns, openConns(t, n, 4900)...)
		g5000 := settle(5000)
		t.Logf("%s: goroutines at 100 conns: %v, at 5000 conns: %v", backend, g100, g5000)
		if g5000-g100 > 10 {
			t.Fatalf("goroutines grew from %v to %v between 100 and 5,000 connections", g100, g5000)
		}
		// Everyone still receives.
		if c, _ := n.api("POST", "/api/hubs/chat/:send", `{"target":"all","arguments":[]}`, ""); c != 202 {
			t.Fatal("send")
		}
		var received atomic.Int64
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, r := range conns {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				for {
					f, err := r.readFrame(30 * time.Second)
					if err != nil {
						return
					}
					if bytes.Contains(f.payload, []byte(`"target":"all"`)) {
						received.Add(1)
						return
					}
				}
			}()
		}
		wg.Wait()
		if got := received.Load(); got != int64(len(conns)) {
			t.Fatalf("%d of %d connections received the broadcast", got, len(conns))
		}
	})
}
