package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/redistest"
)

// recordCollector reads a raw client's frames in the background and keeps
// the first argument of every Invocation record (as a string: a JSON string
// unquoted, anything else as its JSON text).
type recordCollector struct {
	mu     sync.Mutex
	got    []string
	closed bool // a Close record or close frame arrived
	done   chan struct{}
}

func collectRecords(r *rawConn) *recordCollector {
	c := &recordCollector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			f, err := r.readFrame(2 * time.Minute)
			if err != nil {
				return
			}
			if f.op == 0x8 {
				c.mu.Lock()
				c.closed = true
				c.mu.Unlock()
				return
			}
			for _, rec := range bytes.Split(f.payload, []byte{0x1e}) {
				if len(rec) == 0 {
					continue
				}
				var m struct {
					Type      int               `json:"type"`
					Arguments []json.RawMessage `json:"arguments"`
				}
				if json.Unmarshal(rec, &m) != nil {
					continue
				}
				c.mu.Lock()
				switch {
				case m.Type == 7:
					c.closed = true
				case m.Type == 1 && len(m.Arguments) > 0:
					var s string
					if json.Unmarshal(m.Arguments[0], &s) != nil {
						s = string(m.Arguments[0])
					}
					c.got = append(c.got, s)
				}
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// received is what arrived so far, sorted.
func (c *recordCollector) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.got...)
	sort.Strings(out)
	return out
}

func (c *recordCollector) wasClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// TestRedisCluster: nodes on a 3-master Redis Cluster (sharded pub/sub)
// behave as one: broadcasts, group sends with members on every node (group
// changes made from nodes that do not own the connection), user and
// connection sends, exclusions, and an SPUBLISH from outside the fleet
// reach exactly the right clients; the example app server answers an
// invocation through the cluster.
func TestRedisCluster(t *testing.T) {
	start := time.Now()
	cl := redistest.StartCluster(t, 3)
	t.Logf("cluster up in %v: %v", time.Since(start).Round(time.Millisecond), cl.Addrs())
	seeds := strings.Join(cl.Addrs(), ",")
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "cluster-access-key-0123456789-abcdef"
		common := []string{"--redis-cluster", seeds, "--access-key", key, "--hub", "chat"}
		nodes := []*node{startNode(t, backend, common...), startNode(t, backend, common...), startNode(t, backend, common...)}
		tok := func(user string) string { return clientToken(t, key, nodes[0], "chat", map[string]any{"nameid": user}) }
		for i, n := range nodes {
			testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d ready", i+1), func() bool { c, _ := n.api("GET", "/readyz", "", ""); return c == 200 })
		}
		// The example app server on the cluster: the stream and SPUBLISH.
		startApp(t, "--redis-cluster", seeds, "--hub", "chat", "--group", "app")

		// Clients: name → (node, user).
		type spec struct {
			node int
			user string
		}
		specs := map[string]spec{
			"a1": {0, "alice"}, "x1": {0, "xavier"},
			"a2": {1, "alice"}, "b2": {1, "bob"},
			"c3": {2, "carol"}, "d3": {2, "dave"},
		}
		ids := map[string]string{}
		cols := map[string]*recordCollector{}
		for name, s := range specs {
			n := nodes[s.node]
			neg := n.negotiate(t, "chat", tok(s.user))
			r := n.connect(t, "/chat?id="+neg.ConnectionToken, "Authorization: Bearer "+tok(s.user))
			ids[name] = neg.ConnectionID
			cols[name] = collectRecords(r)
		}

		group := func(n *node, method, g, name string) {
			t.Helper()
			if code, body := n.restAPI(method, "/api/hubs/chat/groups/"+g+"/connections/"+ids[name], "", key); code != 200 {
				t.Fatalf("%s group %s %s on node %s: %d %s", method, g, name, n.admin, code, body)
			}
		}
		// Group g spans the three nodes; every change is made on a node that
		// does not own the connection (a group command through the cluster).
		group(nodes[1], "PUT", "g", "a1")
		group(nodes[2], "PUT", "g", "b2")
		group(nodes[0], "PUT", "g", "c3")
		group(nodes[2], "PUT", "h", "d3") // local
		// (A connection no node owns gets 404 after the 5 s ack timeout:
		// TestFleet covers it; the path is the same here.)

		send := func(n *node, path, msg string) {
			t.Helper()
			if code, body := n.restAPI("POST", path, fmt.Sprintf(`{"target":"t","arguments":[%q]}`, msg), key); code != 202 {
				t.Fatalf("POST %s: %d %s", path, code, body)
			}
		}
		send(nodes[0], "/api/hubs/chat/:send", "all")
		send(nodes[1], "/api/hubs/chat/:send?excluded="+ids["a1"]+","+ids["c3"], "all-except-a1-c3")
		send(nodes[2], "/api/hubs/chat/groups/g/:send", "g")
		send(nodes[0], "/api/hubs/chat/groups/g/:send?excluded="+ids["b2"], "g-except-b2")
		send(nodes[1], "/api/hubs/chat/groups/h/:send", "h")
		send(nodes[2], "/api/hubs/chat/users/alice/:send", "user-alice")
		send(nodes[2], "/api/hubs/chat/connections/"+ids["b2"]+"/:send", "conn-b2")
		send(nodes[0], "/api/hubs/chat/groups/nobody-here/:send", "empty-group")
		group(nodes[0], "DELETE", "g", "c3") // remote removal
		send(nodes[1], "/api/hubs/chat/groups/g/:send", "g-after-remove")

		// An application publishing with SPUBLISH (as an ASP.NET app on the
		// cluster would, in the backplane wire format) reaches every client.
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		defer cc.Close()
		if n, err := cc.SPublish(context.Background(), "chat:all", realisticVector(t)).Result(); err != nil || n != 3 {
			t.Fatalf("SPUBLISH chat:all = %d, %v (want 3 subscribers: one per node)", n, err)
		}

		want := map[string][]string{
			"a1": {"all", "g", "g-after-remove", "g-except-b2", "hello", "user-alice"},
			"x1": {"all", "all-except-a1-c3", "hello"},
			"a2": {"all", "all-except-a1-c3", "hello", "user-alice"},
			"b2": {"all", "all-except-a1-c3", "conn-b2", "g", "g-after-remove", "hello"},
			"c3": {"all", "g", "g-except-b2", "hello"},
			"d3": {"all", "all-except-a1-c3", "h", "hello"},
		}
		testutil.WaitUntil(t, 15*time.Second, "cluster deliveries", func() bool {
			for name, w := range want {
				if len(cols[name].received()) < len(w) {
					return false
				}
			}
			return true
		})
		time.Sleep(300 * time.Millisecond) // strays would arrive by now
		for name, w := range want {
			if got := cols[name].received(); strings.Join(got, ",") != strings.Join(w, ",") {
				t.Errorf("%s (node %d) received %v, want %v", name, specs[name].node+1, got, w)
			}
			if cols[name].wasClosed() {
				t.Errorf("%s was closed", name)
			}
		}

		// An invocation sent right after the handshake goes up the stream on
		// the cluster and its Completion comes back through sharded pub/sub:
		// the node confirms its subscription to the connection's channel
		// before the event reaches the stream, so no reply is lost (on a
		// cluster the channel's slot may need a new connection first).
		for i := 0; i < 10; i++ {
			neg := nodes[i%3].negotiate(t, "chat", tok("eve"))
			e := nodes[i%3].connect(t, "/chat?id="+neg.ConnectionToken, "Authorization: Bearer "+tok("eve"))
			e.sendText(fmt.Sprintf(`{"type":1,"invocationId":"%d","target":"Echo","arguments":["up and back"]}`, i) + "\x1e")
			want := fmt.Sprintf(`{"type":3,"invocationId":"%d","result":"up and back"}`, i) + "\x1e"
			if got := e.expectRecord(`"type":3`, 10*time.Second); got != want {
				t.Errorf("completion %q, want %q", got, want)
			}
		}
	})
}
