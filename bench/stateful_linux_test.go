package bench

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
)

// TestLoaderStateful: with LoaderConfig.Stateful every connection (JSON
// and MessagePack) negotiates stateful reconnect and acks what it
// receives. The node keeps each one's messages until acked, in a buffer
// of 2,000 bytes here: 20 broadcasts of ~300 bytes pass only because the
// acks empty it (without them every connection is closed with
// reconnect_buffer_full). Closing the loader's sockets then detaches each
// connection instead of ending it, which only stateful ones do.
func TestLoaderStateful(t *testing.T) {
	const n, msgs = 10, 20
	nd := nodetest.Start(t, node.Config{Conn: conn.Config{ReconnectBufferBytes: 2000}})
	admin := "http://" + nd.AdminAddr().String()
	r := startLoader(t, LoaderConfig{Addr: nd.Addr().String(), Conns: n, Concurrency: 4, KeepAlive: 200 * time.Millisecond, MessagePack: 0.5, Stateful: true})
	var st LoaderStats
	checkFor(t, 10*time.Second, "all connections open", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Open == n
	})
	for i := range msgs {
		body := `{"target":"bench","arguments":` + InvocationArgs("bench", int64(i), time.Now().UnixNano(), 256) + `}`
		resp, err := http.Post(admin+"/api/hubs/chat/:send", "application/json", bytes.NewBufferString(body))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
		checkFor(t, 10*time.Second, "deliveries", func() bool {
			st = r.ask(t, "stats").(LoaderStats)
			return st.Deliveries >= uint64((i+1)*n) || st.Open < n
		})
		time.Sleep(20 * time.Millisecond) // the acks reach the node
	}
	if st.Open != n || st.Deliveries != msgs*n || st.Dropped != 0 {
		t.Fatalf("open %d, deliveries %d, dropped %d (%v); want %d, %d, 0", st.Open, st.Deliveries, st.Dropped, st.Errors, n, msgs*n)
	}
	m, err := ScrapeMetrics(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if full := m[`edgeplane_closed_total{reason="reconnect_buffer_full"}`]; full != 0 {
		t.Fatalf("%v connections closed with reconnect_buffer_full: the loader's acks did not empty the buffers", full)
	}
	r.ask(t, "close")
	checkFor(t, 10*time.Second, "every connection detached", func() bool {
		m, err = ScrapeMetrics(admin + "/metrics")
		return err == nil && m["edgeplane_reconnect_detached_total"] == n
	})
}
