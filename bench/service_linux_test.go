package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/service"
)

// TestLoaderServiceMode: load clients following a service-mode app's
// negotiate redirect (half of them MessagePack) open through /client/ on
// a real node, each relayed to the fake app, which hosts them all; the
// app's broadcast (Clients.All) reaches every one with its sequence
// number and send time, the node framing the app's own payload of each
// protocol once and converting nothing.
func TestLoaderServiceMode(t *testing.T) {
	const n = 20
	nd := nodetest.Start(t, node.Config{Hubs: []node.Hub{{Name: "chat"}}, Service: &service.Config{}})
	admin := "http://" + nd.AdminAddr().String()
	app, err := StartServiceApp(context.Background(), nd.Addr().String(), "chat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	if !strings.Contains(app.Redirect.URL, "/client/?hub=chat") {
		t.Fatalf("redirect %+v", app.Redirect)
	}
	r := startLoader(t, LoaderConfig{Addr: nd.Addr().String(), Conns: n, Concurrency: 8, KeepAlive: 200 * time.Millisecond,
		MessagePack: 0.5, Service: app.redirect()})
	var st LoaderStats
	checkFor(t, 10*time.Second, "all connections open", func() bool {
		st = r.ask(t, "stats").(LoaderStats)
		return st.Open == n
	})
	if st.Failures != 0 || st.MessagePack != n/2 {
		t.Fatalf("%d failures (%v), %d MessagePack; want none and %d", st.Failures, st.Errors, st.MessagePack, n/2)
	}
	if s := app.app.Stats("chat"); s.Clients != n || s.Connected != 5 {
		t.Fatalf("the app hosts %d clients on %d connections, want %d on 5", s.Clients, s.Connected, n)
	}
	time.Sleep(500 * time.Millisecond) // client pings of both protocols, relayed
	if err := app.Broadcast("bench", InvocationArgs("bench", 0, time.Now().UnixNano(), 64)); err != nil {
		t.Fatal(err)
	}
	m := waitBroadcast(t, r, n, admin)
	if j, mp, tr := m[`edgeplane_fanout_encodes_total{protocol="json"}`], m[`edgeplane_fanout_encodes_total{protocol="messagepack"}`],
		m["edgeplane_fanout_transcoded_total"]; j != 1 || mp != 1 || tr != 0 {
		t.Fatalf("encodes: json %v, messagepack %v, converted %v; want 1, 1, 0", j, mp, tr)
	}
}

// TestServiceChildArgs: a child gets the redirect on its command line,
// and its requests carry the token, to /client/ with the redirect's query
// (negotiateVersion once, as @microsoft/signalr does).
func TestServiceChildArgs(t *testing.T) {
	in := LoaderConfig{Addr: "127.0.0.1:1", Conns: 3, SrcIPs: []string{"127.0.0.2"},
		Service: &ServiceRedirect{URL: "http://127.0.0.1:1/client/?hub=chat&asrs.op=%2Fchat&negotiateVersion=1", AccessToken: "tok"}}
	out, err := ParseChildArgs(ChildArgs(in))
	if err != nil || out.Service == nil || *out.Service != *in.Service {
		t.Fatalf("round trip: %+v, %v", out.Service, err)
	}
	if plain, _ := ParseChildArgs(ChildArgs(LoaderConfig{Addr: "127.0.0.1:1"})); plain.Service != nil {
		t.Fatalf("a plain child got %+v", plain.Service)
	}
	neg := string(out.negotiateRequest("h:1"))
	if !strings.HasPrefix(neg, "POST /client/negotiate?hub=chat&asrs.op=%2Fchat&negotiateVersion=1 HTTP/1.1\r\n") ||
		!strings.Contains(neg, "\r\nAuthorization: Bearer tok\r\n") {
		t.Fatalf("negotiate %q", neg)
	}
	out.Service.URL = "http://127.0.0.1:1/client/?hub=chat"
	neg = string(out.negotiateRequest("h:1"))
	up := string(out.upgradeRequest("h:1", "ct"))
	if !strings.HasPrefix(neg, "POST /client/negotiate?hub=chat&negotiateVersion=1 HTTP/1.1\r\n") ||
		!strings.HasPrefix(up, "GET /client/?hub=chat&id=ct HTTP/1.1\r\n") || !strings.Contains(up, "\r\nAuthorization: Bearer tok\r\n") {
		t.Fatalf("negotiate %q, upgrade %q", neg, up)
	}
	twins := ServiceTwins([]SystemSpec{{Name: "edgeplane-epoll", Kind: KindEdgeplane}, {Name: "baseline", Kind: KindBaseline}})
	var names []string
	for _, s := range twins {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"edgeplane-epoll", "edgeplane-epoll-svc", "baseline"}) || !twins[1].Service || systemKey(twins[1]) == systemKey(twins[0]) {
		t.Fatalf("twins %+v", twins)
	}
}
