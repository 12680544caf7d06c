package bench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// checkFor polls cond until it holds or timeout passes.
func checkFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startBaseline(t *testing.T) (client, admin string) {
	t.Helper()
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := NewBaseline(BaselineConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan error, 1)
	go func() { done <- b.ServeListeners(ctx, cl, al) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("baseline: %v", err)
		}
	})
	return cl.Addr().String(), al.Addr().String()
}

type runningLoader struct {
	cmds chan LoaderCmd
	done chan error
}

func (r *runningLoader) ask(t *testing.T, op string) any {
	t.Helper()
	ch := make(chan any, 1)
	r.cmds <- LoaderCmd{Op: op, Reply: ch}
	return <-ch
}

func startLoader(t *testing.T, cfg LoaderConfig) *runningLoader {
	t.Helper()
	l, err := NewLoader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &runningLoader{cmds: make(chan LoaderCmd), done: make(chan error, 1)}
	go func() { r.done <- l.Run(r.cmds, nil) }()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			ch := make(chan any, 1)
			r.cmds <- LoaderCmd{Op: "close", Reply: ch}
			<-r.done
		}
	})
	return r
}

func TestBaselineEndToEnd(t *testing.T) {
	const n = 50
	client, admin := startBaseline(t)
	r := startLoader(t, LoaderConfig{Addr: client, Conns: n, SrcIPs: []string{"127.0.0.2", "127.0.0.3"}, Concurrency: 16,
		KeepAlive: 500 * time.Millisecond})
	var st LoaderStats
	checkFor(t, 10*time.Second, "all connections open", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Open == n
	})
	if st.Failures != 0 || st.Handshake.N != n {
		t.Fatalf("failures %d, handshakes %d (errors %v)", st.Failures, st.Handshake.N, st.Errors)
	}
	ids := r.ask(t, "ids").([]string)
	if len(ids) != n {
		t.Fatalf("%d ids, want %d", len(ids), n)
	}
	// Half join a group over REST.
	for _, id := range ids[:n/2] {
		req, _ := http.NewRequest(http.MethodPut, "http://"+admin+"/api/hubs/chat/groups/g1/connections/"+id, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("group add: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	send := func(path string, seq int64, size int) {
		body := `{"target":"bench","arguments":` + InvocationArgs("bench", seq, time.Now().UnixNano(), size) + `}`
		resp, err := http.Post("http://"+admin+path, "application/json", bytes.NewBufferString(body))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	send("/api/hubs/chat/:send", 0, 64)
	send("/api/hubs/chat/groups/g1/:send", 1, 4096)
	checkFor(t, 10*time.Second, "deliveries", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Deliveries >= n+n/2
	})
	if st.SeqCount["0"] != n || st.SeqCount["1"] != n/2 || st.Latency.N != n+n/2 {
		t.Fatalf("seq counts %v, latency n %d", st.SeqCount, st.Latency.N)
	}
	// Keep-alive pings flow and nobody is dropped.
	time.Sleep(1200 * time.Millisecond)
	m, err := ScrapeMetrics("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m["baseline_connections"] != n || m["go_goroutines"] < 2*n {
		t.Fatalf("metrics: connections %v goroutines %v", m["baseline_connections"], m["go_goroutines"])
	}
	st = r.ask(t, "stats").(LoaderStats)
	if st.Dropped != 0 || st.Open != n {
		t.Fatalf("after keep-alives: open %d dropped %d errors %v", st.Open, st.Dropped, st.Errors)
	}
	// skipNegotiation (no id) connects too.
	r2 := startLoader(t, LoaderConfig{Addr: client, Conns: 1, SkipNegotiate: true})
	checkFor(t, 5*time.Second, "skipNegotiation connection", func() bool {
		return r2.ask(t, "stats").(LoaderStats).Open == 1
	})
}

func TestDensityBaselineTiny(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RunDensity(context.Background(), DensityConfig{
		Sizes:      []int{20, 60},
		Systems:    []SystemSpec{{Name: "baseline", Kind: KindBaseline}},
		Self:       self,
		IdleWindow: 500 * time.Millisecond,
		Settle:     200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Systems) != 1 || rep.Systems[0].Error != "" || len(rep.Systems[0].Points) != 2 {
		t.Fatalf("report: %+v", rep.Systems)
	}
	for _, p := range rep.Systems[0].Points {
		if p.Open != p.Conns || p.RSS <= 0 || p.Goroutines < float64(2*p.Conns) {
			t.Fatalf("point %+v", p)
		}
	}
	last := rep.Systems[0].Points[1]
	if last.IdleWindowSec <= 0 {
		t.Fatalf("no idle CPU window at the largest size: %+v", last)
	}
	if len(rep.PerSize) != 2 {
		t.Fatalf("per size: %v", rep.PerSize)
	}
	if _, ok := rep.PerSize[1]["baseline"].(DensityPoint); !ok {
		t.Fatalf("per size has no baseline point: %v", rep.PerSize[1])
	}
	var buf bytes.Buffer
	WriteDensityTable(&buf, rep)
	if !bytes.Contains(buf.Bytes(), []byte("baseline")) {
		t.Fatalf("table:\n%s", buf.String())
	}
}

func TestFanoutBaselineTiny(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RunFanout(context.Background(), FanoutConfig{
		Conns: 40, Sizes: []int{64}, Messages: 2, Interval: 50 * time.Millisecond,
		Systems: []SystemSpec{{Name: "baseline", Kind: KindBaseline}, {Name: "baseline2", Kind: KindBaseline}},
		Self:    self,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interleaved || len(rep.Systems) != 2 {
		t.Fatalf("report: %+v", rep)
	}
	for _, s := range rep.Systems {
		if s.Error != "" || s.Members != 40 || len(s.Cases) != 1 {
			t.Fatalf("system %s: error %q members %d cases %d", s.Spec.Name, s.Error, s.Members, len(s.Cases))
		}
		c := s.Cases[0]
		if c.Error != "" || c.Delivered != 80 || c.Expected != 80 || c.Completion.N != 2 || c.Latency.N != 80 {
			t.Fatalf("case: %+v", c)
		}
	}
	var buf bytes.Buffer
	WriteFanoutTable(&buf, rep)
	if err := FanoutSVG(&buf, rep); err != nil {
		t.Fatal(err)
	}
}
