package service_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/service"
)

// connectDirect connects a client to a node's /{hub} (not relayed: the
// Redis-backplane path) with a client token for user.
func connectDirect(t *testing.T, n *node.Node, hub, user string) *client {
	t.Helper()
	u, tok, id := negotiateDirect(t, n, hub, user)
	return dial(t, u, tok, id)
}

// negotiateDirect negotiates with a node's /{hub} with a client token for
// user and returns the WebSocket URL, the token and the connection id.
func negotiateDirect(t *testing.T, n *node.Node, hub, user string) (string, string, string) {
	t.Helper()
	tok, _ := auth.Sign(map[string]any{"nameid": user, "aud": "http://" + n.Addr().String() + "/" + hub,
		"exp": time.Now().Add(time.Hour).Unix()}, []byte(key))
	code, body := post(t, "http://"+n.Addr().String()+"/"+hub+"/negotiate?negotiateVersion=1", tok)
	var neg struct{ ConnectionID, ConnectionToken string }
	if json.Unmarshal(body, &neg) != nil || code != 200 {
		t.Fatalf("negotiate: %d %s", code, body)
	}
	return "ws://" + n.Addr().String() + "/" + hub + "?id=" + url.QueryEscape(neg.ConnectionToken), tok, neg.ConnectionID
}

// startMixedFleet starts two nodes on one real Redis: the first in
// service mode (for the app), the second a plain node.
func startMixedFleet(t *testing.T) (svc, plain *node.Node) {
	rs := redistest.Start(t)
	start := func(svc bool) *node.Node {
		cfg := node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Conn: conn.Config{AccessKey: key},
			Redis: &backplane.RedisConfig{URL: rs.URL()}}
		if svc {
			cfg.Service = &service.Config{}
		}
		return nodetest.Start(t, cfg)
	}
	return start(true), start(false)
}

// TestFleet: two nodes on one Redis, the app's server connections on the
// first. What the app sends to many reaches the clients of both nodes
// (relayed ones on the first, /{hub} ones on the second), and its group
// change for a connection on the second node is applied there and acked.
func TestFleet(t *testing.T) {
	a, b := startMixedFleet(t)
	s := newSeen()
	app, base := startApp(t, a, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
	x := connect(t, base, "ChatHub", "xavier")
	y := connectDirect(t, b, "chathub", "yolanda")

	h := app.Hub("ChatHub")
	if err := h.All().Send("all", "1"); err != nil {
		t.Fatal(err)
	}
	x.wait("all on the app's node", func(m map[string]any) bool { return m["target"] == "all" })
	y.wait("all on the other node", func(m map[string]any) bool { return m["target"] == "all" })

	if r := x.invoke("JoinOther", y.id, "g")["result"]; r != true {
		t.Fatalf("the app's group add for a connection on the other node acked %v", r)
	}
	if err := h.Group("g").Send("group", "2"); err != nil {
		t.Fatal(err)
	}
	if err := h.User("yolanda").Send("user", "3"); err != nil {
		t.Fatal(err)
	}
	y.wait("group on the other node", func(m map[string]any) bool { return m["target"] == "group" })
	y.wait("user on the other node", func(m map[string]any) bool { return m["target"] == "user" })
	if got := x.messages("group"); got != nil {
		t.Fatalf("x got the group message %v", got)
	}
}
