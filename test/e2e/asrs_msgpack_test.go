package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestCompatServiceModeMessagePack: @microsoft/signalr clients with
// @microsoft/signalr-protocol-msgpack beside JSON clients of the same app
// in Default mode, in the same group, through the node: a hub method's
// result (the app sees the protocol), Clients.All, Others, Caller, Group,
// User and Client each reaching exactly its clients in their own
// protocol (a text frame would fail a MessagePack client: none closes),
// and a client result from a MessagePack client.
func TestCompatServiceModeMessagePack(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "asrs-compat-access-key-0123456789-abcdef"
		n := startNode(t, backend, "--access-key", key, "--service-mode")
		app, base := startFakeApp(t, n, key, "first")
		js := startASRSJS(t, base, []asrsClient{
			{Name: "a", Query: "user=alice", Protocol: "messagepack", Results: map[string]string{"ask": "answer-a"}},
			{Name: "b", Query: "user=bob"},
			{Name: "c", Query: "user=carol", Protocol: "messagepack"},
			{Name: "d", Query: "user=alice"},
		})
		if r, e := js.invoke("a", "Echo", map[string]any{"x": []any{1, "two", true, nil}}); string(r) != `{"x":[1,"two",true,null]}` {
			t.Fatalf("Echo: %s %s", r, e)
		}
		if r, _ := js.invoke("c", "Whoami"); string(r) != `"carol|carol|messagepack"` {
			t.Fatalf("Whoami: %s", r)
		}
		for _, name := range []string{"a", "b"} {
			if r, e := js.invoke(name, "Join", "g"); string(r) != "true" {
				t.Fatalf("Join %s: %s %s", name, r, e)
			}
		}
		b, c := js.connID("b"), js.connID("c")
		h := app.Hub("ChatHub")
		js.invoke("a", "Send", "all", "all")
		js.invoke("b", "Send", "others", "others")
		js.invoke("c", "Send", "caller", "caller")
		js.invoke("c", "Send", "g", "group")
		if err := h.User("alice").Send("t", "user-alice"); err != nil {
			t.Fatal(err)
		}
		if err := h.Client(c).Send("t", "client-c"); err != nil { // its protocol only
			t.Fatal(err)
		}
		if err := h.Client(b).Send("t", "client-b"); err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{
			"a": {"all", "others", "group", "user-alice"},
			"b": {"all", "group", "client-b"},
			"c": {"all", "others", "caller", "client-c"},
			"d": {"all", "others", "user-alice"},
		}
		js.receivedAnyOrder("a", want)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := h.InvokeClient(ctx, js.connID("a"), "ask", 7)
		cancel()
		if err != nil || string(r) != `"answer-a"` {
			t.Fatalf("client result from a MessagePack client: %s %v", r, err)
		}
		for _, name := range []string{"a", "b", "c", "d"} {
			if ev := js.find(name, "closed"); len(ev) > 0 {
				t.Fatalf("client %s closed: %v", name, *ev[0].Error)
			}
		}
	})
}
