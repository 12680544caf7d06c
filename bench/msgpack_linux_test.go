package bench

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
)

// TestLoaderMessagePack: with LoaderConfig.MessagePack 0.5 every other
// connection speaks MessagePack to a real node; all open, their pings are
// accepted, and a broadcast reaches every one of them with its sequence
// number and send time read from JSON and MessagePack records alike,
// encoded once per protocol on the node.
func TestLoaderMessagePack(t *testing.T) {
	const n = 20
	nd := nodetest.Start(t, node.Config{})
	admin := "http://" + nd.AdminAddr().String()
	r := startLoader(t, LoaderConfig{Addr: nd.Addr().String(), Conns: n, Concurrency: 8, KeepAlive: 200 * time.Millisecond, MessagePack: 0.5})
	var st LoaderStats
	checkFor(t, 10*time.Second, "all connections open", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Open == n
	})
	if st.MessagePack != n/2 || st.Failures != 0 {
		t.Fatalf("%d MessagePack connections, %d failures (%v); want %d and none", st.MessagePack, st.Failures, st.Errors, n/2)
	}
	time.Sleep(500 * time.Millisecond) // client pings of both protocols
	body := `{"target":"bench","arguments":` + InvocationArgs("bench", 0, time.Now().UnixNano(), 64) + `}`
	resp, err := http.Post(admin+"/api/hubs/chat/:send", "application/json", bytes.NewBufferString(body))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %v %v", resp, err)
	}
	resp.Body.Close()
	m := waitBroadcast(t, r, n, admin)
	if j, mp := m[`edgeplane_fanout_encodes_total{protocol="json"}`], m[`edgeplane_fanout_encodes_total{protocol="messagepack"}`]; j != 1 || mp != 1 {
		t.Fatalf("encodes: json %v, messagepack %v; want 1 each", j, mp)
	}
}

// waitBroadcast waits until the loader has n deliveries and checks that
// they are one broadcast (sequence 0) reaching each of its n connections
// once, none dropped; it returns the node's metrics (admin) after it.
func waitBroadcast(t *testing.T, r *runningLoader, n int, admin string) map[string]float64 {
	t.Helper()
	var st LoaderStats
	checkFor(t, 10*time.Second, "deliveries", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Deliveries >= uint64(n)
	})
	if st.SeqCount["0"] != n || st.Latency.N != uint64(n) || st.Dropped != 0 {
		t.Fatalf("seq counts %v, latency n %d, dropped %d (%v)", st.SeqCount, st.Latency.N, st.Dropped, st.Errors)
	}
	m, err := ScrapeMetrics(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBenchArgsMessagePack(t *testing.T) {
	args, err := hubproto.JSONToMessagePack(nil, []byte(InvocationArgs("b", 42, 1732800000000000000, 64)))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := hubproto.MessagePack.AppendInvocation(nil, "", "b", args)
	if err != nil {
		t.Fatal(err)
	}
	if seq, sent, ok := BenchArgsMessagePack(rec[1:]); !ok || seq != 42 || sent != 1732800000000000000 {
		t.Fatalf("BenchArgsMessagePack = %d %d %v", seq, sent, ok)
	}
	for _, bad := range [][]byte{nil, {0x91, 0x06}, rec[1 : len(rec)-6]} {
		if _, _, ok := BenchArgsMessagePack(bad); ok {
			t.Fatalf("% x accepted", bad)
		}
	}
}

func TestSpeaksMessagePack(t *testing.T) {
	for _, tc := range []struct {
		frac float64
		n    int
	}{{0, 0}, {0.5, 500}, {0.25, 250}, {1, 1000}, {0.333, 333}} {
		got := 0
		for i := 0; i < 1000; i++ {
			if speaksMessagePack(i, tc.frac) {
				got++
			}
		}
		if got != tc.n {
			t.Errorf("fraction %v: %d of 1000, want %d", tc.frac, got, tc.n)
		}
	}
}
