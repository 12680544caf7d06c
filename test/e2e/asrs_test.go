package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// Azure SignalR Service Default mode end to end: the real binary in
// --service-mode, the Go fake of the SDK (internal/sdkfake) as the
// ASP.NET Core app, and unmodified @microsoft/signalr clients under Node
// (test/compat/asrs.js) that negotiate with the app and are redirected
// to the node.

// asrsJS runs test/compat/asrs.js.
type asrsJS struct {
	jsJournal
}

type asrsClient struct {
	Name      string            `json:"name"`
	Hub       string            `json:"hub,omitempty"`
	Query     string            `json:"query,omitempty"`
	Targets   []string          `json:"targets,omitempty"`
	Results   map[string]string `json:"results,omitempty"`
	Reconnect bool              `json:"reconnect,omitempty"`
	Protocol  string            `json:"protocol,omitempty"` // "messagepack"; default JSON
}

func startASRSJS(t *testing.T, base string, clients []asrsClient) *asrsJS {
	t.Helper()
	return &asrsJS{startClientsJS(t, "asrs.js", map[string]any{"base": base, "clients": clients}, 30*time.Second)}
}

func (j *asrsJS) connID(name string) string {
	j.t.Helper()
	ev := j.find(name, "connected")
	if len(ev) == 0 {
		j.t.Fatalf("client %s never connected", name)
	}
	return ev[len(ev)-1].ConnectionID
}

func (j *asrsJS) command(c map[string]any) {
	j.t.Helper()
	b, _ := json.Marshal(c)
	j.writeLine(string(b))
}

// invoke calls a hub method from a client and returns its result (raw
// JSON) or error text.
func (j *asrsJS) invoke(name, target string, args ...any) (json.RawMessage, string) {
	j.t.Helper()
	if args == nil {
		args = []any{}
	}
	tag := fmt.Sprintf("%s-%s-%d", name, target, time.Now().UnixNano())
	j.command(map[string]any{"name": name, "invoke": map[string]any{"target": target, "args": args, "tag": tag}})
	e := j.first(15*time.Second, "result of "+tag, func(e jsEvent) bool { return e.Tag == tag })
	if e.Event == "invokeError" {
		return nil, *e.Error
	}
	return e.Args[0], ""
}

// waitReceived waits until every client named in want has received each
// of its messages.
func (j *asrsJS) waitReceived(want map[string][]string) {
	j.t.Helper()
	for name, msgs := range want {
		for _, m := range msgs {
			testutil.WaitUntil(j.t, 15*time.Second, name+" receiving "+m, func() bool { return slices.Contains(j.received(name), m) })
		}
	}
}

// receivedAnyOrder waits until every client named in want has received
// each of its messages, then fences with a hub method's send from client
// from and checks that each received exactly its messages before the
// fence, in any order. Sends from outside a hub method go out on any of
// an app's connections, so they may overtake each other; a hub method's
// send follows them all on every client's socket.
func (j *asrsJS) receivedAnyOrder(from string, want map[string][]string) {
	j.t.Helper()
	j.waitReceived(want)
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	j.invoke(from, "Send", "all", "fence")
	for name, got := range j.receivedUpTo("fence", names...) {
		slices.Sort(got)
		w := slices.Clone(want[name])
		slices.Sort(w)
		if !slices.Equal(got, w) {
			j.t.Errorf("client %s received %v, want %v", name, got, w)
		}
	}
}

// chatApp is the app's hub: what a ChatHub of an ASP.NET Core app would
// do, on target "t".
func chatApp() *sdkfake.Hub {
	str := func(r json.RawMessage) string { var s string; json.Unmarshal(r, &s); return s }
	return &sdkfake.Hub{Name: "ChatHub", Methods: map[string]sdkfake.Method{
		"Echo": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { return args[0], nil },
		"Whoami": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
			return c.UserID + "|" + c.Claim("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name") + "|" + c.Protocol, nil
		},
		"Join": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
			return c.Hub.AddToGroup(context.Background(), c.ConnectionID, str(args[0]))
		},
		"Leave": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
			return c.Hub.RemoveFromGroup(context.Background(), c.ConnectionID, str(args[0]))
		},
		// Send(kind, msg): kind is all, others, caller or a group name.
		"Send": func(c *sdkfake.Context, args []json.RawMessage) (any, error) {
			msg := str(args[1])
			switch k := str(args[0]); k {
			case "all":
				return nil, c.Hub.All().Send("t", msg)
			case "others":
				return nil, c.Others().Send("t", msg)
			case "caller":
				return nil, c.Caller().Send("t", msg)
			default:
				return nil, c.Hub.Group(k).Send("t", msg)
			}
		},
		"Abort": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { c.Abort(); return nil, nil },
	}}
}

func startFakeApp(t *testing.T, n *node, key, serverID string) (*sdkfake.App, string) {
	t.Helper()
	a, err := sdkfake.Start(sdkfake.Config{Endpoint: "http://" + n.client, AccessKey: key, ServerID: serverID,
		Hubs: []*sdkfake.Hub{chatApp()}, RetryDelay: func(int) time.Duration { return 200 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.WaitConnected(ctx, 5); err != nil {
		t.Fatal(err)
	}
	base, err := a.ListenNegotiate("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return a, base
}

// TestCompatServiceMode: @microsoft/signalr clients of an app in Default
// mode, through the node: a hub method's result; Clients.All, Others,
// Caller, Group (joined with an ack), User and Client; a client result;
// a second app server's broadcast; Context.Abort; a server connection
// killed mid-flight, the client reconnecting through the app.
func TestCompatServiceMode(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "asrs-compat-access-key-0123456789-abcdef"
		n := startNode(t, backend, "--access-key", key, "--service-mode") // the hub is learned
		app, base := startFakeApp(t, n, key, "first")
		second, _ := startFakeApp(t, n, key, "second")
		js := startASRSJS(t, base, []asrsClient{
			{Name: "a", Query: "user=alice", Results: map[string]string{"ask": "answer-a"}},
			{Name: "b", Query: "user=bob"},
			{Name: "c", Query: "user=alice"},
			{Name: "d", Query: "user=dan", Reconnect: true},
		})
		if r, e := js.invoke("a", "Echo", map[string]any{"x": []int{1, 2}}); string(r) != `{"x":[1,2]}` {
			t.Fatalf("Echo: %s %s", r, e)
		}
		if r, _ := js.invoke("c", "Whoami"); string(r) != `"alice|alice|json"` {
			t.Fatalf("Whoami: %s", r)
		}
		if r, e := js.invoke("b", "Join", "g"); string(r) != "true" {
			t.Fatalf("Join: %s %s", r, e)
		}
		if r, e := js.invoke("d", "Join", "g"); string(r) != "true" {
			t.Fatalf("Join: %s %s", r, e)
		}
		js.invoke("d", "Leave", "g")
		a, b := js.connID("a"), js.connID("b")
		h := app.Hub("ChatHub")
		js.invoke("a", "Send", "all", "all")
		js.invoke("b", "Send", "others", "others")
		js.invoke("c", "Send", "caller", "caller")
		js.invoke("a", "Send", "g", "group")
		if err := h.User("alice").Send("t", "user-alice"); err != nil {
			t.Fatal(err)
		}
		if err := h.Client(b).Send("t", "client-b"); err != nil {
			t.Fatal(err)
		}
		if err := second.Hub("ChatHub").AllExcept(a).Send("t", "second-all-but-a"); err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{
			"a": {"all", "others", "user-alice"},
			"b": {"all", "group", "client-b", "second-all-but-a"},
			"c": {"all", "others", "caller", "user-alice", "second-all-but-a"},
			"d": {"all", "others", "second-all-but-a"},
		}
		js.receivedAnyOrder("a", want)

		// Client results, from the app hosting the client and from the other.
		for _, x := range []*sdkfake.App{app, second} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := x.Hub("ChatHub").InvokeClient(ctx, a, "ask", 7)
			cancel()
			if err != nil || string(r) != `"answer-a"` {
				t.Fatalf("client result through %s: %s %v", x.ServerID(), r, err)
			}
		}

		// Context.Abort closes the client.
		js.command(map[string]any{"name": "c", "send": map[string]any{"target": "Abort"}})
		testutil.WaitUntil(t, 10*time.Second, "c closed", func() bool { return len(js.find("c", "closed")) == 1 })

		// The server connection hosting d dies: d is closed with
		// allowReconnect, and reconnects through the app's negotiate.
		did := js.connID("d")
		owner, slot := app, app.HostOf("ChatHub", did)
		if slot < 0 {
			owner, slot = second, second.HostOf("ChatHub", did)
		}
		if slot < 0 {
			t.Fatal("no app hosts d")
		}
		owner.Kill("ChatHub", slot)
		testutil.WaitUntil(t, 15*time.Second, "d reconnected", func() bool { return len(js.find("d", "reconnected")) == 1 })
		if r, e := js.invoke("d", "Echo", "back"); string(r) != `"back"` {
			t.Fatalf("after reconnecting: %s %s", r, e)
		}
		for _, name := range []string{"a", "b"} {
			if ev := js.find(name, "closed"); len(ev) > 0 {
				t.Fatalf("client %s closed", name)
			}
		}
	})
}
