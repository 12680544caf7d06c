package service_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/service"
)

// fastFleet makes presence rounds quick, for tests.
var fastFleet = service.FleetConfig{PresenceInterval: 100 * time.Millisecond, PresenceTTL: time.Second}

// startFleet starts n service-mode nodes on one real Redis.
func startFleet(t testing.TB, n int) []*node.Node {
	rs := redistest.Start(t)
	var out []*node.Node
	for i := 0; i < n; i++ {
		out = append(out, nodetest.Start(t, node.Config{Hubs: []node.Hub{{Name: "chathub"}},
			Conn:    conn.Config{AccessKey: key, AcceptRate: -1, MaxMessageRate: -1},
			Redis:   &backplane.RedisConfig{URL: rs.URL()},
			Service: &service.Config{Fleet: fastFleet}}))
	}
	return out
}

// waitHosted waits until n's presence shows another node hosting the
// hub's app.
func waitHosted(t testing.TB, n *node.Node) {
	testutil.WaitUntil(t, 10*time.Second, "the other node's app in the presence", func() bool {
		return len(n.Service().FleetHosts("chathub")) > 0
	})
}

// connectAt is connect with the app's redirect sent to another node (as
// a balanced endpoint would): the client's token names the app's node's
// host, which is the same 127.0.0.1.
func connectAt(t *testing.T, base, hub, user string, at *node.Node) *client {
	t.Helper()
	u, tok, id := redirect(t, base, hub, user, at)
	return dial(t, u, tok, id)
}

// lastClose is the SignalR Close record a closed client got last.
func (c *client) lastClose() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.recs) - 1; i >= 0; i-- {
		if c.recs[i]["type"] == 7.0 {
			return c.recs[i]
		}
	}
	return nil
}

func metricValue(t *testing.T, n *node.Node, name string) string {
	for _, line := range strings.Split(metrics(t, n), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

// startRelayFleet starts two service-mode nodes on one real Redis (see
// startFleet) and the app (c) on the first only, and waits until the
// second sees the first hosting it.
func startRelayFleet(t testing.TB, c sdkfake.Config) (a, b *node.Node, app *sdkfake.App, base string) {
	t.Helper()
	ns := startFleet(t, 2)
	a, b = ns[0], ns[1]
	app, base = startApp(t, a, c)
	waitHosted(t, b)
	return a, b, app, base
}

// TestFleetRelayInvoke: the app's server connections on node A only, a
// client on node B: B relays it to A over Redis; its hub method's result
// comes back, and the app sees the client as a client of its own. A
// client on A is still relayed locally.
func TestFleetRelayInvoke(t *testing.T) {
	s := newSeen()
	a, b, _, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
	if hs := a.Service().FleetHosts("chathub"); len(hs) != 0 {
		t.Fatalf("A sees hosts elsewhere: %v", hs)
	}
	y := connectAt(t, base, "ChatHub", "yolanda", b)
	got := y.invoke("Echo", map[string]any{"n": 1})
	if r, _ := json.Marshal(got["result"]); string(r) != `{"n":1}` || got["error"] != nil {
		t.Fatalf("Echo through the fleet: %v", got)
	}
	who := y.invoke("Whoami")["result"].(map[string]any)
	if who["user"] != "yolanda" || who["nameid"] != "yolanda" || who["protocol"] != "json" {
		t.Fatalf("the app saw %v", who)
	}
	if s.get(y.id) == nil {
		t.Fatalf("the app has no context for %s", y.id)
	}
	if !b.Router().Hub("chathub").Lookup(y.id) {
		t.Fatal("the relayed client is not in B's hub")
	}
	x := connectAt(t, base, "ChatHub", "xavier", a)
	if r := x.invoke("Echo", "local")["result"]; r != "local" {
		t.Fatalf("client on A: %v", r)
	}
	if v := metricValue(t, b, `edgeplane_service_fleet_sent_total{op="open"}`); v != "1" {
		t.Fatalf("B sent %q opens, want 1", v)
	}
	if v := metricValue(t, a, `edgeplane_service_fleet_sent_total{op="open"}`); v != "" && v != "0" {
		t.Fatalf("A relayed its own client to another node (%s opens)", v)
	}
	if v := metricValue(t, b, `edgeplane_service_fleet_clients{side="client"}`); v != "1" {
		t.Fatalf("B's relayed clients gauge %q", v)
	}
	if v := metricValue(t, a, `edgeplane_service_fleet_clients{side="host"}`); v != "1" {
		t.Fatalf("A's hosted clients gauge %q", v)
	}
}

// TestFleetRelaySends: Clients.All, Others, Caller, Group (joined with
// an ack), User and Client reach exactly the clients they name, on both
// nodes, with the app on A only.
func TestFleetRelaySends(t *testing.T) {
	a, b, app, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})
	x := connectAt(t, base, "ChatHub", "xavier", a)
	y := connectAt(t, base, "ChatHub", "yolanda", b)
	y2 := connectAt(t, base, "ChatHub", "yolanda", b)
	z := connectAt(t, base, "ChatHub", "zoe", b)
	all := []*client{x, y, y2, z}
	h := app.Hub("ChatHub")

	y.invoke("ToAll", "1")
	for _, c := range all {
		c.wait("all", func(m map[string]any) bool { return m["target"] == "all" })
	}
	z.invoke("ToOthers", "2")
	for _, c := range []*client{x, y, y2} {
		c.wait("others", func(m map[string]any) bool { return m["target"] == "others" })
	}
	y.invoke("ToCaller", "3")
	y.wait("caller", func(m map[string]any) bool { return m["target"] == "caller" })
	if r := z.invoke("Join", "g")["result"]; r != true {
		t.Fatalf("Join of a client on B acked %v, want true (Ok)", r)
	}
	x.invoke("ToGroup", "g", "4")
	z.wait("group", func(m map[string]any) bool { return m["target"] == "group" })
	if err := h.User("yolanda").Send("user", "5"); err != nil {
		t.Fatal(err)
	}
	if err := h.Client(z.id).Send("client", "6"); err != nil {
		t.Fatal(err)
	}
	y.wait("user", func(m map[string]any) bool { return m["target"] == "user" })
	y2.wait("user", func(m map[string]any) bool { return m["target"] == "user" })
	z.wait("client", func(m map[string]any) bool { return m["target"] == "client" })
	if err := h.All().Send("marker"); err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		c.wait("marker", func(m map[string]any) bool { return m["target"] == "marker" })
	}
	for _, tc := range []struct {
		c      *client
		target string
		want   []any
	}{
		{x, "others", []any{"2"}}, {y, "others", []any{"2"}}, {z, "others", nil},
		{y, "caller", []any{"3"}}, {x, "caller", nil}, {y2, "caller", nil},
		{z, "group", []any{"4"}}, {x, "group", nil}, {y, "group", nil},
		{y, "user", []any{"5"}}, {y2, "user", []any{"5"}}, {z, "user", nil}, {x, "user", nil},
		{z, "client", []any{"6"}}, {y, "client", nil},
	} {
		if got := tc.c.messages(tc.target); !slices.Equal(got, tc.want) {
			t.Errorf("client %s got %s %v, want %v", tc.c.id, tc.target, got, tc.want)
		}
	}
	if r := z.invoke("Leave", "g")["result"]; r != true {
		t.Fatalf("Leave acked %v", r)
	}
	if ok, err := h.ConnectionExists(context.Background(), z.id); !ok || err != nil {
		t.Fatalf("ConnectionExists of a client on B: %v %v", ok, err)
	}
}

// TestFleetRelayAbort: the app's Context.Abort closes a client on the
// other node; a client on the other node that leaves is a
// CloseConnection for the app.
func TestFleetRelayAbort(t *testing.T) {
	s := newSeen()
	a, b, _, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
	c := connectAt(t, base, "ChatHub", "alice", b)
	c.send(`{"type":1,"target":"Abort","arguments":[]}`)
	if ce := c.closed(); ce == nil || ce.Code != 1000 {
		t.Fatalf("close %v, want 1000", ce)
	}
	if cl := c.lastClose(); cl == nil || cl["allowReconnect"] == true {
		t.Fatalf("close record %v: want one without allowReconnect", cl)
	}
	d := connectAt(t, base, "ChatHub", "bob", b)
	d.ws.Close()
	testutil.WaitUntil(t, 5*time.Second, "the app's OnDisconnected for both", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Contains(s.gone, c.id) && slices.Contains(s.gone, d.id)
	})
	testutil.WaitUntil(t, 5*time.Second, "no relayed clients left", func() bool {
		return metricValue(t, a, `edgeplane_service_fleet_clients{side="host"}`) == "0" &&
			metricValue(t, b, `edgeplane_service_fleet_clients{side="client"}`) == "0"
	})
}

// TestFleetRelayServerKilled: the server connection hosting a client of
// the other node dies mid-flight: the client is closed with
// allowReconnect; a client on the app's other connection stays.
func TestFleetRelayServerKilled(t *testing.T) {
	_, b, app, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}, ConnectionsPerHub: 2,
		RetryDelay: func(int) time.Duration { return time.Hour }})
	var cs []*client
	for i := 0; i < 4; i++ {
		cs = append(cs, connectAt(t, base, "ChatHub", "u", b))
	}
	hosts := make([]int, len(cs))
	for i, c := range cs {
		hosts[i] = app.HostOf("ChatHub", c.id)
	}
	slot := hosts[0]
	if slot < 0 || !slices.ContainsFunc(hosts, func(h int) bool { return h != slot }) {
		t.Fatalf("hosts %v: want clients on both connections", hosts)
	}
	// One call in flight on the victim's connection when it dies.
	cs[0].send(`{"type":1,"invocationId":"inflight","target":"Echo","arguments":["x"]}`)
	app.Kill("ChatHub", slot)
	for i, c := range cs {
		if hosts[i] != slot {
			continue
		}
		if ce := c.closed(); ce == nil {
			t.Fatalf("client %d: no close frame", i)
		}
		if cl := c.lastClose(); cl == nil || cl["allowReconnect"] != true {
			t.Fatalf("client %d: close record %v, want allowReconnect", i, cl)
		}
	}
	for i, c := range cs {
		if hosts[i] == slot {
			continue
		}
		if r := c.invoke("Echo", "still")["result"]; r != "still" {
			t.Fatalf("client on the other connection: %v", r)
		}
	}
}

// TestFleetRelayNodeGone: node A stops answering (its backplane closed:
// no goodbye, no presence): B finds its presence expired and closes the
// clients it relayed there, with allowReconnect. And the other way: a
// client node gone is a CloseConnection for the app of each of its
// clients.
func TestFleetRelayNodeGone(t *testing.T) {
	t.Run("host node", func(t *testing.T) {
		a, b, _, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})
		y := connectAt(t, base, "ChatHub", "y", b)
		if r := y.invoke("Echo", 1)["result"]; r != 1.0 {
			t.Fatalf("Echo %v", r)
		}
		a.Backplane().Close()
		if ce := y.closed(); ce == nil {
			t.Fatal("no close frame")
		}
		if cl := y.lastClose(); cl == nil || cl["allowReconnect"] != true {
			t.Fatalf("close record %v, want allowReconnect", cl)
		}
		if v := metricValue(t, b, "edgeplane_service_fleet_peers_lost_total"); v != "1" {
			t.Fatalf("peers lost %q", v)
		}
	})
	t.Run("client node", func(t *testing.T) {
		s := newSeen()
		_, b, _, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
		y := connectAt(t, base, "ChatHub", "y", b)
		if r := y.invoke("Echo", 1)["result"]; r != 1.0 {
			t.Fatalf("Echo %v", r)
		}
		b.Backplane().Close()
		testutil.WaitUntil(t, 10*time.Second, "the app's OnDisconnected for the client of the node gone", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return slices.Contains(s.gone, y.id)
		})
	})
}

// TestFleetRelayOrder: a client's messages reach the app in the order
// sent, and the app's answers come back in order, however many are in
// flight between the nodes (the app runs a client's invocations one at
// a time, in order of arrival).
func TestFleetRelayOrder(t *testing.T) {
	_, b, _, base := startRelayFleet(t, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})
	y := connectAt(t, base, "ChatHub", "y", b)
	const n = 500
	for i := 0; i < n; i++ {
		y.send(`{"type":1,"invocationId":"o` + strconv.Itoa(i) + `","target":"Echo","arguments":[` + strconv.Itoa(i) + `]}`)
	}
	last := "o" + strconv.Itoa(n-1)
	y.wait("the last completion", func(m map[string]any) bool { return m["type"] == 3.0 && m["invocationId"] == last })
	y.mu.Lock()
	defer y.mu.Unlock()
	next := 0
	for _, m := range y.recs {
		if m["type"] != 3.0 {
			continue
		}
		if m["result"] != float64(next) || m["invocationId"] != "o"+strconv.Itoa(next) {
			t.Fatalf("completion %d: %v", next, m)
		}
		next++
	}
	if next != n {
		t.Fatalf("%d completions, want %d", next, n)
	}
}
