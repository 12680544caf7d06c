package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
)

// BenchmarkFleetEchoRoundTrip: the cost of the relay between nodes. Two
// nodes on one real Redis, the app's server connections on A only, 500
// clients on each node; a hub method's round trip (one call in flight)
// from a client on A (relayed locally) and from a client on B (relayed
// to A over Redis and back):
//
//	go test -run XXX -bench FleetEchoRoundTrip -benchtime 3000x ./service/
func BenchmarkFleetEchoRoundTrip(b *testing.B) {
	ns := startFleet(b, 2)
	na, nb := ns[0], ns[1]
	app, err := sdkfake.Start(sdkfake.Config{Endpoint: "http://" + na.Addr().String(), AccessKey: key,
		Hubs: []*sdkfake.Hub{{Name: "ChatHub", Methods: map[string]sdkfake.Method{
			"Echo": func(c *sdkfake.Context, args []json.RawMessage) (any, error) { return args[0], nil },
		}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(app.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := app.WaitConnected(ctx, 5); err != nil {
		b.Fatal(err)
	}
	base, err := app.ListenNegotiate("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	waitHosted(b, nb)
	var got atomic.Int64
	connectN := func(at *node.Node) []*benchClient {
		var cs []*benchClient
		for i := 0; i < benchClients/2; i++ {
			cs = append(cs, benchConnectAt(b, base, at, &got))
		}
		b.Cleanup(func() {
			for _, c := range cs {
				c.ws.Close()
			}
		})
		return cs
	}
	onA, onB := connectN(na), connectN(nb)
	for _, tc := range []struct {
		name    string
		clients []*benchClient
	}{{"local", onA}, {"relayed", onB}} {
		b.Run(tc.name, func(b *testing.B) {
			d := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				d = append(d, tc.clients[i%len(tc.clients)].echo())
			}
			reportPercentiles(b, d)
		})
	}
}

// benchConnectAt is benchConnect with the app's redirect sent to node
// at.
func benchConnectAt(b *testing.B, base string, at *node.Node, got *atomic.Int64) *benchClient {
	b.Helper()
	code, body := postB(b, base+"/ChatHub/negotiate?negotiateVersion=1&user=u", "")
	var redirect struct{ URL, AccessToken string }
	if json.Unmarshal(body, &redirect) != nil || code != 200 {
		b.Fatalf("app negotiate %d %s", code, body)
	}
	u, _ := url.Parse(redirect.URL)
	u.Host = at.Addr().String()
	nu := *u
	nu.Path += "negotiate"
	code, body = postB(b, nu.String(), redirect.AccessToken)
	var neg struct{ ConnectionToken string }
	if json.Unmarshal(body, &neg) != nil || code != 200 {
		b.Fatalf("edge negotiate %d %s", code, body)
	}
	wu := *u
	wu.Scheme = "ws"
	wu.RawQuery += "&id=" + url.QueryEscape(neg.ConnectionToken)
	ws, _, err := websocket.DefaultDialer.Dial(wu.String(), http.Header{"Authorization": {"Bearer " + redirect.AccessToken}})
	if err != nil {
		b.Fatal(err)
	}
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	if _, hs, err := ws.ReadMessage(); err != nil || string(hs) != "{}\x1e" {
		b.Fatalf("handshake %q %v", hs, err)
	}
	c := &benchClient{ws: ws, waiting: map[string]chan struct{}{}, got: got}
	go c.read()
	return c
}
