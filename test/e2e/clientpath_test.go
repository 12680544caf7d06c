package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// The client path under hostile input and load, against the real binary
// (issue 12, items 5-9): the official clients' protocol is never broken
// and one message never disconnects a hub.

// redisFlood publishes one record to chat:all through Redis, as an app
// server on the ASP.NET backplane would, as fast as pipelines of 100 per
// 5 ms allow (20,000/s at most: Redis must not drop the node's subscriber
// for falling behind).
func redisFlood(t *testing.T, rs *redistest.Server, rec []byte, stop <-chan struct{}) (published *atomic.Int64, done <-chan struct{}) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	payload := wire.AppendInvocation(nil, nil, rec)
	published = new(atomic.Int64)
	d := make(chan struct{})
	go func() {
		defer close(d)
		defer rdb.Close()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := rdb.Pipeline()
			for range 100 {
				p.Publish(context.Background(), "chat:all", payload)
			}
			if _, err := p.Exec(context.Background()); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Add(100)
		}
	}()
	return published, d
}

// firstRecord connects without the test's cleanup (the caller connects
// thousands of times), completes the SignalR handshake and returns the
// first frame's payload.
func firstRecord(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write(append([]byte(req), textFrame(`{"protocol":"json","version":1}`+"\x1e")...)); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 101 {
		return "", fmt.Errorf("upgrade: %d", resp.StatusCode)
	}
	r := &rawConn{c: c, br: br}
	f, err := r.readFrame(10 * time.Second)
	if err != nil {
		return "", err
	}
	return string(f.payload), nil
}

// TestHandshakeFirstUnderBroadcast: while an app server broadcasts
// without pause, every client's first record is the handshake response:
// thousands of raw connects check the bytes, and waves of unmodified
// @microsoft/signalr clients (which fail with "Expected a handshake
// response from the server" otherwise) must all connect. (Issue 12 item
// 5: under a broadcast load 625 of 24,601 connects got an invocation
// first. The race window is short here, so without the fix this test
// catches it only now and then; conn's TestBroadcastRacingTheHandshake
// catches it every time.)
func TestHandshakeFirstUnderBroadcast(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		n := startNode(t, backend, "--redis", rs.URL(), "--accept-rate", "-1", "--log-level", "info")
		testutil.WaitUntil(t, 10*time.Second, "node ready", func() bool { c, _ := n.api("GET", "/readyz", "", ""); return c == 200 })
		stop := make(chan struct{})
		published, done := redisFlood(t, rs, []byte(`{"type":1,"target":"noise","arguments":["x"]}`+"\x1e"), stop)
		defer func() { close(stop); <-done }()
		testutil.WaitUntil(t, 10*time.Second, "broadcasts flowing", func() bool {
			return n.metric("edgeplane_fanout_messages_total") > 1000
		})

		const workers, perWorker = 4, 300
		var bad, failed atomic.Int64
		var example atomic.Value
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perWorker {
					first, err := firstRecord(n.client)
					switch {
					case err != nil:
						failed.Add(1)
						example.Store("error: " + err.Error())
					case first != "{}\x1e":
						bad.Add(1)
						example.Store(first)
					}
				}
			}()
		}
		wg.Wait()
		if bad.Load()+failed.Load() > 0 {
			t.Errorf("%d of %d connects got another record before the handshake response, %d failed (e.g. %q)",
				bad.Load(), workers*perWorker, failed.Load(), example.Load())
		}

		// The official client, in waves that connect and stop again (so
		// the broadcast load stays on connecting clients).
		const waves, perWave = 3, 50
		for wave := range waves {
			var specs []jsClientSpec
			for i := range perWave {
				specs = append(specs, jsClientSpec{Name: fmt.Sprintf("w%dc%d", wave, i), Ignore: []string{"noise"}, StopAfterConnect: true, SkipNegotiation: i%2 == 1})
			}
			js := startJS(t, "http://"+n.client, specs) // fails the test on any client that could not connect
			if got := len(js.find("", "connected")); got != len(specs) {
				t.Fatalf("wave %d: %d of %d clients connected", wave, got, len(specs))
			}
		}
		t.Logf("%d broadcasts published during %d raw and %d @microsoft/signalr connects", published.Load(), workers*perWorker, waves*perWave)
	})
}

// TestUndeliverableMessages: a message no client can take is refused at
// the REST API (400 not UTF-8, 413 too large for a connection's queue) and
// dropped and counted when it comes through the backplane; the official
// client on the hub stays connected and gets the next message, and no one
// is closed as a slow client. (Issue 12 items 6 and 7: one REST send with
// invalid UTF-8 used to disconnect every client of a hub, and with the
// defaults a 1 MiB REST body closed every recipient as a slow client while
// REST answered 202.)
func TestUndeliverableMessages(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		n := startNode(t, backend, "--redis", rs.URL(), "--log-level", "info") // default --max-queue-bytes: 1 MiB
		testutil.WaitUntil(t, 10*time.Second, "node ready", func() bool { c, _ := n.api("GET", "/readyz", "", ""); return c == 200 })
		js := startJS(t, "http://"+n.client, []jsClientSpec{{Name: "a"}, {Name: "b", SkipNegotiation: true}})
		raw := n.connect(t, "/chat")
		slowBefore := n.metric(`edgeplane_closed_total{reason="slow_client"}`)

		big := `{"target":"t","arguments":["` + strings.Repeat("x", 1<<20-len(`{"target":"t","arguments":[""]}`)) + `"]}`
		for _, tc := range []struct {
			name, body string
			code       int
		}{
			{"invalid UTF-8", "{\"target\":\"t\",\"arguments\":[\"caf\xe9\"]}", 400},
			{"1 MiB body", big, 413},
		} {
			if c, body := n.api("POST", "/api/hubs/chat/:send", tc.body, ""); c != tc.code {
				t.Fatalf("REST send, %s: %d %s, want %d", tc.name, c, body, tc.code)
			}
		}

		// The same through the backplane: dropped and counted.
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		defer rdb.Close()
		for _, rec := range [][]byte{
			[]byte("{\"type\":1,\"target\":\"t\",\"arguments\":[\"caf\xe9\"]}\x1e"),
			[]byte(`{"type":1,"target":"t","arguments":["` + strings.Repeat("y", 1<<20) + `"]}` + "\x1e"),
		} {
			if got, err := rdb.Publish(context.Background(), "chat:all", wire.AppendInvocation(nil, nil, rec)).Result(); err != nil || got != 1 {
				t.Fatalf("PUBLISH: %d subscribers, %v", got, err)
			}
		}
		for _, reason := range []string{"invalid_utf8", "too_large"} {
			testutil.WaitUntil(t, 5*time.Second, reason+" drop counted", func() bool {
				return n.metric(`edgeplane_fanout_dropped_total{reason="`+reason+`"}`) == 1
			})
		}

		// Everyone is still there and gets the next message.
		if c, body := n.api("POST", "/api/hubs/chat/:send", `{"target":"t","arguments":["after"]}`, ""); c != 202 {
			t.Fatalf("REST send: %d %s", c, body)
		}
		raw.expectRecord(`"after"`, 5*time.Second)
		testutil.WaitUntil(t, 5*time.Second, "JS clients got the next message", func() bool {
			return strings.Join(js.received("a"), ",") == "after" && strings.Join(js.received("b"), ",") == "after"
		})
		if closed := js.find("", "closed"); len(closed) > 0 {
			t.Fatalf("a JS client was disconnected: %+v (%s)", closed[0], *closed[0].Error)
		}
		if got := n.metric(`edgeplane_closed_total{reason="slow_client"}`); got != slowBefore {
			t.Fatalf("slow_client closes went from %v to %v", slowBefore, got)
		}
	})
}

// TestHostileClientInput: invalid UTF-8 in a binary message closes with
// 1007; a frame trickled in byte by byte and a fragmented message that
// never ends are closed at the client time-out; a flood of pings is
// rate-limited (1008); a REST close reason that is not UTF-8 reaches the
// client as valid UTF-8. A bystander keeps receiving throughout. (Issue 12
// items 6 and 8.)
func TestHostileClientInput(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		n := startNode(t, backend, "--client-timeout", "2s", "--keepalive", "1s", "--max-message-rate", "50")
		bystander := n.connect(t, "/chat")
		bystander.c.SetWriteDeadline(time.Time{})
		stopPings := make(chan struct{})
		pinging := make(chan struct{})
		go func() { // keeps the bystander alive: one SignalR Ping a second
			defer close(pinging)
			for {
				select {
				case <-stopPings:
					return
				case <-time.After(500 * time.Millisecond):
				}
				bystander.c.Write(textFrame(`{"type":6}` + "\x1e"))
			}
		}()

		expectClose := func(t *testing.T, r *rawConn, code int, reason, text string) {
			t.Helper()
			got, before := r.expectClose(10 * time.Second) // the trickles below go on for 30 s
			if got != code || !strings.Contains(before, text) {
				t.Fatalf("close %d after %q, want %d after %q", got, before, code, text)
			}
			testutil.WaitUntil(t, 5*time.Second, "close counted as "+reason, func() bool {
				return n.metric(`edgeplane_closed_total{reason="`+reason+`"}`) >= 1
			})
		}

		t.Run("binary invalid UTF-8", func(t *testing.T) {
			r := n.connect(t, "/chat")
			r.write(frame(0x82, []byte("{\"type\":1,\"target\":\"x\",\"arguments\":[\"\xff\"]}\x1e"), true))
			code, _ := r.expectClose(5 * time.Second)
			if code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
		})
		t.Run("trickled frame", func(t *testing.T) {
			r := n.connect(t, "/chat")
			f := textFrame(`{"type":1,"target":"x","arguments":["` + strings.Repeat("z", 150) + `"]}` + "\x1e")
			r.c.SetWriteDeadline(time.Time{})
			go func() {
				for _, b := range f[:len(f)-1] {
					if _, err := r.c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
			expectClose(t, r, 1000, "timeout", "Server timeout")
		})
		t.Run("endless fragments", func(t *testing.T) {
			r := n.connect(t, "/chat")
			r.write(frame(0x01, []byte(`{"type":1,`), true))
			r.c.SetWriteDeadline(time.Time{})
			go func() {
				for range 150 {
					if _, err := r.c.Write(append(frame(0x00, []byte(" "), true), frame(0x89, nil, true)...)); err != nil {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
			expectClose(t, r, 1000, "timeout", "Server timeout")
		})
		t.Run("ping flood", func(t *testing.T) {
			r := n.connect(t, "/chat")
			var flood []byte
			for range 100 {
				flood = append(flood, frame(0x89, []byte("p"), true)...)
			}
			r.write(flood)
			expectClose(t, r, 1008, "rate_limited", "rate limit")
		})
		t.Run("REST close reason", func(t *testing.T) {
			neg := n.negotiate(t, "chat", "")
			r := n.connect(t, "/chat?id="+neg.ConnectionToken)
			if c, body := n.api("DELETE", "/api/hubs/chat/connections/"+neg.ConnectionID+"?reason=bye%FF%FEnow", "", ""); c != 200 {
				t.Fatalf("DELETE: %d %s", c, body)
			}
			for {
				f, err := r.readFrame(5 * time.Second)
				if err != nil {
					t.Fatalf("waiting for the close: %v", err)
				}
				text := f.payload // a text frame, or a close frame's reason
				if f.op == 0x8 && len(text) >= 2 {
					text = text[2:]
				}
				if !utf8.Valid(text) {
					t.Fatalf("frame op %x carries invalid UTF-8: %q", f.op, f.payload)
				}
				if f.op == 0x8 {
					if code := binary.BigEndian.Uint16(f.payload); code != 1000 || string(f.payload[2:]) != "bye\uFFFDnow" {
						t.Fatalf("close %d %q, want 1000 %q", code, f.payload[2:], "bye\uFFFDnow")
					}
					break
				}
			}
		})

		close(stopPings)
		<-pinging
		if c, body := n.api("POST", "/api/hubs/chat/:send", `{"target":"still","arguments":["here"]}`, ""); c != 202 {
			t.Fatalf("send: %d %s", c, body)
		}
		bystander.expectRecord(`"target":"still"`, 5*time.Second)
	})
}

// TestQueueGaugeThroughSlowClientStorm: clients that stop reading are
// closed as slow clients and leave their hub at once, but their queues
// are held until the socket closes (up to the shutdown timeout for a
// stalled client); edgeplane_queue_bytes keeps counting them until then,
// and returns to zero after. (Issue 12 item 9: the gauge dropped exactly
// during slow-client storms.)
func TestQueueGaugeThroughSlowClientStorm(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		const clients, queue = 20, 64 << 10
		n := startNode(t, backend, "--max-queue-bytes", fmt.Sprint(queue), "--log-level", "info")
		stalled := make([]*rawConn, clients)
		for i := range stalled {
			stalled[i] = n.connect(t, "/chat")
			stalled[i].c.(*net.TCPConn).SetReadBuffer(4 << 10) // and never read again
		}
		msg := `{"target":"t","arguments":["` + strings.Repeat("s", 16<<10) + `"]}`
		sends := 0
		for n.metric(`edgeplane_connections{hub="chat"}`) > 0 {
			if sends++; sends > 5000 {
				t.Fatalf("%d broadcasts and %v stalled clients still registered", sends, n.metric(`edgeplane_connections{hub="chat"}`))
			}
			if c, body := n.api("POST", "/api/hubs/chat/:send", msg, ""); c != 202 {
				t.Fatalf("send: %d %s", c, body)
			}
		}
		if got := n.metric(`edgeplane_closed_total{reason="slow_client"}`); got != clients {
			t.Fatalf("%v slow-client closes, want %d", got, clients)
		}
		// Closed and out of the hub, their queues still held: counted.
		peak := n.metric("edgeplane_queue_bytes")
		t.Logf("%d broadcasts of %d B; edgeplane_queue_bytes %v after the slow-client closes", sends, len(msg), peak)
		if peak < clients*queue/2 {
			t.Fatalf("edgeplane_queue_bytes = %v right after %d clients with full %d-byte queues were closed, want about %d", peak, clients, queue, clients*queue)
		}
		testutil.WaitUntil(t, 15*time.Second, "queues freed once the sockets close", func() bool {
			return n.metric("edgeplane_queue_bytes") == 0
		})
	})
}
