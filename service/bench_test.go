package service_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/service"
)

// Service-mode benchmarks, in one process (node, fake app server, Go
// clients share the cores: compare ratios, not absolute times):
//
//	go test -run XXX -bench 'EchoRoundTrip|Broadcast' -benchtime 2000x ./service/
//
// EchoRoundTrip: a hub method's round trip, client → node → app → node →
// client, with 1,000 clients connected; "serial" has one call in flight,
// "burst" every client calling at once (b.N rounds). Broadcast: 64 B
// from the app (Clients.All) to 1,000 clients, until the last one has
// it, against the same message sent through the REST API.

const benchClients = 1000

// benchClient is a SignalR JSON client that hands completions and
// messages to channels instead of keeping them.
type benchClient struct {
	ws      *websocket.Conn
	mu      sync.Mutex
	waiting map[string]chan struct{}
	got     *atomic.Int64 // messages on target "b"
	next    atomic.Int64
}

// benchConnect connects a client through the app's negotiate at base;
// a non-nil at gets the app's redirect instead of the node it names.
func benchConnect(b *testing.B, base string, at *node.Node, got *atomic.Int64) *benchClient {
	b.Helper()
	u, tok, _ := redirect(b, base, "ChatHub", "u", at)
	ws := dialWS(b, u, tok)
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	if _, hs, err := ws.ReadMessage(); err != nil || string(hs) != "{}\x1e" {
		b.Fatalf("handshake %q %v", hs, err)
	}
	c := &benchClient{ws: ws, waiting: map[string]chan struct{}{}, got: got}
	go c.read()
	return c
}

// benchConnectN connects n clients as benchConnect does, closed when b
// ends.
func benchConnectN(b *testing.B, n int, base string, at *node.Node, got *atomic.Int64) []*benchClient {
	b.Helper()
	cs := make([]*benchClient, 0, n)
	b.Cleanup(func() {
		for _, c := range cs {
			c.ws.Close()
		}
	})
	for range n {
		cs = append(cs, benchConnect(b, base, at, got))
	}
	return cs
}

func (c *benchClient) read() {
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		for _, rec := range bytes.Split(msg, []byte{0x1e}) {
			if len(rec) == 0 {
				continue
			}
			var m struct {
				Type         int    `json:"type"`
				InvocationID string `json:"invocationId"`
				Target       string `json:"target"`
			}
			json.Unmarshal(rec, &m)
			switch {
			case m.Type == 3:
				c.mu.Lock()
				ch := c.waiting[m.InvocationID]
				delete(c.waiting, m.InvocationID)
				c.mu.Unlock()
				if ch != nil {
					close(ch)
				}
			case m.Type == 1 && m.Target == "b":
				c.got.Add(1)
			}
		}
	}
}

// echo invokes Echo and returns the round trip.
func (c *benchClient) echo() time.Duration {
	id := strconv.FormatInt(c.next.Add(1), 10)
	ch := make(chan struct{})
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	start := time.Now()
	c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":1,"invocationId":"`+id+`","target":"Echo","arguments":["x"]}`+"\x1e"))
	<-ch
	return time.Since(start)
}

type benchEnv struct {
	n       *node.Node
	app     *sdkfake.App
	clients []*benchClient
	got     atomic.Int64
}

// echoHub is the benchmarks' app hub: Echo returns its argument.
func echoHub() *sdkfake.Hub {
	return &sdkfake.Hub{Name: "ChatHub", Methods: map[string]sdkfake.Method{
		"Echo": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { return args[0], nil },
	}}
}

func setupBench(b *testing.B) *benchEnv {
	b.Helper()
	e := &benchEnv{}
	e.n = nodetest.Start(b, node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Service: &service.Config{},
		Conn: conn.Config{AccessKey: key, AcceptRate: -1, MaxMessageRate: -1}})
	var base string
	e.app, base = startApp(b, e.n, sdkfake.Config{Hubs: []*sdkfake.Hub{echoHub()}})
	e.clients = benchConnectN(b, benchClients, base, nil, &e.got)
	return e
}

// benchEchoSerial: one Echo in flight at a time, from each client in
// turn; reports the round trip's percentiles.
func benchEchoSerial(b *testing.B, clients []*benchClient) {
	d := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		d = append(d, clients[i%len(clients)].echo())
	}
	reportPercentiles(b, d)
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	p := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

func BenchmarkEchoRoundTrip(b *testing.B) {
	e := setupBench(b)
	b.Run("serial", func(b *testing.B) { benchEchoSerial(b, e.clients) })
	b.Run("burst", func(b *testing.B) {
		var mu sync.Mutex
		var d []time.Duration
		for b.Loop() {
			var wg sync.WaitGroup
			for _, c := range e.clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rtt := c.echo()
					mu.Lock()
					d = append(d, rtt)
					mu.Unlock()
				}()
			}
			wg.Wait()
		}
		reportPercentiles(b, d)
	})
}

func BenchmarkBroadcast(b *testing.B) {
	e := setupBench(b)
	payload := fmt.Sprintf("%064d", 0)[:52] // with the record around it: 64 B
	restTok, _ := auth.Sign(map[string]any{"aud": "http://" + e.n.AdminAddr().String() + "/api/hubs/chathub/:send",
		"exp": time.Now().Add(time.Hour).Unix()}, []byte(key))
	wait := func(b *testing.B, want int64) {
		for e.got.Load() < want {
			time.Sleep(50 * time.Microsecond)
		}
	}
	run := func(b *testing.B, send func() error) {
		d := make([]time.Duration, 0, b.N)
		for b.Loop() {
			want := e.got.Load() + benchClients
			start := time.Now()
			if err := send(); err != nil {
				b.Fatal(err)
			}
			wait(b, want)
			d = append(d, time.Since(start))
		}
		reportPercentiles(b, d)
	}
	b.Run("app", func(b *testing.B) {
		h := e.app.Hub("ChatHub")
		run(b, func() error { return h.All().Send("b", payload) })
	})
	b.Run("rest", func(b *testing.B) {
		body := []byte(`{"target":"b","arguments":["` + payload + `"]}`)
		run(b, func() error {
			req, _ := http.NewRequest(http.MethodPost, "http://"+e.n.AdminAddr().String()+"/api/hubs/chathub/:send", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+restTok)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 202 {
				return fmt.Errorf("REST %d", resp.StatusCode)
			}
			return nil
		})
	})
}
