package node_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// dialJSON opens a WebSocket at url and completes the JSON handshake;
// reads on it time out within d from now. It is closed when the test
// ends.
func dialJSON(t *testing.T, url string, d time.Duration) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	ws.SetReadDeadline(time.Now().Add(d))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "{}\x1e" {
		t.Fatalf("handshake answer %q, %v", msg, err)
	}
	return ws
}

// TestNodeWiresEveryPart follows one REST send through the assembled node
// (admin → backplane → router → connection) to a real WebSocket client, on
// each poller backend, and checks /metrics carries every part's families.
func TestNodeWiresEveryPart(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := nodetest.Start(t, node.Config{Poller: backend, Hubs: []node.Hub{{Name: "chat"}, {Name: "news"}}})
		base, admin := "http://"+n.Addr().String(), "http://"+n.AdminAddr().String()

		resp, err := http.Post(base+"/news/negotiate?negotiateVersion=1", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		var neg struct {
			ConnectionToken string `json:"connectionToken"`
		}
		err = json.NewDecoder(resp.Body).Decode(&neg)
		resp.Body.Close()
		if err != nil || neg.ConnectionToken == "" {
			t.Fatalf("negotiate: %v %+v", err, neg)
		}
		ws := dialJSON(t, "ws://"+n.Addr().String()+"/news?id="+neg.ConnectionToken, 10*time.Second)
		testutil.WaitUntil(t, 5*time.Second, "the connection to register", func() bool {
			return n.Router().Hub("news").Len() == 1
		})

		resp, err = http.Post(admin+"/api/hubs/news/:send", "application/json", strings.NewReader(`{"target":"hello","arguments":["x",1]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send: %d", resp.StatusCode)
		}
		if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != `{"type":1,"target":"hello","arguments":["x",1]}`+"\x1e" {
			t.Fatalf("client got %q, %v", msg, err)
		}

		resp, err = http.Get(admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			"# HELP edgeplane_accepted_total ",    // conn
			`edgeplane_connections{hub="news"} 1`, // fanout
			"edgeplane_fanout_messages_total 1",   // fanout deliveries
			"# HELP process_open_fds ",            // node's descriptor writer
			"# HELP edgeplane_fd_headroom ",       // idem
			`edgeplane_connections{hub="chat"} 0`, // every hub
			"# HELP go_goroutines ",               // process metrics
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

// TestNodeIsolation: two nodes in one process keep their own metrics
// (nothing registered globally): a connection to one is counted by it
// alone.
func TestNodeIsolation(t *testing.T) {
	a := nodetest.Start(t, node.Config{})
	b := nodetest.Start(t, node.Config{})
	resp, err := http.Post("http://"+a.Addr().String()+"/chat/negotiate?negotiateVersion=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get := func(n *node.Node) string {
		resp, err := http.Get("http://" + n.AdminAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	testutil.WaitUntil(t, 5*time.Second, "node a to count its connection", func() bool {
		return strings.Contains(get(a), "\nedgeplane_accepted_total 1\n")
	})
	if mb := get(b); !strings.Contains(mb, "\nedgeplane_accepted_total 0\n") {
		t.Fatalf("node b counted node a's connection:\n%s", mb)
	}
}

// TestStartFailsCleanly: a port in use fails Start with the address in the
// error, and what was started before is closed (no goroutine left behind).
func TestStartFailsCleanly(t *testing.T) {
	a := nodetest.Start(t, node.Config{})
	before := testutil.Snapshot()
	_, err := node.Start(node.Config{Listen: "127.0.0.1:0", Admin: a.AdminAddr().String(), NoTrim: true})
	if err == nil || !strings.Contains(err.Error(), a.AdminAddr().String()) {
		t.Fatalf("Start on a used admin port: %v", err)
	}
	testutil.WaitUntil(t, 5*time.Second, "the failed node's goroutines to end", func() bool {
		return len(testutil.Leaks(before, "cloudwego/netpoll")) == 0
	})
}

// TestStartRefusesWeakKeys: an access or token key under 32 bytes, or the
// placeholder of deploy/edgeplane.env.example, stops Start with an error
// naming the key; nothing is left running.
func TestStartRefusesWeakKeys(t *testing.T) {
	before := testutil.Snapshot()
	for _, tc := range []struct {
		name string
		c    conn.Config
		want string
	}{
		{"short access key", conn.Config{AccessKey: "secret"}, "access key"},
		{"placeholder access key", conn.Config{AccessKey: "change-me-to-a-long-random-secret"}, "placeholder"},
		{"short token key", conn.Config{AccessKey: strings.Repeat("a", 32), TokenKey: "short"}, "token key"},
	} {
		n, err := node.Start(node.Config{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", NoTrim: true, Conn: tc.c})
		if err == nil {
			n.Close()
			t.Errorf("%s: Start accepted it", tc.name)
			continue
		}
		if !errors.Is(err, auth.ErrWeakKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrWeakKey mentioning %q", tc.name, err, tc.want)
		}
	}
	testutil.WaitUntil(t, 5*time.Second, "no goroutine left", func() bool {
		return len(testutil.Leaks(before, "cloudwego/netpoll")) == 0
	})
}
