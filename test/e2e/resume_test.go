package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/faultproxy"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// resumeJS runs test/compat/resume.js: unmodified @microsoft/signalr
// clients built withStatefulReconnect() and withAutomaticReconnect().
type resumeJS struct {
	jsJournal
}

func startResumeJS(t *testing.T, base string, retryDelays []int, clients ...map[string]any) *resumeJS {
	t.Helper()
	return &resumeJS{startClientsJS(t, "resume.js", map[string]any{"base": base, "clients": clients, "retryDelays": retryDelays}, 20*time.Second)}
}

func (j *resumeJS) command(format string, args ...any) {
	j.t.Helper()
	j.writeLine(fmt.Sprintf(format, args...))
}

func (j *resumeJS) waitFor(name, msg string) []string {
	j.t.Helper()
	var got []string
	testutil.WaitUntil(j.t, 20*time.Second, name+" receives "+msg, func() bool {
		got = j.received(name)
		return slices.Contains(got, msg)
	})
	return got
}

// send posts one message to every client through the REST API of an
// open node (no access key).
func send(t *testing.T, n *node, msg string) {
	t.Helper()
	if code, body := n.api("POST", "/api/hubs/chat/:send", fmt.Sprintf(`{"target":"t","arguments":[%q]}`, msg), ""); code != 202 {
		t.Fatalf("send %s: %d %s", msg, code, body)
	}
}

// puts lists the arguments of the Put invocations in the hub's upstream
// stream, in order.
func puts(t *testing.T, rdb *redis.Client) []int {
	t.Helper()
	var out []int
	for _, e := range upstreamEntries(t, rdb, "chat:upstream")["invocation"] {
		if e["target"] != "Put" {
			continue
		}
		var args []int
		if err := json.Unmarshal([]byte(e["arguments"].(string)), &args); err != nil || len(args) != 1 {
			t.Fatalf("Put arguments %v", e["arguments"])
		}
		out = append(out, args[0])
	}
	return out
}

// TestCompatStatefulReconnect: the real @microsoft/signalr client built
// withStatefulReconnect() behind a proxy that kills its socket three
// times (RST both ways; the second time only the client's side, so the
// node still holds the old socket open when the client comes back and
// must take over from it) while the node streams messages to it, to all, its
// group, its user and its connection (and, which it must not get, to all
// but it), and it streams invocations to the node. Its transport resumes
// each time with the same connection (the HubConnection never even sees a
// reconnect), it gets every message meant for it exactly once, in order,
// and the upstream gets each of its invocations exactly once, in order.
// Both hub protocols: Ack and Sequence travel in the connection's.
func TestCompatStatefulReconnect(t *testing.T) {
	for _, protocol := range []string{"json", "messagepack"} {
		t.Run(protocol, func(t *testing.T) { testCompatStatefulReconnect(t, protocol) })
	}
}

func testCompatStatefulReconnect(t *testing.T, protocol string) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const key = "resume-access-key-0123456789-abcdef"
		rs := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		t.Cleanup(func() { rdb.Close() })
		n := startNode(t, backend, "--hub", "chat", "--redis", rs.URL(), "--access-key", key, "--max-message-rate", "1000")
		p := faultproxy.Start(t, n.client)
		// The token's audience is the hub's URL on this host (any port).
		js := startResumeJS(t, "http://"+p.Addr(), nil, map[string]any{"name": "a", "protocol": protocol, "accessToken": clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"})})
		c := js.find("a", "connected")[0]
		if !c.Stateful {
			t.Fatal("the client did not get stateful reconnect from negotiate")
		}
		if code, body := n.restAPI("PUT", "/api/hubs/chat/groups/g/connections/"+c.ConnectionID, "", key); code != 200 {
			t.Fatalf("add to group: %d %s", code, body)
		}
		post := func(path, msg string) {
			t.Helper()
			if code, body := n.restAPI("POST", path, fmt.Sprintf(`{"target":"t","arguments":[%q]}`, msg), key); code != 202 {
				t.Fatalf("POST %s: %d %s", path, code, body)
			}
		}
		paths := []string{"/api/hubs/chat/:send", "/api/hubs/chat/groups/g/:send", "/api/hubs/chat/users/alice/:send", "/api/hubs/chat/connections/" + c.ConnectionID + "/:send"}
		const msgs, invocations = 600, 300
		js.command("put a %d 3", invocations)
		var want []string
		for i := range msgs {
			switch i {
			case 100, 500:
				p.Reset()
			case 300:
				p.DropClients()
			}
			want = append(want, strconv.Itoa(i))
			post(paths[i%len(paths)], want[i])
			if i%10 == 0 {
				post("/api/hubs/chat/:send?excluded="+c.ConnectionID, "not-for-a")
			}
		}
		post(paths[0], "fence")
		got := js.waitFor("a", "fence")
		if !slices.Equal(got, append(want, "fence")) {
			t.Fatalf("client received %d messages, want %d once each in order; first difference: %v", len(got), len(want)+1, firstDiff(got, append(want, "fence")))
		}
		testutil.WaitUntil(t, 20*time.Second, "the client's invocations", func() bool { return len(js.find("a", "putDone")) == 1 && len(puts(t, rdb)) >= invocations })
		wantPuts := make([]int, invocations)
		for i := range wantPuts {
			wantPuts[i] = i
		}
		if got := puts(t, rdb); !slices.Equal(got, wantPuts) {
			t.Fatalf("upstream got %d Put invocations %v, want 0..%d once each, in order", len(got), got, invocations-1)
		}
		for _, ev := range []string{"reconnecting", "reconnected", "closed", "sendError"} {
			if e := js.find("a", ev); len(e) != 0 {
				t.Fatalf("the client saw %s: %+v", ev, e)
			}
		}
		if r := n.metric("edgeplane_reconnect_resumed_total"); r != 3 {
			t.Errorf("edgeplane_reconnect_resumed_total = %v, want 3", r)
		}
		// At least the half-open socket; a reset socket whose RST the node
		// has not read yet when the client is back is taken over too.
		if r := n.metric("edgeplane_reconnect_takeovers_total"); r < 1 || r > 3 {
			t.Errorf("edgeplane_reconnect_takeovers_total = %v, want 1 to 3 (the half-open socket, and maybe the reset ones)", r)
		}
		if d := n.metric(`edgeplane_closed_total{reason="peer_gone"}`); d > 0 {
			t.Errorf("closed peer_gone = %v: a killed socket ended its connection", d)
		}
	})
}

// TestStatefulReconnectFleet: two nodes on one Redis behind a round-robin
// proxy, so a client's socket and its resume may land on different nodes.
// A reconnect that lands on the node holding the connection resumes it;
// one that lands on the other node is refused (409: the connection id is
// claimed on the fleet), and the client falls back cleanly to a full
// reconnect through negotiate (onreconnecting, onreconnected with a new
// connection id). Either way nothing arrives twice or out of order, and the
// abandoned connection ends when its window does.
func TestStatefulReconnectFleet(t *testing.T) {
	rs := redistest.Start(t)
	common := []string{"--hub", "chat", "--redis", rs.URL(), "--token-key", "fleet-token-key-0123456789-abcdefgh", "--reconnect-window", "2s"}
	n1 := startNode(t, "epoll", common...)
	n2 := startNode(t, "epoll", common...)
	p := faultproxy.StartRoundRobin(t, n1.client, n2.client)
	// The client opens connection 0 (negotiate, node 1) and 1 (WebSocket,
	// node 2).
	js := startResumeJS(t, "http://"+p.Addr(), []int{0, 0, 500, 1000}, map[string]any{"name": "a"})
	first := js.find("a", "connected")[0].ConnectionID
	seq := 0
	next := func() string { seq++; return strconv.Itoa(seq) }
	check := func() []string {
		t.Helper()
		fence := "fence-" + next()
		send(t, n1, fence)
		got := js.waitFor("a", fence)
		prev := 0
		for _, m := range got {
			if i, err := strconv.Atoi(m); err == nil {
				if i <= prev {
					t.Fatalf("message %d after %d: duplicated or out of order in %v", i, prev, got)
				}
				prev = i
			}
		}
		return got
	}
	for range 20 {
		send(t, n1, next())
	}
	check()

	// Kill 1: the resume is connection 2, node 1: not the owner.
	p.Reset()
	testutil.WaitUntil(t, 20*time.Second, "fallback to a full reconnect", func() bool { return len(js.find("a", "reconnected")) == 1 })
	re := js.find("a", "reconnected")[0]
	if re.ConnectionID == first || len(js.find("a", "reconnecting")) != 1 {
		t.Fatalf("fallback: reconnected as %q (first %q), %d reconnecting events", re.ConnectionID, first, len(js.find("a", "reconnecting")))
	}
	if n1.metric(`edgeplane_token_claims_total{result="reused"}`) < 1 {
		t.Error("node 1 did not refuse the foreign resume as a reused token")
	}
	testutil.WaitUntil(t, 10*time.Second, "the abandoned connection's window ends", func() bool {
		return n2.metric(`edgeplane_closed_total{reason="reconnect_expired"}`) == 1
	})
	for range 20 {
		send(t, n1, next())
	}
	check()

	// The full reconnect was connections 3 (negotiate, node 2) and 4
	// (WebSocket, node 1). One more connection through the proxy (5) puts
	// the next resume (6) on node 1: the owner.
	if code, _ := httpGet(t, "http://"+p.Addr()+"/chat/negotiate"); code != 405 {
		t.Fatalf("GET negotiate through the proxy: %d", code)
	}
	stop := make(chan struct{})
	sent := make(chan []string)
	go func() {
		var s []string
		defer func() { sent <- s }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			m := next()
			s = append(s, m)
			send(t, n2, m)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	p.Reset()
	testutil.WaitUntil(t, 10*time.Second, "resume on the owner", func() bool { return n1.metric("edgeplane_reconnect_resumed_total") == 1 })
	time.Sleep(100 * time.Millisecond)
	close(stop)
	during := <-sent
	got := check()
	for _, m := range during {
		if !slices.Contains(got, m) {
			t.Fatalf("message %s sent around the resume was lost", m)
		}
	}
	if len(js.find("a", "reconnecting")) != 1 || len(js.find("a", "closed")) != 0 {
		t.Fatalf("the resume was seen by the HubConnection: %d reconnecting, %d closed", len(js.find("a", "reconnecting")), len(js.find("a", "closed")))
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// firstDiff describes where got and want part.
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d got %q want %q", i, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}
