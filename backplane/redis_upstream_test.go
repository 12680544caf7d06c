package backplane

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// bigEvent is an invocation whose arguments are n bytes.
func bigEvent(conn string, n int) *Event {
	return &Event{Kind: EventInvocation, Hub: "chat", ConnID: conn, Target: "Put",
		Arguments: []byte(`["` + strings.Repeat("x", n-4) + `"]`)}
}

// streamBytes is the stream's exact memory in Redis (MEMORY USAGE SAMPLES 0).
func streamBytes(t *testing.T, client *redis.Client, stream string) int64 {
	t.Helper()
	n, err := client.MemoryUsage(context.Background(), stream, 0).Result()
	if err != nil {
		t.Fatalf("MEMORY USAGE %s: %v", stream, err)
	}
	return n
}

func waitSent(t *testing.T, bp *Redis, n int) {
	t.Helper()
	testutil.WaitUntil(t, 15*time.Second, fmt.Sprintf("%d upstream events written", n), func() bool {
		return metric(t, bp, "edgeplane_backplane_upstream_sent_total") >= float64(n)
	})
	if e := metric(t, bp, "edgeplane_backplane_upstream_errors_total"); e != 0 {
		t.Fatalf("%v upstream write errors", e)
	}
}

// TestRedisUpstreamByteBound: large entries are bounded by bytes, not by
// the entry count (100,000 × 32 KiB was ~3 GB per hub).
func TestRedisUpstreamByteBound(t *testing.T) {
	srv := redistest.Start(t)
	const budget = 1 << 20
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), UpstreamMaxBytes: budget})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	up := a.Upstream()
	for i := range 400 { // 400 × 16 KiB: 6.4 MB offered
		if err := up.Send(bigEvent(fmt.Sprint("c", i), 16<<10)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	waitSent(t, a, 400)
	used := streamBytes(t, client, "chat:upstream")
	n, _ := client.XLen(context.Background(), "chat:upstream").Result()
	t.Logf("stream: %d entries, %d bytes in Redis (budget %d)", n, used, budget)
	// Approximate trimming may leave one stream node (one such entry) over.
	if used > budget+(20<<10) {
		t.Fatalf("stream holds %d bytes in Redis (%d entries), budget %d", used, n, budget)
	}
	if used < budget/2 {
		t.Fatalf("stream holds %d bytes (%d entries): the bound keeps under half its budget %d", used, n, budget)
	}
}

// TestRedisUpstreamByteBoundAcrossNodes: a node writing small entries
// still keeps the stream within its bytes when another node writes large
// ones into it (the bound measures the stream in Redis, not only its own
// entries).
func TestRedisUpstreamByteBoundAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	const budget = 1 << 20
	small, _ := startNode(t, RedisConfig{URL: srv.URL(), UpstreamMaxBytes: budget})
	large, _ := startNode(t, RedisConfig{URL: srv.URL(), UpstreamMaxBytes: budget})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	// The small writer measures the stream while it is still small...
	if err := small.Upstream().Send(bigEvent("s", 200)); err != nil {
		t.Fatal(err)
	}
	waitSent(t, small, 1)
	// ...then the large one fills it (within its own bound)...
	for i := range 100 {
		if err := large.Upstream().Send(bigEvent(fmt.Sprint("l", i), 16<<10)); err != nil {
			t.Fatal(err)
		}
	}
	waitSent(t, large, 100)
	// ...and the small writer keeps writing for more than a measurement
	// period: its own entries alone would allow ~4,000 entries.
	sent := 1
	deadline := time.Now().Add(2*measureEvery + 500*time.Millisecond)
	for time.Now().Before(deadline) {
		for range 50 {
			if err := small.Upstream().Send(bigEvent("s", 200)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		waitSent(t, small, sent)
		time.Sleep(100 * time.Millisecond)
	}
	used := streamBytes(t, client, "chat:upstream")
	n, _ := client.XLen(context.Background(), "chat:upstream").Result()
	t.Logf("stream: %d entries, %d bytes in Redis (budget %d)", n, used, budget)
	if used > budget+(20<<10) {
		t.Fatalf("stream holds %d bytes in Redis (%d entries), budget %d", used, n, budget)
	}
}

// TestRedisUpstreamAgeBound: entries older than UpstreamMaxAge go when the
// stream is next written (approximately: up to one stream node of 100
// entries may stay).
func TestRedisUpstreamAgeBound(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), UpstreamMaxAge: time.Second})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	up := a.Upstream()
	for i := range 1000 {
		if err := up.Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: fmt.Sprint("old", i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitSent(t, a, 1000)
	if n, _ := client.XLen(context.Background(), "chat:upstream").Result(); n != 1000 {
		t.Fatalf("XLEN %d before the entries are old, want 1000", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := up.Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: "new"}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, a, 1001)
	n, _ := client.XLen(context.Background(), "chat:upstream").Result()
	if n > 101 {
		t.Fatalf("XLEN %d after the entries aged out, want ≤ 101 (one stream node)", n)
	}
	last, err := client.XRevRangeN(context.Background(), "chat:upstream", "+", "-", 1).Result()
	if err != nil || len(last) != 1 || last[0].Values["connectionId"] != "new" {
		t.Fatalf("newest entry %v %v, want the new one", last, err)
	}
}

// TestRedisUpstreamOwnRedis: with UpstreamURL the streams live on another
// Redis; the backplane going down does not stop them, the upstream Redis
// going down is counted.
func TestRedisUpstreamOwnRedis(t *testing.T) {
	if _, err := NewRedis(RedisConfig{URL: "redis://127.0.0.1:1", UpstreamURL: "http://nope"}); err == nil || !strings.Contains(err.Error(), "upstream redis URL") {
		t.Fatalf("bad upstream URL: %v, want an error naming it", err)
	}
	bpSrv, upSrv := redistest.Start(t), redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: bpSrv.URL(), UpstreamURL: upSrv.URL(), HealthInterval: 200 * time.Millisecond})
	upClient := redis.NewClient(&redis.Options{Addr: upSrv.Addr()})
	defer upClient.Close()
	bpClient := redis.NewClient(&redis.Options{Addr: bpSrv.Addr()})
	defer bpClient.Close()
	up := a.Upstream()
	if err := up.Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: "c1"}); err != nil {
		t.Fatal(err)
	}
	waitSent(t, a, 1)
	if n, _ := upClient.XLen(context.Background(), "chat:upstream").Result(); n != 1 {
		t.Fatalf("upstream Redis XLEN %d, want 1", n)
	}
	if n, _ := bpClient.Exists(context.Background(), "chat:upstream").Result(); n != 0 {
		t.Fatal("the stream was written to the backplane's Redis")
	}
	bpSrv.Kill()
	testutil.WaitUntil(t, 5*time.Second, "backplane not ready", func() bool { return !a.Ready() })
	if err := up.Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: "c2"}); err != nil {
		t.Fatalf("Send with the backplane down: %v", err)
	}
	waitSent(t, a, 2)
	upSrv.Kill()
	if err := up.Send(&Event{Kind: EventConnected, Hub: "chat", ConnID: "c3"}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	testutil.WaitUntil(t, 10*time.Second, "write error counted", func() bool {
		return metric(t, a, "edgeplane_backplane_upstream_errors_total") == 1
	})
}

// BenchmarkRedisUpstreamBound writes b.N upstream events with arguments of
// the largest client message (32 KiB) under the default bounds and reports
// the stream's memory in Redis at the end (before the byte bound: up to
// 100,000 such entries, ~3.3 GB per hub). -benchtime 4000x writes 128 MiB.
func BenchmarkRedisUpstreamBound(b *testing.B) {
	srv := redistest.Start(b)
	bp, err := NewRedis(RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": ""}, UpstreamBuffer: 100_000,
		Logger: slog.New(slog.NewTextHandler(ioDiscard{}, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer bp.Close()
	if err := bp.Start(&atomicReceiver{}); err != nil || !bp.Ready() {
		b.Fatalf("start: %v", err)
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	up := bp.Upstream()
	ev := bigEvent("c", 32<<10)
	b.ResetTimer()
	for range b.N {
		for up.Send(ev) != nil { // buffer full: let the writer catch up
			time.Sleep(time.Millisecond)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for bp.m.upstreamSent.Get() < uint64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	used, err := client.MemoryUsage(context.Background(), "chat:upstream", 0).Result()
	if err != nil {
		b.Fatal(err)
	}
	n, _ := client.XLen(context.Background(), "chat:upstream").Result()
	b.ReportMetric(float64(used)/(1<<20), "stream-MiB")
	b.ReportMetric(float64(n), "entries")
}
