package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestCompatHTTPTransports: unmodified @microsoft/signalr clients forced
// onto each transport with each protocol it carries (WebSockets: JSON,
// MessagePack; Server-Sent Events: JSON; Long Polling: JSON, MessagePack)
// connect, send (an invocation's Completion error comes back over the
// transport), receive what the REST API sends to all, a group, a user and
// a connection, and reconnect after a server-side close.
func TestCompatHTTPTransports(t *testing.T) {
	for _, tc := range []struct{ transport, protocol string }{
		{"websockets", ""},
		{"websockets", "messagepack"},
		{"sse", ""},
		{"longpolling", ""},
		{"longpolling", "messagepack"},
	} {
		t.Run(tc.transport+"/"+cmpOr(tc.protocol, "json"), func(t *testing.T) {
			const key = "compat-access-key-0123456789-abcdef"
			n := startNode(t, "epoll", "--hub", "chat", "--access-key", key, "--poll-timeout", "2s")
			alice := clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"})
			bob := clientToken(t, key, n, "chat", map[string]any{"sub": "bob"})
			js := startJS(t, "http://"+n.client, []jsClientSpec{
				{Name: "a", AccessToken: alice, Transport: tc.transport, Protocol: tc.protocol},
				{Name: "b", AccessToken: bob, Transport: tc.transport, Protocol: tc.protocol, Reconnect: true,
					Invoke: map[string]any{"target": "Echo", "args": []any{"x"}}},
			})
			a, b := js.connID("a"), js.connID("b")
			// The invocation went up by POST; its Completion came back on
			// the transport.
			testutil.WaitUntil(t, 10*time.Second, "invoke error", func() bool { return len(js.find("b", "invokeError")) == 1 })
			if e := *js.find("b", "invokeError")[0].Error; !strings.Contains(e, "no upstream is configured") {
				t.Fatalf("invoke error %q", e)
			}
			if c, body := n.restAPI("PUT", "/api/hubs/chat/groups/g1/connections/"+a, "", key); c != 200 {
				t.Fatalf("add to group: %d %s", c, body)
			}
			send := func(path, msg string) {
				t.Helper()
				if c, body := n.restAPI("POST", path, fmt.Sprintf(`{"target":"t","arguments":[%q]}`, msg), key); c != 202 {
					t.Fatalf("POST %s: %d %s", path, c, body)
				}
			}
			send("/api/hubs/chat/:send", "all")
			send("/api/hubs/chat/groups/g1/:send", "group")
			send("/api/hubs/chat/users/bob/:send", "user-bob")
			send("/api/hubs/chat/connections/"+a+"/:send", "conn-a")
			time.Sleep(3 * time.Second) // a poll times out empty meanwhile: the clients poll again
			send("/api/hubs/chat/:send", "fence-1")
			want := map[string][]string{"a": {"all", "group", "conn-a"}, "b": {"all", "user-bob"}}
			for name, got := range js.receivedUpTo("fence-1", "a", "b") {
				if !slices.Equal(got, want[name]) {
					t.Errorf("client %s received %v, want %v", name, got, want[name])
				}
			}
			// A server-side close (allowReconnect): b comes back with a new
			// connection and receives again.
			if c, _ := n.restAPI("DELETE", "/api/hubs/chat/connections/"+b, "", key); c != 200 {
				t.Fatalf("close connection: %d", c)
			}
			testutil.WaitUntil(t, 15*time.Second, "b reconnected", func() bool { return len(js.find("b", "reconnected")) == 1 })
			nb := js.find("b", "reconnected")[0].ConnectionID
			if nb == "" || nb == b {
				t.Fatalf("reconnected with connection id %q (was %q)", nb, b)
			}
			send("/api/hubs/chat/connections/"+nb+"/:send", "after-reconnect")
			send("/api/hubs/chat/:send", "fence-2")
			got := js.receivedUpTo("fence-2", "b")["b"]
			if w := []string{"all", "user-bob", "fence-1", "after-reconnect"}; !slices.Equal(got, w) {
				t.Errorf("b received %v, want %v", got, w)
			}
			for _, e := range js.find("", "closed") {
				t.Errorf("client %s closed: %v", e.Name, e.Error)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
