package bench

import (
	"context"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestChildArgsRoundTrip(t *testing.T) {
	in := LoaderConfig{Addr: "127.0.0.1:9", Hub: "h", Conns: 7, SrcIPs: []string{"127.0.0.2", "127.0.0.3"},
		Concurrency: 5, Retry: []time.Duration{0, 2 * time.Second}, KeepAlive: time.Second,
		HandshakeTimeout: 3 * time.Second, SkipNegotiate: true, MessagePack: 0.5, Stateful: true}
	out, err := ParseChildArgs(ChildArgs(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
}

func TestAllocSrcIPsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, ip := range allocSrcIPs(600) {
		parts := strings.Split(ip, ".")
		if seen[ip] || len(parts) != 4 || parts[0] != "127" || parts[1] != "0" || parts[3] == "0" || parts[3] == "1" {
			t.Fatalf("bad or repeated source address %s", ip)
		}
		seen[ip] = true
	}
}

func TestMergeStats(t *testing.T) {
	h1, h2 := &Hist{}, &Hist{}
	h1.RecordUS(10)
	h2.RecordUS(1000)
	m := MergeStats([]LoaderStats{
		{Target: 2, Open: 2, Settled: true, Latency: h1, SeqLast: map[string]int64{"0": 5}, SeqCount: map[string]int{"0": 2}, FirstAttemptNano: 10, LastOpenNano: 20},
		{Target: 3, Open: 1, Dropped: 1, Settled: false, Latency: h2, SeqLast: map[string]int64{"0": 9}, SeqCount: map[string]int{"0": 1}, FirstAttemptNano: 5, LastOpenNano: 15},
	})
	if m.Target != 5 || m.Open != 3 || m.Dropped != 1 || m.Settled || m.Latency.N != 2 || m.Latency.MaxUS != 1000 ||
		m.SeqLast["0"] != 9 || m.SeqCount["0"] != 3 || m.FirstAttemptNano != 5 || m.LastOpenNano != 20 {
		t.Fatalf("merged %+v", m)
	}
}

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(`# HELP go_goroutines x
# TYPE go_goroutines gauge
go_goroutines 25
edgeplane_connections{hub="chat"} 19000
process_resident_memory_bytes 1.811e+08
with_ts 3 1700000000000
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 25, `edgeplane_connections{hub="chat"}`: 19000,
		"process_resident_memory_bytes": 1.811e8, "with_ts": 3}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v", m)
	}
}

// After Reset, Progress counts no delivery of before: a wait for the next
// broadcast's deliveries must not end on the previous one's count (the
// children report progress only every 100 ms).
func TestFleetResetZeroesProgress(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	client, admin := startBaseline(t)
	f, err := StartFleet(FleetConfig{Self: self, Addrs: []string{client}, Conns: 5, Concurrency: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p, err := f.WaitSettled(context.Background(), 20*time.Second, nil); err != nil || p.Open != 5 {
		t.Fatalf("open %d: %v", p.Open, err)
	}
	body := `{"target":"bench","arguments":` + InvocationArgs("bench", 0, time.Now().UnixNano(), 64) + `}`
	resp, err := http.Post("http://"+admin+"/api/hubs/chat/:send", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	checkFor(t, 10*time.Second, "5 deliveries reported", func() bool { return f.Progress().Deliveries == 5 })
	if err := f.Reset(); err != nil {
		t.Fatal(err)
	}
	if d := f.Progress().Deliveries; d != 0 {
		t.Fatalf("after Reset, Progress still counts %d deliveries", d)
	}
}
