package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"io"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/redistest"
)

func latencyEnvInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// latencyPercentile: p in [0,1] of sorted nanoseconds.
func latencyPercentile(sorted []int64, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return time.Duration(sorted[i])
}

// latencyReadFrame reads one server frame's payload into buf (reused).
func latencyReadFrame(r *rawConn, buf []byte, d time.Duration) ([]byte, error) {
	r.c.SetReadDeadline(time.Now().Add(d))
	var h [10]byte
	if _, err := io.ReadFull(r.br, h[:2]); err != nil {
		return buf, err
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(r.br, h[2:4]); err != nil {
			return buf, err
		}
		n = int(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(r.br, h[2:10]); err != nil {
			return buf, err
		}
		n = int(binary.BigEndian.Uint64(h[2:10]))
	}
	buf = slices.Grow(buf[:0], n)[:n]
	_, err := io.ReadFull(r.br, buf)
	return buf, err
}

var latencyPrefix = []byte(`{"type":1,"target":"lat","arguments":[`)

// latencyArgs parses the record the test publishes, without allocating.
func latencyArgs(rec []byte) (seq, sent int64, ok bool) {
	rest, found := bytes.CutPrefix(rec, latencyPrefix)
	if !found {
		return 0, 0, false
	}
	a, b, found := bytes.Cut(rest, []byte{','})
	if !found {
		return 0, 0, false
	}
	b, found = bytes.CutSuffix(b, []byte{']', '}'})
	if !found {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseInt(string(a), 10, 64)
	sent, err2 := strconv.ParseInt(string(b), 10, 64)
	return seq, sent, err1 == nil && err2 == nil
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return string(bytes.TrimSpace(b))
}

// TestLatencyRedisToClient measures the end-to-end latency from a Redis
// PUBLISH (the ASP.NET backplane format, as an app server would publish on
// chat:all) to the receipt of the frame by raw WebSocket clients spread
// over 3 nodes on one Redis. It only asserts that every client got every
// message; the latencies are reported with t.Logf. It runs only with
// EDGEPLANE_LATENCY=1:
//
//	EDGEPLANE_LATENCY=1 go test -run TestLatencyRedisToClient -v ./test/e2e/
//
// EDGEPLANE_LATENCY_CLIENTS (1000), EDGEPLANE_LATENCY_MESSAGES (200) and
// EDGEPLANE_LATENCY_INTERVAL_MS (10, between publishes) change the load.
// Clients and nodes share the machine's cores: under -race the numbers are
// much higher than without it.
func TestLatencyRedisToClient(t *testing.T) {
	if os.Getenv("EDGEPLANE_LATENCY") != "1" {
		t.Skip("latency measurement: set EDGEPLANE_LATENCY=1 to run")
	}
	clients := latencyEnvInt(t, "EDGEPLANE_LATENCY_CLIENTS", 1000)
	msgs := latencyEnvInt(t, "EDGEPLANE_LATENCY_MESSAGES", 200)
	interval := time.Duration(latencyEnvInt(t, "EDGEPLANE_LATENCY_INTERVAL_MS", 10)) * time.Millisecond
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		args := []string{"--redis", rs.URL(), "--hub", "chat", "--log-level", "info"}
		nodes := []*node{startNode(t, backend, args...), startNode(t, backend, args...), startNode(t, backend, args...)}
		for i, n := range nodes {
			testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d ready", i+1), func() bool { c, _ := n.api("GET", "/readyz", "", ""); return c == 200 })
		}
		t.Logf("load average before: %s", loadAvg())
		t0 := time.Now()
		conns := make([]*rawConn, clients)
		for i := range conns {
			conns[i] = nodes[i%len(nodes)].connect(t, "/chat")
		}
		for i, n := range nodes {
			want := float64(clients / len(nodes))
			if i < clients%len(nodes) {
				want++
			}
			testutil.WaitUntil(t, 10*time.Second, fmt.Sprintf("node %d registers %v clients", i+1, want), func() bool {
				return n.metric(`edgeplane_connections{hub="chat"}`) == want
			})
		}
		t.Logf("%d clients connected in %v", clients, time.Since(t0).Round(time.Millisecond))

		// Each client records, per message, receipt time − send time.
		type result struct {
			lat []int64 // by sequence number; -1: not received
			err error
		}
		results := make(chan result, clients)
		for _, r := range conns {
			go func(r *rawConn) {
				res := result{lat: make([]int64, msgs)}
				for i := range res.lat {
					res.lat[i] = -1
				}
				got := 0
				var buf []byte
				for got < msgs {
					var err error
					buf, err = latencyReadFrame(r, buf, 30*time.Second)
					now := time.Now().UnixNano()
					if err != nil {
						res.err = fmt.Errorf("after %d messages: %w", got, err)
						break
					}
					for _, rec := range bytes.Split(buf, []byte{0x1e}) {
						seq, sent, ok := latencyArgs(rec)
						if !ok {
							continue // pings
						}
						if seq < 0 || seq >= int64(msgs) || res.lat[seq] >= 0 {
							res.err = fmt.Errorf("unexpected or duplicate message %d", seq)
							continue
						}
						res.lat[seq] = now - sent
						got++
					}
				}
				results <- res
			}(r)
		}

		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		defer rdb.Close()
		ctx := context.Background()
		var buf []byte
		for seq := 0; seq < msgs; seq++ {
			sent := time.Now().UnixNano()
			rec := fmt.Appendf(nil, `{"type":1,"target":"lat","arguments":[%d,%d]}`+"\x1e", seq, sent)
			buf = wire.AppendInvocation(buf[:0], nil, rec)
			n, err := rdb.Publish(ctx, "chat:all", buf).Result()
			if err != nil || n != int64(len(nodes)) {
				t.Fatalf("PUBLISH %d: %d subscribers, %v (want %d: one per node)", seq, n, err, len(nodes))
			}
			time.Sleep(interval)
		}

		all := make([]int64, 0, clients*msgs)
		last := make([]int64, msgs)  // per message: the slowest recipient
		first := make([]int64, msgs) // and the fastest
		for i := range first {
			first[i] = 1<<63 - 1
		}
		missing := 0
		for range conns {
			res := <-results
			if res.err != nil {
				t.Errorf("client: %v", res.err)
			}
			for seq, l := range res.lat {
				if l < 0 {
					missing++
					continue
				}
				all = append(all, l)
				last[seq] = max(last[seq], l)
				first[seq] = min(first[seq], l)
			}
		}
		if missing > 0 {
			t.Fatalf("%d of %d (client, message) deliveries missing", missing, clients*msgs)
		}
		t.Logf("load average after: %s", loadAvg())
		slices.Sort(all)
		slices.Sort(last)
		slices.Sort(first)
		t.Logf("%s: %d clients on %d nodes, %d messages every %v: PUBLISH→client receipt p50 %v p99 %v max %v; "+
			"first recipient of a message p50 %v p99 %v; last recipient p50 %v p99 %v max %v",
			backend, clients, len(nodes), msgs, interval,
			latencyPercentile(all, 0.50), latencyPercentile(all, 0.99), latencyPercentile(all, 1),
			latencyPercentile(first, 0.50), latencyPercentile(first, 0.99),
			latencyPercentile(last, 0.50), latencyPercentile(last, 0.99), latencyPercentile(last, 1))
	})
}
