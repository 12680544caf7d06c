package e2e

import (
	"fmt"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsClients runs test/compat/clients.js: unmodified @microsoft/signalr
// clients under Node.
type jsClients struct {
	jsJournal
}

type jsClientSpec struct {
	Name            string   `json:"name"`
	Hub             string   `json:"hub,omitempty"`
	SkipNegotiation bool     `json:"skipNegotiation,omitempty"`
	AccessToken     string   `json:"accessToken,omitempty"`
	Targets         []string `json:"targets,omitempty"`
	Invoke          any      `json:"invoke,omitempty"`
	// Protocol "messagepack": withHubProtocol(new MessagePackHubProtocol()).
	Protocol string `json:"protocol,omitempty"`
	// Invokes are invoked in turn after Invoke; Sends sent after them.
	Invokes []map[string]any  `json:"invokes,omitempty"`
	Sends   []map[string]any  `json:"sends,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Query   string            `json:"query,omitempty"`
	// Ignore: targets handled without an event each.
	Ignore []string `json:"ignore,omitempty"`
	// StopAfterConnect: the client stops once connected.
	StopAfterConnect bool `json:"stopAfterConnect,omitempty"`
	// Transport "websockets", "sse" or "longpolling" forces the client
	// onto it.
	Transport string `json:"transport,omitempty"`
	// Reconnect: withAutomaticReconnect([0, 0, 0]).
	Reconnect bool `json:"reconnect,omitempty"`
	// InvokeAsync: the client is ready without waiting for its invoke's
	// answer.
	InvokeAsync bool `json:"invokeAsync,omitempty"`
}

// startJS starts clients.js and returns once every client is ready.
func startJS(t *testing.T, base string, clients []jsClientSpec) *jsClients {
	t.Helper()
	return &jsClients{startClientsJS(t, "clients.js", map[string]any{"base": base, "clients": clients}, 20*time.Second)}
}

func (j *jsClients) connID(name string) string {
	ev := j.find(name, "connected")
	if len(ev) != 1 {
		j.t.Fatalf("client %s: %d connected events", name, len(ev))
	}
	return ev[0].ConnectionID
}

// TestCompatSignalRClient: unmodified @microsoft/signalr clients connect
// (negotiate and skipNegotiation) and receive what the REST API sends to
// all, a group, a user and a connection; excluded connections get nothing.
func TestCompatSignalRClient(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "compat-access-key-0123456789-abcdef"
		n := startNode(t, backend, "--hub", "chat", "--access-key", key)
		alice := clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"})
		bob := clientToken(t, key, n, "chat", map[string]any{"sub": "bob"})
		js := startJS(t, "http://"+n.client, []jsClientSpec{
			{Name: "a", AccessToken: alice},
			{Name: "b", AccessToken: bob},
			{Name: "c", AccessToken: alice, SkipNegotiation: true},
			{Name: "d", AccessToken: bob, Invoke: map[string]any{"target": "Echo", "args": []any{"x"}}},
		})
		a, b := js.connID("a"), js.connID("b")
		if a == "" || b == "" {
			t.Fatalf("negotiated clients have no connectionId: %q %q", a, b)
		}
		// Without an upstream an invocation with an id gets a Completion error.
		testutil.WaitUntil(t, 5*time.Second, "invoke error", func() bool { return len(js.find("d", "invokeError")) == 1 })
		if e := *js.find("d", "invokeError")[0].Error; !strings.Contains(e, "no upstream is configured") {
			t.Fatalf("invoke error %q", e)
		}
		for _, g := range []string{a, b} {
			if c, body := n.restAPI("PUT", "/api/hubs/chat/groups/g1/connections/"+g, "", key); c != 200 {
				t.Fatalf("add to group: %d %s", c, body)
			}
		}
		sends := []struct{ path, msg string }{
			{"/api/hubs/chat/:send", "all"},
			{"/api/hubs/chat/:send?excluded=" + a + "," + b, "all-except-ab"},
			{"/api/hubs/chat/groups/g1/:send", "group"},
			{"/api/hubs/chat/groups/g1/:send?excluded=" + a, "group-except-a"},
			{"/api/hubs/chat/users/alice/:send", "user-alice"},
			{"/api/hubs/chat/connections/" + b + "/:send", "conn-b"},
		}
		for _, s := range sends {
			if c, body := n.restAPI("POST", s.path, fmt.Sprintf(`{"target":"t","arguments":[%q]}`, s.msg), key); c != 202 {
				t.Fatalf("POST %s: %d %s", s.path, c, body)
			}
		}
		fence := func(marker string) {
			t.Helper()
			if c, body := n.restAPI("POST", "/api/hubs/chat/:send", fmt.Sprintf(`{"target":"t","arguments":[%q]}`, marker), key); c != 202 {
				t.Fatalf("POST fence: %d %s", c, body)
			}
		}
		fence("fence-1")
		// In the order sent; nothing else before the fence.
		want := map[string][]string{
			"a": {"all", "group", "user-alice"},
			"b": {"all", "group", "group-except-a", "conn-b"},
			"c": {"all", "all-except-ab", "user-alice"},
			"d": {"all", "all-except-ab"},
		}
		for name, got := range js.receivedUpTo("fence-1", "a", "b", "c", "d") {
			if !slices.Equal(got, want[name]) {
				t.Errorf("client %s received %v, want %v", name, got, want[name])
			}
		}
		// Group removal: the group's next message reaches b, not a.
		if c, _ := n.restAPI("DELETE", "/api/hubs/chat/groups/g1/connections/"+a, "", key); c != 200 {
			t.Fatalf("remove from group: %d", c)
		}
		if c, body := n.restAPI("POST", "/api/hubs/chat/groups/g1/:send", `{"target":"t","arguments":["group-after-remove"]}`, key); c != 202 {
			t.Fatalf("POST to g1: %d %s", c, body)
		}
		fence("fence-2")
		got := js.receivedUpTo("fence-2", "a", "b")
		if w := []string{"fence-1"}; !slices.Equal(got["a"][len(want["a"]):], w) {
			t.Errorf("a after leaving g1 received %v, want %v", got["a"][len(want["a"]):], w)
		}
		if w := []string{"fence-1", "group-after-remove"}; !slices.Equal(got["b"][len(want["b"]):], w) {
			t.Errorf("b received %v after a left g1, want %v", got["b"][len(want["b"]):], w)
		}
		// A server-side close reaches the client.
		if c, _ := n.restAPI("DELETE", "/api/hubs/chat/connections/"+b, "", key); c != 200 {
			t.Fatalf("close connection: %d", c)
		}
		testutil.WaitUntil(t, 10*time.Second, "b closed", func() bool { return len(js.find("b", "closed")) == 1 })
		for _, e := range js.find("", "closed") {
			if e.Name != "b" {
				t.Fatalf("client %s closed unexpectedly", e.Name)
			}
		}
	})
}
