package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// redirectTo fronts an app's negotiate at base and sends its clients to
// node at instead of the app's Endpoint, as a balanced endpoint may.
func redirectTo(t *testing.T, base string, at *node) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Post(base+r.URL.RequestURI(), r.Header.Get("Content-Type"), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			if s, ok := m["url"].(string); ok {
				if u, err := url.Parse(s); err == nil {
					u.Host = at.client
					m["url"] = u.String()
					body, _ = json.Marshal(m)
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCompatServiceModeFleet: two nodes on one Redis, the app's server
// connections on the first only, @microsoft/signalr clients on the
// second: relayed over Redis, they call the app's hub, get its
// broadcasts and group messages, are aborted by it, and when the server
// connection hosting one dies it is closed with allowReconnect and comes
// back through the app (relayed again).
func TestCompatServiceModeFleet(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "asrs-compat-access-key-0123456789-abcdef"
		rs := redistest.Start(t)
		a := startNode(t, backend, "--access-key", key, "--service-mode", "--redis", rs.URL())
		b := startNode(t, backend, "--access-key", key, "--service-mode", "--redis", rs.URL())
		app, base := startFakeApp(t, a, key, "first")
		front := redirectTo(t, base, b)
		testutil.WaitUntil(t, 15*time.Second, "B learning the hub from A's presence", func() bool {
			resp, err := httpClient.Get("http://" + b.admin + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			m, _ := io.ReadAll(resp.Body)
			return bytes.Contains(m, []byte(`edgeplane_service_server_connections{hub="chathub"}`))
		})
		js := startASRSJS(t, front, []asrsClient{
			{Name: "a", Query: "user=alice"},
			{Name: "b", Query: "user=bob"},
			{Name: "d", Query: "user=dan", Reconnect: true},
		})
		if r, e := js.invoke("a", "Echo", map[string]any{"x": []int{1, 2}}); string(r) != `{"x":[1,2]}` {
			t.Fatalf("Echo through the fleet: %s %s", r, e)
		}
		if r, _ := js.invoke("a", "Whoami"); string(r) != `"alice|alice|json"` {
			t.Fatalf("Whoami: %s", r)
		}
		if r, e := js.invoke("b", "Join", "g"); string(r) != "true" {
			t.Fatalf("Join: %s %s", r, e)
		}
		js.invoke("a", "Send", "g", "group")
		js.invoke("b", "Send", "all", "all")
		if err := app.Hub("ChatHub").User("alice").Send("t", "user-alice"); err != nil {
			t.Fatal(err)
		}
		js.waitReceived(map[string][]string{"a": {"all", "user-alice"}, "b": {"group", "all"}, "d": {"all"}})

		js.command(map[string]any{"name": "a", "send": map[string]any{"target": "Abort"}})
		testutil.WaitUntil(t, 10*time.Second, "a closed", func() bool { return len(js.find("a", "closed")) == 1 })

		did := js.connID("d")
		slot := app.HostOf("ChatHub", did)
		if slot < 0 {
			t.Fatal("the app does not host d")
		}
		app.Kill("ChatHub", slot)
		testutil.WaitUntil(t, 15*time.Second, "d reconnected", func() bool { return len(js.find("d", "reconnected")) == 1 })
		if r, e := js.invoke("d", "Echo", "back"); string(r) != `"back"` {
			t.Fatalf("after reconnecting: %s %s", r, e)
		}
		if ev := js.find("b", "closed"); len(ev) > 0 {
			t.Fatal("client b closed")
		}
	})
}
