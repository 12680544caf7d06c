package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/webhook"
)

// benchClients is how many clients send invocations in the webhook
// benchmarks (issue 15: throughput at 1,000 clients).
const benchClients = 1000

// dialClients connects n SignalR clients (JSON handshake done) to hub chat.
func dialClients(b *testing.B, nd *node.Node, n int) []*websocket.Conn {
	b.Helper()
	conns := make([]*websocket.Conn, 0, n)
	for range n {
		resp, err := http.Post("http://"+nd.Addr().String()+"/chat/negotiate?negotiateVersion=1", "text/plain", nil)
		if err != nil {
			b.Fatal(err)
		}
		var neg struct{ ConnectionToken string }
		json.NewDecoder(resp.Body).Decode(&neg)
		resp.Body.Close()
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+nd.Addr().String()+"/chat?id="+neg.ConnectionToken, nil)
		if err != nil {
			b.Fatal(err)
		}
		ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
		if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "{}\x1e" {
			b.Fatalf("handshake %q %v", msg, err)
		}
		go func() { // drain pings and anything else
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		conns = append(conns, ws)
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// send writes total non-blocking invocations, spread over the clients
// round-robin, from a few writer goroutines.
func send(b *testing.B, conns []*websocket.Conn, total int) {
	b.Helper()
	const writers = 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += writers {
				c := conns[i%len(conns)]
				if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":1,"target":"note","arguments":[`+strconv.Itoa(i)+`]}`+"\x1e")); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkWebhookThroughput: client invocations per second delivered to
// a local webhook upstream (an HTTP server answering 204 at once), from
// 1,000 clients. Run: go test -run '^$' -bench WebhookThroughput
// -benchtime 50000x ./internal/node/
func BenchmarkWebhookThroughput(b *testing.B) {
	var got atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-ASRS-Category") == "messages" {
			got.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer up.Close()
	nd := nodetest.Start(b, node.Config{
		Conn:    benchConn(),
		Webhook: &webhook.Config{Settings: []webhook.Setting{{URLTemplate: up.URL + "/{event}"}}, QueueSize: 1 << 14, Workers: benchWorkers()},
	})
	conns := dialClients(b, nd, benchClients)
	b.ResetTimer()
	start := time.Now()
	send(b, conns, b.N)
	for got.Load() < int64(b.N) {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d of %d delivered", got.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "invocations/s")
}

// BenchmarkWebhookDeadUpstream: the same load against an upstream that
// accepts connections and never answers: the node's heap stays bounded by
// its queues (events beyond them are dropped and counted). Reports the
// heap's growth, the events queued and dropped.
func BenchmarkWebhookDeadUpstream(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	}()
	nd := nodetest.Start(b, node.Config{
		Conn:    benchConn(),
		Webhook: &webhook.Config{Settings: []webhook.Setting{{URLTemplate: "http://" + ln.Addr().String() + "/{event}"}}, Timeout: time.Minute},
	})
	conns := dialClients(b, nd, benchClients)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	send(b, conns, b.N)
	b.StopTimer()
	metric := func(name string) float64 {
		resp, err := http.Get("http://" + nd.AdminAddr().String() + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var v float64
		for _, line := range strings.Split(string(body), "\n") {
			if n, _ := fmt.Sscanf(line, name+" %g", &v); n == 1 {
				return v
			}
		}
		return -1
	}
	label := `edgeplane_webhook_dropped_total{upstream="http://` + ln.Addr().String() + `"}`
	deadline := time.Now().Add(time.Minute)
	for metric(label)+metric("edgeplane_webhook_queued")+float64(webhook.DefaultWorkers) < float64(b.N) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the node still reading what was sent
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), "heap-growth-MiB")
	b.ReportMetric(metric("edgeplane_webhook_queued"), "queued")
	b.ReportMetric(metric(label), "dropped")
}

// benchWorkers is the webhook workers of BenchmarkWebhookThroughput:
// $EDGEPLANE_BENCH_WEBHOOK_WORKERS, default webhook.DefaultWorkers.
func benchWorkers() int {
	n, _ := strconv.Atoi(os.Getenv("EDGEPLANE_BENCH_WEBHOOK_WORKERS"))
	return n
}

// benchConn lets 1,000 clients connect at once and send as fast as they
// can (no accept or message rate limit).
func benchConn() conn.Config {
	return conn.Config{AcceptRate: -1, MaxMessageRate: -1}
}
