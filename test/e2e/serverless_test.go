package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// functionsNegotiate plays a serverless app's negotiate function (Azure
// Functions' SignalRConnectionInfo input binding, or the Management SDK's
// NegotiateAsync): POST /api/negotiate?user=U answers {url,
// accessToken}, the client endpoint https://{edge}/client/?hub=chat and a
// client access token as the SDK signs it: aud without the port, the hub
// lower-cased, the user in nameid (Functions) or asrs.s.uid (the SDK's
// negotiate), extra asrs.s.* claims from the query (coae, aeo).
func functionsNegotiate(t *testing.T, key string, n *node, hub string) *httptest.Server {
	host, port, _ := strings.Cut(n.client, ":")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/negotiate" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		claims := map[string]any{"aud": "http://" + host + "/client/?hub=" + strings.ToLower(hub)}
		if u := q.Get("user"); u != "" {
			claims["nameid"] = u
		}
		if u := q.Get("uid"); u != "" {
			claims["asrs.s.uid"] = u
		}
		if q.Get("aeo") != "" {
			claims["asrs.s.coae"] = "true"
			claims["asrs.s.aeo"] = q.Get("aeo")
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"url":         "http://" + host + ":" + port + "/client/?hub=" + strings.ToLower(hub),
			"accessToken": token(t, key, claims),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestServerlessClients: unmodified @microsoft/signalr clients, JSON and
// MessagePack on WebSockets and JSON on Long Polling, of a serverless app: the app's negotiate redirects them to
// the node's /client/?hub= endpoint with an Azure client access token;
// they connect (the node serves the hub itself, no --service-mode), their
// invocations reach a Functions-like webhook upstream that checks the
// signatures (connected, messages, disconnected, with the token's user)
// and answers them (the MessagePack client's as MessagePack, both ways:
// its binary argument comes back binary), and they receive REST sends: JSON bodies, and the
// Management SDK's MessagePack bodies, whose messagepack entry reaches the
// MessagePack client as the app serialized it (binary stays binary) and
// whose json entry the JSON client. A client whose token says to close on
// authentication expiry (asrs.s.coae) is closed when it expires; a token
// for another hub is refused with 401.
func TestServerlessClients(t *testing.T) {
	const key = "serverless-e2e-access-key-0123456789abcdef"
	up := newFunctionsUpstream(t, key)
	n := startNode(t, "epoll", "--hub", "chat", "--access-key", key,
		"--upstream", up.srv.URL+"/api/{hub}/{category}/{event};hub=chat")
	app := functionsNegotiate(t, key, n, "chat")
	js := startJS(t, app.URL, []jsClientSpec{
		{Name: "a", Hub: "api", Query: "user=alice", Targets: []string{"t"}, Invoke: map[string]any{"target": "Echo", "args": []any{map[string]any{"hello": []int{1, 2}}}}},
		{Name: "b", Hub: "api", Query: "uid=bob", Protocol: "messagepack", Targets: []string{"t"}, Invoke: map[string]any{"target": "Echo", "args": []any{map[string]any{"$bin": "AAEC/w=="}, "mp"}}},
		{Name: "c", Hub: "api", Query: "user=carol", Transport: "longpolling", Targets: []string{"t"}, Invoke: map[string]any{"target": "Echo", "args": []any{"lp"}}},
	})
	testutil.WaitUntil(t, 10*time.Second, "the invocations answered", func() bool { return len(js.find("", "invokeOk")) == 3 })
	if got := string(js.find("a", "invokeOk")[0].Args[0]); got != `{"hello":[1,2]}` {
		t.Errorf("a's Echo result %s", got)
	}
	if got := string(js.find("b", "invokeOk")[0].Args[0]); got != `{"$bin":"AAEC/w=="}` {
		t.Errorf("b's Echo result %s, want its binary argument back as binary (MessagePack both ways)", got)
	}
	if got := string(js.find("c", "invokeOk")[0].Args[0]); got != `"lp"` {
		t.Errorf("c's Echo result %s", got)
	}
	a, b, c := js.connID("a"), js.connID("b"), js.connID("c")

	// REST sends: a JSON body to a user, a MessagePack body to all.
	if c, body := n.restAPI("POST", "/api/hubs/chat/users/bob/:send?api-version=2022-06-01", `{"target":"t","arguments":["to bob"]}`, key); c != 202 {
		t.Fatalf("JSON send: %d %s", c, body)
	}
	rec, _ := hubproto.JSON.AppendInvocation(nil, "", "t", []byte(`["AQI=","both"]`))
	mpArgs := msgp.AppendString(msgp.AppendBytes(msgp.AppendArrayHeader(nil, 2), []byte{1, 2}), "both")
	mp, _ := hubproto.MessagePack.AppendInvocation(nil, "", "t", mpArgs)
	body := msgp.AppendMapHeader(nil, 2)
	body = msgp.AppendBytes(msgp.AppendString(body, "json"), rec)
	body = msgp.AppendBytes(msgp.AppendString(body, "messagepack"), mp)
	req, _ := http.NewRequest("POST", "http://"+n.admin+"/api/hubs/chat/:send?api-version=2022-06-01", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Authorization", "Bearer "+token(t, key, map[string]any{"aud": "http://" + n.admin + "/api/hubs/chat/:send"}))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("MessagePack body: %d %s", resp.StatusCode, resp.Header.Get("x-ms-error-code"))
	}
	testutil.WaitUntil(t, 10*time.Second, "the MessagePack body at both clients", func() bool {
		return len(js.messages("a", "t")) == 1 && len(js.messages("b", "t")) == 2 && len(js.messages("c", "t")) == 1
	})
	for _, name := range []string{"a", "c"} {
		if got := js.messages(name, "t"); !slices.Equal(got, []string{`["AQI=","both"]`}) {
			t.Errorf("JSON client %s got %q", name, got)
		}
	}
	if got := js.messages("b", "t"); !slices.Equal(got, []string{`["to bob"]`, `[{"$bin":"AQI="},"both"]`}) {
		t.Errorf("MessagePack client got %q, want the binary as binary", got)
	}

	js.stdin.Write([]byte("stop\n"))
	testutil.WaitUntil(t, 10*time.Second, "9 events at the upstream", func() bool { return len(up.list()) == 9 })
	for _, want := range []string{
		"connections/connected " + a + " alice", "messages/Echo " + a + " alice", "connections/disconnected " + a + " alice",
		"connections/connected " + b + " bob", "messages/Echo " + b + " bob", "connections/disconnected " + b + " bob",
		"connections/connected " + c + " carol", "messages/Echo " + c + " carol", "connections/disconnected " + c + " carol",
	} {
		if !slices.Contains(up.list(), want) {
			t.Errorf("upstream lacks %q; got %q", want, up.list())
		}
	}
	up.mu.Lock()
	bad := up.bad
	up.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d upstream requests failed the signature check", bad)
	}

	// Close on authentication expiry.
	exp := startJS(t, app.URL, []jsClientSpec{
		{Name: "e", Hub: "api", Query: "user=eve&aeo=" + strconv.FormatInt(time.Now().Unix()+8, 10)},
	})
	testutil.WaitUntil(t, 15*time.Second, "e closed at its authentication expiry", func() bool { return len(exp.find("e", "closed")) == 1 })
	if e := exp.find("e", "closed")[0].Error; e == nil || !strings.Contains(*e, "authentication expired") {
		t.Errorf("close error %v", e)
	}
	if v := n.metric(`edgeplane_closed_total{reason="auth_expired"}`); v != 1 {
		t.Errorf("auth_expired closes = %v", v)
	}

	// A token for another hub.
	req, _ = http.NewRequest("POST", "http://"+n.client+"/client/negotiate?hub=chat&negotiateVersion=1", nil)
	host, _, _ := strings.Cut(n.client, ":")
	req.Header.Set("Authorization", "Bearer "+token(t, key, map[string]any{"aud": "http://" + host + "/client/?hub=other"}))
	if resp, err = httpClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a token for another hub: %d, want 401", resp.StatusCode)
	}
}
