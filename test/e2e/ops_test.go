package e2e

import (
	"bufio"
	"fmt"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeepAliveAndTimeouts: Pings after outbound silence, silent clients
// and clients that never finish the handshake are dropped.
func TestKeepAliveAndTimeouts(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, "--keepalive", "1s", "--client-timeout", "3s", "--handshake-timeout", "2s")

		// A client that answers nothing gets pings, then a Close with an
		// error, then a close frame.
		silent := n.connect(t, "/chat")
		silent.expectRecord(`{"type":6}`, 4*time.Second)
		code, before := silent.expectClose(6 * time.Second)
		if !strings.Contains(before, `"type":7`) || !strings.Contains(before, "Server timeout") {
			t.Fatalf("expected SignalR Close before close frame, got %q", before)
		}
		if code != 1000 {
			t.Fatalf("timeout close code %d", code)
		}

		// The first Ping comes one keep-alive interval after the handshake,
		// whatever the (longer) handshake deadline.
		n15 := startNode(t, backend, "--keepalive", "1s", "--handshake-timeout", "15s")
		n15.connect(t, "/chat").expectRecord(`{"type":6}`, 3*time.Second)

		// A client that pings stays.
		alive := n.connect(t, "/chat")
		for i := 0; i < 5; i++ {
			alive.sendText(`{"type":6}` + "\x1e")
			time.Sleep(time.Second)
		}
		alive.sendText(`{"type":6}` + "\x1e")
		if c, _ := n.api("POST", "/api/hubs/chat/:send", `{"target":"ok","arguments":[]}`, ""); c != 202 {
			t.Fatal("send")
		}
		alive.expectRecord(`"target":"ok"`, 3*time.Second)

		// WebSocket open but no SignalR handshake: closed at the deadline.
		r := dialRaw(t, n.client)
		if c := r.upgrade("/chat"); c != 101 {
			t.Fatalf("upgrade %d", c)
		}
		if code, _ := r.expectClose(5 * time.Second); code != 1008 {
			t.Fatalf("handshake timeout close code %d", code)
		}

		// Slowloris: an HTTP request trickled in never completes; the
		// connection is closed at the handshake deadline.
		sl := dialRaw(t, n.client)
		sl.write([]byte("GET /chat HTTP/1.1\r\n"))
		sl.expectEOF(6 * time.Second)
		if n.metric(`edgeplane_closed_total{reason="handshake_timeout"}`) < 2 {
			t.Fatal("handshake timeouts not counted")
		}
	})
}

// TestSlowClient: a client that stops reading is disconnected once its
// queue passes the limit; a reading client receives everything.
func TestSlowClient(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, "--max-queue-bytes", "262144")
		reader := n.connect(t, "/chat")
		stalled := n.connect(t, "/chat")
		stalled.c.(*net.TCPConn).SetReadBuffer(4096)
		payload := strings.Repeat("x", 30000)
		const msgs = 600 // 18 MB: more than socket buffers + the queue limit
		got := make(chan int, 1)
		var read atomic.Int64
		go func() {
			count := 0
			for count < msgs {
				f, err := reader.readFrame(20 * time.Second)
				if err != nil {
					break
				}
				if strings.Contains(string(f.payload), `"target":"big"`) {
					count++
					read.Store(int64(count))
				}
			}
			got <- count
		}()
		body := fmt.Sprintf(`{"target":"big","arguments":[%q]}`, payload)
		for i := 0; i < msgs; i++ {
			// The reading client must never fall a queue's worth behind
			// (it would be a slow client too on a loaded machine).
			testutil.WaitUntil(t, 20*time.Second, "reader to keep up", func() bool { return read.Load() >= int64(i-4) })
			if c, b := n.api("POST", "/api/hubs/chat/:send", body, ""); c != 202 {
				t.Fatalf("send %d: %d %s", i, c, b)
			}
		}
		if c := <-got; c != msgs {
			t.Fatalf("reading client got %d of %d", c, msgs)
		}
		testutil.WaitUntil(t, 10*time.Second, "slow client dropped", func() bool {
			return n.metric(`edgeplane_closed_total{reason="slow_client"}`) == 1
		})
		if v := n.metric(`edgeplane_connections{hub="chat"}`); v != 1 {
			t.Fatalf("connections = %v, want 1", v)
		}
	})
}

// TestRESTAPI covers the admin API's answers.
func TestRESTAPI(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, "--hub", "chat", "--hub", "news")
		neg := n.negotiate(t, "chat", "")
		r := n.connect(t, "/chat?id="+neg.ConnectionToken)
		id := neg.ConnectionID
		cases := []struct {
			method, path, body string
			code               int
		}{
			{"HEAD", "/api/health", "", 200},
			{"HEAD", "/api/hubs/chat/connections/" + id, "", 200},
			{"HEAD", "/api/hubs/chat/connections/nope", "", 404},
			{"HEAD", "/api/hubs/news/connections/" + id, "", 404},
			{"HEAD", "/api/hubs/chat/groups/g", "", 404},
			{"PUT", "/api/hubs/chat/groups/g/connections/" + id, "", 200},
			{"HEAD", "/api/hubs/chat/groups/g", "", 200},
			{"PUT", "/api/hubs/chat/groups/g/connections/nope", "", 404},
			{"POST", "/api/hubs/chat/groups/g/:send", `{"target":"g","arguments":[1]}`, 202},
			{"DELETE", "/api/hubs/chat/groups/g/connections/" + id, "", 200},
			{"HEAD", "/api/hubs/chat/groups/g", "", 404},
			{"POST", "/api/hubs/nope/:send", `{"target":"x"}`, 404},
			{"POST", "/api/hubs/chat/:send", `{"target":`, 400},
			{"POST", "/api/hubs/chat/:send", `{"arguments":[]}`, 400},
			{"POST", "/api/hubs/chat/:send", `{"target":"x","arguments":{"a":1}}`, 400},
			{"POST", "/api/hubs/chat/:send", `{"target":"x"}`, 202},
			{"HEAD", "/api/hubs/chat/users/nobody", "", 404},
			{"DELETE", "/api/hubs/chat/connections/nope", "", 404},
		}
		for _, tc := range cases {
			if c, body := n.api(tc.method, tc.path, tc.body, ""); c != tc.code {
				t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, c, tc.code, body)
			}
		}
		r.expectRecord(`"target":"g"`, 5*time.Second)
		r.expectRecord(`"target":"x","arguments":[]`, 5*time.Second)
		if c, b := n.api("GET", "/readyz", "", ""); c != 200 {
			t.Fatalf("readyz %d %s", c, b)
		}
		_, metrics := n.api("GET", "/metrics", "", "")
		for _, m := range []string{"process_open_fds", "process_max_fds", "edgeplane_fd_headroom", `edgeplane_connections{hub="chat"} 1`,
			"edgeplane_accepted_total", "edgeplane_messages_out_total", "edgeplane_bytes_out_total", "edgeplane_queue_bytes", "go_goroutines"} {
			if !strings.Contains(metrics, m) {
				t.Errorf("metrics lack %s", m)
			}
		}
	})
}

// TestAdmission: connections over --max-conns get 503 with Retry-After
// before any upgrade, and established ones keep working.
func TestAdmission(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, "--max-conns", "5")
		var conns []*rawConn
		for i := 0; i < 5; i++ {
			conns = append(conns, n.connect(t, "/chat"))
		}
		for i := 0; i < 3; i++ {
			r := dialRaw(t, n.client)
			r.write([]byte("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n"))
			resp, err := http.ReadResponse(bufio.NewReader(r.br), nil)
			if err != nil {
				t.Fatalf("over-limit connection: %v", err)
			}
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("over-limit: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		}
		if c, _ := n.api("POST", "/api/hubs/chat/:send", `{"target":"fine","arguments":[]}`, ""); c != 202 {
			t.Fatal("send")
		}
		for _, r := range conns {
			r.expectRecord(`"target":"fine"`, 5*time.Second)
		}
		if v := n.metric(`edgeplane_rejected_total{reason="max_conns"}`); v != 3 {
			t.Fatalf("rejected max_conns = %v", v)
		}
		// A slot frees up when a connection leaves.
		conns[0].c.Close()
		testutil.WaitUntil(t, 5*time.Second, "slot freed", func() bool { return n.metric(`edgeplane_connections{hub="chat"}`) == 4 })
		n.connect(t, "/chat")
	})
}
