package service_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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
	tok, _ := auth.Sign(map[string]any{"nameid": user, "aud": "http://" + n.Addr().String() + "/" + hub,
		"exp": time.Now().Add(time.Hour).Unix()}, []byte(key))
	code, body := post(t, "http://"+n.Addr().String()+"/"+hub+"/negotiate?negotiateVersion=1", tok)
	var neg struct{ ConnectionID, ConnectionToken string }
	if json.Unmarshal(body, &neg) != nil || code != 200 {
		t.Fatalf("negotiate: %d %s", code, body)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+"/"+hub+"?id="+url.QueryEscape(neg.ConnectionToken),
		http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, ws: ws, id: neg.ConnectionID, done: make(chan struct{})}
	t.Cleanup(func() { ws.Close(); <-c.done })
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	if _, hs, err := ws.ReadMessage(); err != nil || string(hs) != "{}\x1e" {
		t.Fatalf("handshake %q %v", hs, err)
	}
	go c.read()
	return c
}

// TestFleet: two nodes on one Redis, the app's server connections on the
// first. What the app sends to many reaches the clients of both nodes
// (relayed ones on the first, /{hub} ones on the second), and its group
// change for a connection on the second node is applied there and acked.
func TestFleet(t *testing.T) {
	rs := redistest.Start(t)
	start := func(svc bool) *node.Node {
		cfg := node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Conn: conn.Config{AccessKey: key},
			Redis: &backplane.RedisConfig{URL: rs.URL()}}
		if svc {
			cfg.Service = &service.Config{}
		}
		return nodetest.Start(t, cfg)
	}
	a, b := start(true), start(false)
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
