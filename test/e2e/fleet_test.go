package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
)

func realisticVector(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("../../backplane/wire/testdata/signalr-redis.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Realistic []struct {
			Name, Hex string
		} `json:"realistic"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	for _, r := range v.Realistic {
		if r.Name == "JsonBroadcastToAll" {
			b, err := hex.DecodeString(r.Hex)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("vector JsonBroadcastToAll not found")
	return nil
}

// TestFleet: three nodes on one Redis behave as one.
func TestFleet(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		const key = "fleet-access-key-0123456789-abcdef"
		common := []string{"--redis", rs.URL(), "--access-key", key, "--hub", "chat"}
		n1 := startNode(t, backend, common...)
		n2 := startNode(t, backend, common...)
		n3 := startNode(t, backend, common...)
		tok := func(user string) string { return clientToken(t, key, n1, "chat", map[string]any{"nameid": user}) }
		targets := []string{"t", "Send"}
		js1 := startJS(t, "http://"+n1.client, []jsClientSpec{{Name: "a1", AccessToken: tok("alice"), Targets: targets}})
		js2 := startJS(t, "http://"+n2.client, []jsClientSpec{{Name: "a2", AccessToken: tok("alice"), Targets: targets}, {Name: "b", AccessToken: tok("bob"), Targets: targets}})
		js3 := startJS(t, "http://"+n3.client, []jsClientSpec{{Name: "c", AccessToken: tok("carol"), Targets: targets}})
		a1, b, c := js1.connID("a1"), js2.connID("b"), js3.connID("c")

		// Negotiate on node 1, connect on node 3: no sticky sessions.
		neg := n1.negotiate(t, "chat", tok("dave"))
		d := n3.connect(t, "/chat?id="+neg.ConnectionToken, "Authorization: Bearer "+tok("dave"))

		// Group changes from a node that does not own the connection.
		for _, id := range []string{a1, c} {
			if code, body := n2.restAPI("PUT", "/api/hubs/chat/groups/g/connections/"+id, "", key); code != 200 {
				t.Fatalf("remote group add %s: %d %s", id, code, body)
			}
		}
		if code, body := n2.restAPI("PUT", "/api/hubs/chat/groups/g/connections/nobody", "", key); code != 404 {
			t.Fatalf("group add of unknown connection: %d %s", code, body)
		}
		send := func(n *node, path, msg string) {
			t.Helper()
			if code, body := n.restAPI("POST", path, fmt.Sprintf(`{"target":"t","arguments":[%q]}`, msg), key); code != 202 {
				t.Fatalf("POST %s: %d %s", path, code, body)
			}
		}
		send(n1, "/api/hubs/chat/:send", "all")
		send(n3, "/api/hubs/chat/:send?excluded="+a1, "all-except-a1")
		send(n2, "/api/hubs/chat/groups/g/:send", "group")
		send(n1, "/api/hubs/chat/groups/g/:send?excluded="+c, "group-except-c")
		send(n3, "/api/hubs/chat/users/alice/:send", "user-alice")
		send(n1, "/api/hubs/chat/connections/"+b+"/:send", "conn-b")
		send(n2, "/api/hubs/chat/connections/"+neg.ConnectionID+"/:send", "conn-d")
		// Remote group removal, then a group send reaches only a1.
		if code, body := n1.restAPI("DELETE", "/api/hubs/chat/groups/g/connections/"+c, "", key); code != 200 {
			t.Fatalf("remote group remove: %d %s", code, body)
		}
		send(n3, "/api/hubs/chat/groups/g/:send", "group-after-remove")

		// A raw PUBLISH of the realistic vector (as an ASP.NET app would
		// publish) reaches every client.
		cli := exec.Command("redis-cli", "-p", strconv.Itoa(rs.Port), "-x", "PUBLISH", "chat:all")
		cli.Stdin = bytes.NewReader(realisticVector(t))
		if out, err := cli.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "3" {
			t.Fatalf("redis-cli PUBLISH: %v %q (want 3 subscribers: one per node)", err, out)
		}

		want := map[*jsClients]map[string][]string{
			js1: {"a1": {"all", "group", "group-after-remove", "group-except-c", "hello", "user-alice"}},
			js2: {"a2": {"all", "all-except-a1", "hello", "user-alice"}, "b": {"all", "all-except-a1", "conn-b", "hello"}},
			js3: {"c": {"all", "all-except-a1", "group", "hello"}},
		}
		testutil.WaitUntil(t, 15*time.Second, "fleet deliveries", func() bool {
			for js, m := range want {
				for name, w := range m {
					if len(js.received(name)) < len(w) {
						return false
					}
				}
			}
			return true
		})
		time.Sleep(300 * time.Millisecond)
		for js, m := range want {
			for name, w := range m {
				// Sorted: the senders are three nodes.
				if got := slices.Sorted(slices.Values(js.received(name))); strings.Join(got, ",") != strings.Join(w, ",") {
					t.Errorf("%s received %v, want %v", name, got, w)
				}
			}
		}
		d.expectRecord(`"arguments":["conn-d"]`, 5*time.Second)
	})
}

// TestRedisOutage: Redis killed under a steady stream of broadcasts and
// restarted: clients never disconnect, the node reports not-ready, and
// broadcasts resume.
func TestRedisOutage(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		args := []string{"--redis", rs.URL(), "--keepalive", "1s"}
		n1 := startNode(t, backend, args...)
		n2 := startNode(t, backend, args...)
		c1 := n1.connect(t, "/chat")
		c2 := n2.connect(t, "/chat")
		var got2 atomic.Int64
		var closed atomic.Bool
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the client on node 2 counts broadcasts and watches for a close
			defer wg.Done()
			for {
				f, err := c2.readFrame(30 * time.Second)
				if err != nil {
					return
				}
				if f.op == 0x8 || bytes.Contains(f.payload, []byte(`"type":7`)) {
					closed.Store(true)
					return
				}
				if bytes.Contains(f.payload, []byte(`"target":"tick"`)) {
					got2.Add(1)
				}
			}
		}()
		stop := make(chan struct{})
		var sent, failed atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				code, _ := n1.api("POST", "/api/hubs/chat/:send", fmt.Sprintf(`{"target":"tick","arguments":[%d]}`, i), "")
				if code == 202 {
					sent.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
		testutil.WaitUntil(t, 10*time.Second, "broadcasts flowing", func() bool { return got2.Load() > 10 })
		rs.Kill()
		testutil.WaitUntil(t, 10*time.Second, "node 1 not ready", func() bool { c, _ := n1.api("GET", "/readyz", "", ""); return c == 503 })
		testutil.WaitUntil(t, 10*time.Second, "publishes failing", func() bool { return failed.Load() > 0 })
		time.Sleep(2 * time.Second) // down for a while; keep-alives keep running
		rs.Restart()
		testutil.WaitUntil(t, 20*time.Second, "node 1 ready again", func() bool { c, _ := n1.api("GET", "/readyz", "", ""); return c == 200 })
		testutil.WaitUntil(t, 20*time.Second, "node 2 ready again", func() bool { c, _ := n2.api("GET", "/readyz", "", ""); return c == 200 })
		before := got2.Load()
		testutil.WaitUntil(t, 20*time.Second, "broadcasts resumed on node 2", func() bool { return got2.Load() > before+10 })
		close(stop)
		if closed.Load() {
			t.Fatal("client on node 2 was disconnected during the outage")
		}
		// The client on node 1 is still connected and receiving.
		c1.expectRecord(`"target":"tick"`, 5*time.Second)
		if v := n1.metric(`edgeplane_connections{hub="chat"}`); v != 1 {
			t.Fatalf("node 1 connections = %v", v)
		}
		if v := n2.metric(`edgeplane_connections{hub="chat"}`); v != 1 {
			t.Fatalf("node 2 connections = %v", v)
		}
		c2.c.Close()
		wg.Wait()
		t.Logf("sent %d, failed while Redis was down %d, received on node 2 %d", sent.Load(), failed.Load(), got2.Load())
	})
}
