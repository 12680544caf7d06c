package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/service"
)

// seen records what the app's hub saw of its clients.
type seen struct {
	mu   sync.Mutex
	ctxs map[string]*sdkfake.Context
	gone []string
}

func (s *seen) get(id string) *sdkfake.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctxs[id]
}

func chatHub(s *seen) *sdkfake.Hub {
	return &sdkfake.Hub{
		Name: "ChatHub",
		OnConnected: func(c *sdkfake.Context) error {
			s.mu.Lock()
			s.ctxs[c.ConnectionID] = c
			s.mu.Unlock()
			return nil
		},
		OnDisconnected: func(c *sdkfake.Context, err error) {
			s.mu.Lock()
			s.gone = append(s.gone, c.ConnectionID)
			s.mu.Unlock()
		},
		Methods: map[string]sdkfake.Method{
			"Echo": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { return args[0], nil },
			"Whoami": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				return map[string]string{"user": c.UserID, "name": c.Claim(serviceproto.ClaimName),
					"nameid": c.Claim(serviceproto.ClaimNameIdentifier), "protocol": c.Protocol}, nil
			},
			"Join": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				var g string
				json.Unmarshal(args[0], &g)
				return c.Hub.AddToGroup(context.Background(), c.ConnectionID, g)
			},
			"JoinOther": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				var id, g string
				json.Unmarshal(args[0], &id)
				json.Unmarshal(args[1], &g)
				return c.Hub.AddToGroup(context.Background(), id, g)
			},
			"Leave": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				var g string
				json.Unmarshal(args[0], &g)
				return c.Hub.RemoveFromGroup(context.Background(), c.ConnectionID, g)
			},
			"ToAll": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				return nil, c.Hub.All().Send("all", args[0])
			},
			"ToOthers": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				return nil, c.Others().Send("others", args[0])
			},
			"ToCaller": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				return nil, c.Caller().Send("caller", args[0])
			},
			"ToGroup": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
				var g string
				json.Unmarshal(args[0], &g)
				return nil, c.Hub.Group(g).Send("group", args[1])
			},
			"Abort": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { c.Abort(); return nil, nil },
		},
	}
}

func newSeen() *seen { return &seen{ctxs: map[string]*sdkfake.Context{}} }

// TestInvokeHubMethod: a client redirected by the app's negotiate reaches
// the app's hub through the node: its method's result comes back, and
// the app sees the client's user, claims with .NET types, query and
// protocol as the SDK reads them.
func TestInvokeHubMethod(t *testing.T) {
	n := startNode(t, service.Config{})
	s := newSeen()
	_, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
	c := connect(t, base, "ChatHub", "alice")
	got := c.invoke("Echo", map[string]any{"n": 1})
	if r, _ := json.Marshal(got["result"]); string(r) != `{"n":1}` || got["error"] != nil {
		t.Fatalf("Echo: %v", got)
	}
	who := c.invoke("Whoami")["result"].(map[string]any)
	if who["user"] != "alice" || who["name"] != "alice" || who["nameid"] != "alice" || who["protocol"] != "json" {
		t.Fatalf("the app saw %v", who)
	}
	ctx := s.get(c.id)
	if ctx == nil {
		t.Fatalf("no context for %s", c.id)
	}
	if ctx.Query == "" || !contains(ctx.Query, "asrs.op=%2FChatHub") || contains(ctx.Query, "access_token") || contains(ctx.Query, "id=") && !contains(ctx.Query, "request_id=") {
		t.Fatalf("query %q", ctx.Query)
	}
	var fwd bool
	for _, h := range ctx.Headers {
		if h.Name == "Authorization" {
			t.Fatal("the Authorization header was forwarded")
		}
		fwd = fwd || h.Name == "X-Forwarded-For" && h.Values[0] == "127.0.0.1"
	}
	if !fwd {
		t.Fatalf("no X-Forwarded-For: %v", ctx.Headers)
	}
}

// TestClaimsWithoutUpstreamContext: the app gets the client's claims
// (its user id) even when the node keeps no connect context for an
// upstream (--upstream-context-bytes negative) or a small one.
func TestClaimsWithoutUpstreamContext(t *testing.T) {
	for _, size := range []int{-1, 64} {
		n := startNodeConn(t, service.Config{}, conn.Config{ContextMaxBytes: size})
		_, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})
		c := connect(t, base, "ChatHub", "alice")
		if who := c.invoke("Whoami")["result"].(map[string]any); who["user"] != "alice" || who["nameid"] != "alice" {
			t.Fatalf("context bytes %d: the app saw %v", size, who)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestAppSends: Clients.All, Others, Caller, Group (joined with an ack),
// User and Client from the app reach exactly the clients they name.
func TestAppSends(t *testing.T) {
	n := startNode(t, service.Config{})
	s := newSeen()
	a, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
	alice := connect(t, base, "ChatHub", "alice")
	bob := connect(t, base, "ChatHub", "bob")
	alice2 := connect(t, base, "ChatHub", "alice")
	h := a.Hub("ChatHub")

	alice.invoke("ToAll", "1")
	for _, c := range []*client{alice, bob, alice2} {
		c.wait("all", func(m map[string]any) bool { return m["target"] == "all" })
	}
	bob.invoke("ToOthers", "2")
	alice.wait("others", func(m map[string]any) bool { return m["target"] == "others" })
	alice2.wait("others", func(m map[string]any) bool { return m["target"] == "others" })
	bob.invoke("ToCaller", "3")
	bob.wait("caller", func(m map[string]any) bool { return m["target"] == "caller" })

	if r := bob.invoke("Join", "g")["result"]; r != true {
		t.Fatalf("Join acked %v, want true (Ok)", r)
	}
	if r := bob.invoke("JoinOther", "no-such-connection", "g")["result"]; r != false {
		t.Fatalf("join of an unknown connection acked %v, want false (NotFound)", r)
	}
	alice.invoke("ToGroup", "g", "4")
	bob.wait("group", func(m map[string]any) bool { return m["target"] == "group" })
	if err := h.User("alice").Send("user", "5"); err != nil {
		t.Fatal(err)
	}
	if err := h.Client(bob.id).Send("client", "6"); err != nil {
		t.Fatal(err)
	}
	// The app's sends may leave on different server connections, each
	// read by its own goroutine: wait for the ones expected, then a marker
	// to all for what must not arrive.
	alice.wait("user", func(m map[string]any) bool { return m["target"] == "user" })
	alice2.wait("user", func(m map[string]any) bool { return m["target"] == "user" })
	bob.wait("client", func(m map[string]any) bool { return m["target"] == "client" })
	if err := h.All().Send("marker"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, bob, alice2} {
		c.wait("marker", func(m map[string]any) bool { return m["target"] == "marker" })
	}
	for _, tc := range []struct {
		c      *client
		target string
		want   []any
	}{
		{alice, "others", []any{"2"}}, {alice2, "others", []any{"2"}}, {bob, "others", nil},
		{bob, "caller", []any{"3"}}, {alice, "caller", nil},
		{bob, "group", []any{"4"}}, {alice, "group", nil}, {alice2, "group", nil},
		{alice, "user", []any{"5"}}, {alice2, "user", []any{"5"}}, {bob, "user", nil},
		{bob, "client", []any{"6"}}, {alice, "client", nil},
	} {
		if got := tc.c.messages(tc.target); !slices.Equal(got, tc.want) {
			t.Errorf("client %s got %s %v, want %v", tc.c.id, tc.target, got, tc.want)
		}
	}
	if r := bob.invoke("Leave", "g")["result"]; r != true {
		t.Fatalf("Leave acked %v", r)
	}
	if ok, err := h.GroupExists(context.Background(), "g"); ok || err != nil {
		t.Fatalf("group exists after its last member left: %v %v", ok, err)
	}
	if ok, err := h.UserExists(context.Background(), "alice"); !ok || err != nil {
		t.Fatalf("UserExists(alice) %v %v", ok, err)
	}
	if ok, err := h.ConnectionExists(context.Background(), bob.id); !ok || err != nil {
		t.Fatalf("ConnectionExists(bob) %v %v", ok, err)
	}
}

// TestAbortAndClose: the app's Context.Abort closes the client; a client
// that leaves is a CloseConnection for the app (OnDisconnected).
func TestAbortAndClose(t *testing.T) {
	n := startNode(t, service.Config{})
	s := newSeen()
	_, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
	c := connect(t, base, "ChatHub", "alice")
	c.send(`{"type":1,"target":"Abort","arguments":[]}`)
	if ce := c.closed(); ce == nil || ce.Code != 1000 {
		t.Fatalf("close %v, want 1000", ce)
	}
	d := connect(t, base, "ChatHub", "bob")
	d.ws.Close()
	testutil.WaitUntil(t, 5*time.Second, "the app's OnDisconnected for both", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Contains(s.gone, c.id) && slices.Contains(s.gone, d.id)
	})
}

// TestServerConnectionKilled: when the server connection hosting a
// client dies, the client is closed (it may reconnect through the app);
// clients on the app's other connections stay.
func TestServerConnectionKilled(t *testing.T) {
	n := startNode(t, service.Config{})
	s := newSeen()
	a, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}, ConnectionsPerHub: 2,
		RetryDelay: func(int) time.Duration { return 50 * time.Millisecond }})
	var cs []*client
	for i := 0; i < 4; i++ {
		cs = append(cs, connect(t, base, "ChatHub", "u"))
	}
	victim := cs[0]
	slot := a.HostOf("ChatHub", victim.id)
	hosts := make([]int, len(cs))
	for i, c := range cs {
		hosts[i] = a.HostOf("ChatHub", c.id)
	}
	if slot < 0 || !slices.ContainsFunc(hosts, func(h int) bool { return h != slot }) {
		t.Fatalf("hosts %v: want clients on both connections", hosts)
	}
	a.Kill("ChatHub", slot)
	victim.closed()
	for i, c := range cs[1:] {
		if hosts[i+1] == slot {
			c.closed()
			continue
		}
		if r := c.invoke("Echo", "still")["result"]; r != "still" {
			t.Fatalf("client on the other connection: %v", r)
		}
	}
	// The slot comes back and new clients work.
	testutil.WaitUntil(t, 10*time.Second, "reconnected", func() bool { return n.Service().ServerConnections("chathub") == 2 })
	if r := connect(t, base, "ChatHub", "v").invoke("Echo", 1)["result"]; r != 1.0 {
		t.Fatalf("after reconnect: %v", r)
	}
}

// TestClientResults: an app invokes a client and gets its answer, when it
// hosts the client and when another app server does (the answer is
// routed through the service); a client that leaves fails it.
func TestClientResults(t *testing.T) {
	n := startNode(t, service.Config{})
	s := newSeen()
	host, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}, ServerID: "host"})
	other, _ := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}, ServerID: "other"})
	// Clients land on either app server's connections: find one on host.
	var c *client
	for i := 0; i < 20 && c == nil; i++ {
		x := connect(t, base, "ChatHub", "u")
		if host.HostOf("ChatHub", x.id) >= 0 {
			c = x
		}
	}
	if c == nil {
		t.Fatal("no client landed on the host app server")
	}
	go func() {
		for i := 0; i < 2; i++ {
			m := c.wait("ask", func(m map[string]any) bool {
				return m["target"] == "ask" && m["invocationId"] != nil && m["seen"] == nil
			})
			c.mu.Lock()
			m["seen"] = true
			c.mu.Unlock()
			c.send(`{"type":3,"invocationId":"` + m["invocationId"].(string) + `","result":"answer"}`)
		}
	}()
	for _, app := range []*sdkfake.App{host, other} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := app.Hub("ChatHub").InvokeClient(ctx, c.id, "ask", 1)
		cancel()
		if err != nil || string(r) != `"answer"` {
			t.Fatalf("from %s: %s %v", app.ServerID(), r, err)
		}
	}
	// The client leaves with an invocation pending: the caller's wait fails.
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := other.Hub("ChatHub").InvokeClient(ctx, c.id, "never")
		errc <- err
	}()
	c.wait("never", func(m map[string]any) bool { return m["target"] == "never" })
	c.ws.Close()
	if err := <-errc; err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pending invocation: %v, want the service's ErrorCompletion", err)
	}
}

// TestServerSticky: clients negotiated by an app with ServerStickyMode
// Required (Blazor's) are hosted by that app server's connections, never
// another's (round-robin would put half of them on the other).
func TestServerSticky(t *testing.T) {
	n := startNode(t, service.Config{})
	sticky, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}, ServerID: "sticky", ServerStickyMode: "Required"})
	startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}, ServerID: "other"})
	for i := 0; i < 10; i++ {
		c := connect(t, base, "ChatHub", "u")
		if sticky.HostOf("ChatHub", c.id) < 0 {
			t.Fatalf("client %d not hosted by its sticky server", i)
		}
	}
}

// TestUserGroupsAndCloses: the Management SDK's user groups (current and
// later connections of the user join; a TTL ends the membership; removal
// from all groups), existence checks, and closes by connection, user and
// group.
func TestUserGroupsAndCloses(t *testing.T) {
	n := startNode(t, service.Config{})
	app, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})
	h := app.Hub("ChatHub")
	ctx := context.Background()
	a1 := connect(t, base, "ChatHub", "ann")
	if ok, err := h.AddUserToGroup(ctx, "ann", "lasting", 0); !ok || err != nil {
		t.Fatalf("AddUserToGroup: %v %v", ok, err)
	}
	if ok, err := h.AddUserToGroup(ctx, "ann", "brief", 2*time.Second); !ok || err != nil {
		t.Fatalf("AddUserToGroup with TTL: %v %v", ok, err)
	}
	a2 := connect(t, base, "ChatHub", "ann") // joins ann's groups on arrival
	bo := connect(t, base, "ChatHub", "bob")
	for _, g := range []string{"lasting", "brief"} {
		if ok, _ := h.IsUserInGroup(ctx, "ann", g); !ok {
			t.Fatalf("ann not in %s", g)
		}
		h.Group(g).Send("g", g)
	}
	for _, c := range []*client{a1, a2} {
		c.wait("lasting", func(m map[string]any) bool { return m["target"] == "g" && m["arguments"].([]any)[0] == "lasting" })
		c.wait("brief", func(m map[string]any) bool { return m["target"] == "g" && m["arguments"].([]any)[0] == "brief" })
	}
	if ok, _ := h.IsUserInGroup(ctx, "bob", "lasting"); ok {
		t.Fatal("bob in ann's group")
	}
	testutil.WaitUntil(t, 10*time.Second, "the TTL to end ann's brief membership", func() bool {
		ok, _ := h.IsUserInGroup(ctx, "ann", "brief")
		return !ok
	})
	if ok, _ := h.GroupExists(ctx, "brief"); ok {
		t.Fatal("the brief group still has members")
	}
	if ok, _ := h.RemoveUserFromAllGroups(ctx, "ann"); !ok {
		t.Fatal("RemoveUserFromAllGroups")
	}
	if ok, _ := h.GroupExists(ctx, "lasting"); ok {
		t.Fatal("ann's connections still in the lasting group")
	}
	// Closes.
	if _, err := h.AddToGroup(ctx, bo.id, "g2"); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.CloseGroupConnections(ctx, "g2", "group closed"); !ok || err != nil {
		t.Fatalf("CloseGroupConnections: %v %v", ok, err)
	}
	bo.closed()
	if ok, err := h.CloseUserConnections(ctx, "ann", "user closed", a2.id); !ok || err != nil {
		t.Fatalf("CloseUserConnections: %v %v", ok, err)
	}
	a1.closed()
	if ok, _ := h.ConnectionExists(ctx, a2.id); !ok {
		t.Fatal("the excluded connection was closed")
	}
	if err := h.CloseConnection(a2.id, "bye"); err != nil {
		t.Fatal(err)
	}
	a2.closed()
	a2.mu.Lock()
	last := a2.recs[len(a2.recs)-1]
	a2.mu.Unlock()
	if last["type"] != 7.0 || last["error"] != "bye" {
		t.Fatalf("last record before the close: %v", last)
	}
}
