package node_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

func negotiateOn(t *testing.T, n *node.Node) (id, token string) {
	t.Helper()
	resp, err := http.Post("http://"+n.Addr().String()+"/chat/negotiate?negotiateVersion=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var neg struct{ ConnectionID, ConnectionToken string }
	if err := json.NewDecoder(resp.Body).Decode(&neg); err != nil || neg.ConnectionToken == "" {
		t.Fatalf("negotiate: %d %v %+v", resp.StatusCode, err, neg)
	}
	return neg.ConnectionID, neg.ConnectionToken
}

// connectOn upgrades with token on n and returns the HTTP status (101 on
// success; the socket is closed at the end of the test).
func connectOn(t *testing.T, n *node.Node, token string) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+"/chat?id="+token, nil)
	if err == nil {
		t.Cleanup(func() { ws.Close() })
	}
	if resp == nil {
		t.Fatalf("upgrade on %s: %v", n.Addr(), err)
	}
	return resp.StatusCode
}

func metricOf(t *testing.T, n *node.Node, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return v
		}
	}
	return ""
}

func redisNode(t *testing.T, srv *redistest.Server, conn node.Config) *node.Node {
	t.Helper()
	conn.Redis = &backplane.RedisConfig{URL: srv.URL()}
	return nodetest.Start(t, conn)
}

// TestFleetAgreesOnTokenKey: two nodes on one Redis, neither given a
// token key nor an access key: negotiate on one, connect on the other.
// After the key vanishes from Redis and another takes its place, both
// nodes adopt it, and a token signed before still connects where it was
// issued.
func TestFleetAgreesOnTokenKey(t *testing.T) {
	t.Cleanup(node.SetTokenKeyInterval(100 * time.Millisecond)) // after the nodes close
	srv := redistest.Start(t)
	a := redisNode(t, srv, node.Config{})
	b := redisNode(t, srv, node.Config{})
	_, tok := negotiateOn(t, a)
	if code := connectOn(t, b, tok); code != http.StatusSwitchingProtocols {
		t.Fatalf("negotiate on a, connect on b: %d, want 101", code)
	}
	_, tok = negotiateOn(t, b)
	if code := connectOn(t, a, tok); code != http.StatusSwitchingProtocols {
		t.Fatalf("negotiate on b, connect on a: %d, want 101", code)
	}
	for _, n := range []*node.Node{a, b} {
		if v := metricOf(t, n, "edgeplane_token_key_agreed"); v != "1" {
			t.Fatalf("edgeplane_token_key_agreed = %q after Start, want 1", v)
		}
		if v := metricOf(t, n, "edgeplane_token_key_changes_total"); v != "0" {
			t.Fatalf("edgeplane_token_key_changes_total = %q after Start, want 0 (agreeing is not a change)", v)
		}
	}

	// Redis loses the key; something else is stored first (a newcomer's).
	_, early := negotiateOn(t, a)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	newcomer := strings.Repeat("n", 64)
	if err := client.Set(context.Background(), backplane.TokenKeyName, newcomer, 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node.Node{a, b} {
		testutil.WaitUntil(t, 5*time.Second, "the node to adopt the new key", func() bool {
			return metricOf(t, n, "edgeplane_token_key_changes_total") == "1"
		})
	}
	_, tok = negotiateOn(t, a)
	if code := connectOn(t, b, tok); code != http.StatusSwitchingProtocols {
		t.Fatalf("after the change: negotiate on a, connect on b: %d, want 101", code)
	}
	if code := connectOn(t, a, early); code != http.StatusSwitchingProtocols {
		t.Fatalf("a token issued before the change, on its node: %d, want 101", code)
	}
}

// TestTokenKeyAgreementRefusesBadKey: an invalid key in Redis stops the
// node from starting, with an error that says what to do.
func TestTokenKeyAgreementRefusesBadKey(t *testing.T) {
	srv := redistest.Start(t)
	if reply, err := srv.Do("SET", backplane.TokenKeyName, "short"); err != nil || reply != "+OK" {
		t.Fatalf("SET: %q %v", reply, err)
	}
	before := testutil.Snapshot()
	_, err := node.Start(node.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", NoTrim: true,
		Redis: &backplane.RedisConfig{URL: srv.URL()}})
	if err == nil || !strings.Contains(err.Error(), backplane.TokenKeyName) || !strings.Contains(err.Error(), "--token-key") {
		t.Fatalf("Start with an invalid key in Redis: %v, want an error naming %s and --token-key", err, backplane.TokenKeyName)
	}
	if leaks := testutil.WaitLeaks(before); len(leaks) > 0 {
		t.Fatalf("a failed Start left goroutines:\n%s", strings.Join(leaks, "\n"))
	}
	// A node given a key starts, and neither uses nor touches Redis's.
	n := redisNode(t, srv, node.Config{Conn: conn.Config{TokenKey: "explicit-key-of-at-least-32-bytes-long"}})
	if v := metricOf(t, n, "edgeplane_token_key_agreed"); v != "" {
		t.Fatalf("a node with --token-key exposes edgeplane_token_key_agreed %q", v)
	}
	if reply, _ := srv.Do("STRLEN", backplane.TokenKeyName); reply != ":5" {
		t.Fatalf("STRLEN %s = %q, want :5 (untouched)", backplane.TokenKeyName, reply)
	}
}

// TestTokenReuseAcrossNodes: the node wires the Redis backplane's claims
// into its connection server: a token connects once on the fleet.
func TestTokenReuseAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	a := redisNode(t, srv, node.Config{})
	b := redisNode(t, srv, node.Config{})
	_, tok := negotiateOn(t, a)
	if code := connectOn(t, a, tok); code != http.StatusSwitchingProtocols {
		t.Fatalf("first connect: %d, want 101", code)
	}
	if code := connectOn(t, b, tok); code != http.StatusConflict {
		t.Fatalf("the same token on another node: %d, want 409", code)
	}
	if v := metricOf(t, b, `edgeplane_token_claims_total{result="reused"}`); v != "1" {
		t.Fatalf(`b's edgeplane_token_claims_total{result="reused"} = %q, want 1`, v)
	}
}
