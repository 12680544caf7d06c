package bench

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
)

// broadcast sends the bench's invocation with sequence number seq to
// every connection of hub chat through the node's REST API.
func broadcast(t *testing.T, admin string, seq int) {
	t.Helper()
	body := `{"target":"bench","arguments":` + InvocationArgs("bench", int64(seq), time.Now().UnixNano(), 64) + `}`
	resp, err := http.Post(admin+"/api/hubs/chat/:send", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatalf("send %d: %v", seq, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send %d: status %d", seq, resp.StatusCode)
	}
}

// TestLoaderTransports: n loader connections on each transport (Long
// Polling half MessagePack) open on a real node, on that transport (the
// node's HTTP answers by route say so: SSE streams, polls, POSTs; none
// for WebSockets), and a broadcast through REST reaches every one with
// its sequence number and send time.
func TestLoaderTransports(t *testing.T) {
	const n = 12
	for _, tc := range []struct {
		transport string
		mp        float64
		// node answers by route (polls and sends: at least)
		sse, polls, sends float64
	}{
		{"websockets", 0.5, 0, 0, 0},
		{"sse", 0, n, 0, n},
		{"longpolling", 0, 0, 2 * n, n},
		{"longpolling", 0.5, 0, 2 * n, n},
	} {
		t.Run(fmt.Sprintf("%s-mp%v", tc.transport, tc.mp), func(t *testing.T) {
			nd := nodetest.Start(t, node.Config{})
			admin := "http://" + nd.AdminAddr().String()
			r := startLoader(t, LoaderConfig{Addr: nd.Addr().String(), Conns: n, Concurrency: 4, Transport: tc.transport, MessagePack: tc.mp})
			var st LoaderStats
			checkFor(t, 10*time.Second, "all connections open", func() bool {
				st = r.ask(t, "stats").(LoaderStats)
				return st.Open == n || st.GivenUp > 0
			})
			if st.Open != n || st.Failures != 0 {
				t.Fatalf("open %d of %d, %d failures: %v", st.Open, n, st.Failures, st.FirstErrors)
			}
			m, err := ScrapeMetrics(admin + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			got := func(route string) float64 { return m[`edgeplane_http_requests_total{route="`+route+`",code="200"}`] }
			// (SSE's sends include the pings, the first due at once for some)
			if got("sse") != tc.sse || got("poll") < tc.polls || got("send") < tc.sends || tc.polls == 0 && got("poll") != 0 || tc.sends == 0 && got("send") != 0 {
				t.Fatalf("node's HTTP answers: sse %v, poll %v, send %v; want %v, ≥%v, ≥%v", got("sse"), got("poll"), got("send"), tc.sse, tc.polls, tc.sends)
			}
			broadcast(t, admin, 3)
			checkFor(t, 10*time.Second, "deliveries", func() bool {
				st = r.ask(t, "stats").(LoaderStats)
				return st.Deliveries >= n
			})
			if st.SeqCount["3"] != n || st.Latency.N != n || st.Dropped != 0 || int(st.MessagePack) != int(tc.mp*n) {
				t.Fatalf("seq counts %v, latency n %d, dropped %d (%v), %d MessagePack", st.SeqCount, st.Latency.N, st.Dropped, st.Errors, st.MessagePack)
			}
		})
	}
}

// TestLoaderLongPollingKeepsPolling: Long Polling connections receive
// broadcast after broadcast across many polls, including polls the node
// answered empty at its poll time-out (1 s here) and re-polls that found
// messages already queued.
func TestLoaderLongPollingKeepsPolling(t *testing.T) {
	const n, msgs = 5, 4
	nd := nodetest.Start(t, node.Config{Conn: conn.Config{PollTimeout: time.Second}})
	admin := "http://" + nd.AdminAddr().String()
	r := startLoader(t, LoaderConfig{Addr: nd.Addr().String(), Conns: n, Transport: "longpolling"})
	var st LoaderStats
	checkFor(t, 10*time.Second, "all connections open", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Open == n
	})
	for i := range msgs {
		if i == 2 {
			polls := st.Polls
			checkFor(t, 10*time.Second, "empty polls at the poll time-out", func() bool {
				st = r.ask(t, "stats").(LoaderStats)
				return st.Polls >= polls+2*n
			})
		}
		broadcast(t, admin, i)
		broadcast(t, admin, 100+i) // likely queued before the re-poll
		checkFor(t, 10*time.Second, "deliveries", func() bool {
			st = r.ask(t, "stats").(LoaderStats)
			return st.Deliveries >= uint64(2*(i+1)*n) || st.Dropped > 0
		})
	}
	for i := range msgs {
		for _, seq := range []int{i, 100 + i} {
			if c := st.SeqCount[fmt.Sprint(seq)]; c != n {
				t.Errorf("message %d reached %d of %d connections", seq, c, n)
			}
		}
	}
	if st.Open != n || st.Dropped != 0 || st.Polls < 3*n {
		t.Fatalf("open %d, dropped %d (%v), %d polls answered; want %d, 0, ≥%d", st.Open, st.Dropped, st.Errors, st.Polls, n, 3*n)
	}
}

// TestLoaderSSEPings: SSE connections send their keep-alive pings by POST
// on short-lived sockets: with the node's client time-out at 2 s they
// outlive it (without pings the node closes them), and receive a
// broadcast afterwards.
func TestLoaderSSEPings(t *testing.T) {
	const n = 6
	nd := nodetest.Start(t, node.Config{Conn: conn.Config{ClientTimeout: 2 * time.Second, KeepAliveInterval: time.Second}})
	admin := "http://" + nd.AdminAddr().String()
	r := startLoader(t, LoaderConfig{Addr: nd.Addr().String(), Conns: n, Transport: "sse", KeepAlive: 300 * time.Millisecond})
	var st LoaderStats
	checkFor(t, 10*time.Second, "all connections open", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Open == n
	})
	posts := st.Posts
	checkFor(t, 15*time.Second, "two client time-outs of pings", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Posts >= posts+uint64(n*14) || st.Dropped > 0 // 300 ms apart: 4 s
	})
	if st.Open != n || st.Dropped != 0 || st.AuxPeak < 1 || st.AuxPeak > maxAux {
		t.Fatalf("open %d, dropped %d (%v), aux peak %d", st.Open, st.Dropped, st.Errors, st.AuxPeak)
	}
	if st.Pings == 0 {
		t.Fatalf("no server pings received on the streams")
	}
	broadcast(t, admin, 7)
	checkFor(t, 10*time.Second, "deliveries", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Deliveries >= n
	})
	if st.SeqCount["7"] != n {
		t.Fatalf("seq counts %v", st.SeqCount)
	}
}

func TestLoaderTransportRefused(t *testing.T) {
	for _, tc := range []struct {
		cfg  LoaderConfig
		want string
	}{
		{LoaderConfig{Transport: "sse", MessagePack: 0.5}, "text only"},
		{LoaderConfig{Transport: "longpolling", Stateful: true}, "stateful"},
		{LoaderConfig{Transport: "sse", SkipNegotiate: true}, "negotiate"},
		{LoaderConfig{Transport: "carrier-pigeon"}, "unknown transport"},
	} {
		tc.cfg.Addr = "127.0.0.1:1"
		if _, err := NewLoader(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.cfg, err, tc.want)
		}
	}
}

func TestSSEParser(t *testing.T) {
	stream := ":\r\ndata: {\"type\":6}\x1e\r\n\r\nevent: x\ndata: a\ndata: b\n\n: c\r\n\r\ndata: last\r\n\r\n"
	want := []string{"{\"type\":6}\x1e", "a\nb", "last"}
	for _, step := range []int{1, 3, 7, len(stream)} {
		var p SSEParser
		var got []string
		for i := 0; i < len(stream); i += step {
			if err := p.Feed([]byte(stream[i:min(i+step, len(stream))]), func(ev []byte) error {
				got = append(got, string(ev))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("step %d: events %q, want %q", step, got, want)
		}
	}
}
