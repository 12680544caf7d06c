package e2e

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// roundRobin is a TCP balancer without sticky sessions: connection i goes
// to backend i mod len(backends). A SignalR client's negotiate and its
// WebSocket are two connections, so they land on different nodes.
func roundRobin(t *testing.T, backends ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backends[i%len(backends)])
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, b)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); io.Copy(c, b); c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	return ln.Addr().String()
}

// TestFleetWithoutTokenKey: a newcomer's two-node fleet, one Redis, no
// --token-key and no --access-key, behind a balancer without sticky
// sessions: the official client negotiates on one node and connects on
// the other, and receives what is sent.
func TestFleetWithoutTokenKey(t *testing.T) {
	rs := redistest.Start(t)
	a := startNode(t, "epoll", "--redis", rs.URL())
	b := startNode(t, "epoll", "--redis", rs.URL())
	neg := a.negotiate(t, "chat", "")
	if code := dialRaw(t, b.client).upgrade("/chat?id=" + neg.ConnectionToken); code != 101 {
		t.Fatalf("negotiate on a, connect on b: %d, want 101", code)
	}
	for _, n := range []*node{a, b} {
		if v := n.metric("edgeplane_token_key_agreed"); v != 1 {
			t.Fatalf("edgeplane_token_key_agreed = %v, want 1", v)
		}
	}

	lb := roundRobin(t, a.client, b.client)
	js := startJS(t, "http://"+lb, []jsClientSpec{{Name: "c", Targets: []string{"t"}}})
	id := js.connID("c")
	testutil.WaitUntil(t, 5*time.Second, "the client registered on b", func() bool {
		code, _ := b.api("HEAD", "/api/hubs/chat/connections/"+id, "", "")
		return code == 200
	})
	if code, body := a.api("POST", "/api/hubs/chat/connections/"+id+"/:send", `{"target":"t","arguments":["hi"]}`, ""); code != 202 {
		t.Fatalf("send: %d %s", code, body)
	}
	testutil.WaitUntil(t, 10*time.Second, "the client to receive", func() bool { return len(js.received("c")) == 1 })
}

// TestTokenReuseAcrossFleet: a connection token connects once on the whole
// fleet: on another node, while its connection is live and after it left,
// it gets 409. With Redis down the upgrade goes ahead on the node's own
// check (fail open) and is counted.
func TestTokenReuseAcrossFleet(t *testing.T) {
	rs := redistest.Start(t)
	common := []string{"--redis", rs.URL(), "--token-key", "e2e-fleet-token-key-0123456789abcdef"}
	a := startNode(t, "epoll", common...)
	b := startNode(t, "epoll", common...)
	neg := a.negotiate(t, "chat", "")
	live := a.connect(t, "/chat?id="+neg.ConnectionToken)
	if code := dialRaw(t, b.client).upgrade("/chat?id=" + neg.ConnectionToken); code != 409 {
		t.Fatalf("a live connection's token on another node: %d, want 409", code)
	}
	live.c.Close()
	testutil.WaitUntil(t, 5*time.Second, "connection gone", func() bool {
		code, _ := a.api("HEAD", "/api/hubs/chat/connections/"+neg.ConnectionID, "", "")
		return code == 404
	})
	if code := dialRaw(t, b.client).upgrade("/chat?id=" + neg.ConnectionToken); code != 409 {
		t.Fatalf("a departed connection's token on another node: %d, want 409", code)
	}
	// The first 409 came from Redis; b remembers it, so the second is local.
	if v := b.metric(`edgeplane_token_claims_total{result="reused"}`); v != 1 {
		t.Fatalf(`b: edgeplane_token_claims_total{result="reused"} = %v, want 1`, v)
	}

	rs.Kill()
	testutil.WaitUntil(t, 10*time.Second, "b not ready", func() bool {
		code, _ := b.api("GET", "/readyz", "", "")
		return code == 503
	})
	neg = a.negotiate(t, "chat", "")
	b.connect(t, "/chat?id="+neg.ConnectionToken)
	if v := b.metric(`edgeplane_token_claims_total{result="unchecked"}`); v != 1 {
		t.Fatalf(`b: edgeplane_token_claims_total{result="unchecked"} = %v, want 1`, v)
	}
	if code := dialRaw(t, b.client).upgrade("/chat?id=" + neg.ConnectionToken); code != 409 {
		t.Fatalf("reuse on the same node with Redis down: %d, want 409 (the local check)", code)
	}
}
