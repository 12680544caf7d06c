package conn

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// serverlessServer is a node outside service mode with two hubs, one
// named with an application prefix.
func serverlessServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.AcceptRate == 0 {
		cfg.AcceptRate = -1
	}
	s, err := New(cfg, fanout.NewRouter([]string{"chat", "Contoso_ChatHub"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// negotiated negotiates at target and returns the connection token.
func negotiated(t *testing.T, s *Server, target, tok string) string {
	t.Helper()
	resp, body := exchange(t, s, negotiateReq(target, "Authorization: Bearer "+tok+"\r\n"))
	var n struct{ ConnectionToken string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &n) != nil || n.ConnectionToken == "" {
		t.Fatalf("negotiate %s: %d %s (%s)", target, resp.StatusCode, body, resp.Header.Get(ErrorHeader))
	}
	return n.ConnectionToken
}

// TestClientEndpointOutsideServiceMode: a serverless client handed
// {url: https://edge/client/?hub=chat, accessToken} by the Management SDK
// or Functions negotiates at /client/negotiate?hub= and connects at
// /client/?hub= with Azure's client token (aud .../client/?hub=chat, the
// user in asrs.s.uid or nameid); the node serves the hub itself: it
// answers the handshake, the connection is in the hub with its user, and
// its invocations and lifecycle go to the upstream. Hubs are matched
// ignoring case and with the application prefix; a hub the node does not
// have is 404, a token for another hub 401.
func TestClientEndpointOutsideServiceMode(t *testing.T) {
	up := &upstreamRec{}
	s := serverlessServer(t, Config{AccessKey: testKey, Upstream: up})
	tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat", "asrs.s.uid": "alice"})

	id := negotiated(t, s, "/client/negotiate?hub=CHAT&asrs.op=%2Fchat&negotiateVersion=1", tok)
	c, fc := connectHandshake(t, s, upgradeReq("/client/?hub=chat&asrs.op=%2Fchat&id="+id+"&access_token="+tok, ""))
	if _, payloads := serverFrames(t, afterHTTP(t, fc.output())); len(payloads) != 1 || payloads[0] != "{}\x1e" {
		t.Fatalf("the node must answer the handshake itself: %q", payloads)
	}
	if c.Hub() != "chat" || c.UserID() != "alice" || !s.router.Hub("chat").Lookup(c.ID()) || c.has(flRelay) {
		t.Fatalf("hub %q user %q in hub %v relayed %v", c.Hub(), c.UserID(), s.router.Hub("chat").Lookup(c.ID()), c.has(flRelay))
	}
	// A REST send reaches it; its invocation reaches the upstream.
	s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.User, Name: "alice", Payload: []byte(`{"type":1,"target":"t","arguments":[1]}` + "\x1e")})
	c.OnData(clientFrame(0x81, []byte(`{"type":1,"target":"Echo","arguments":["hi"]}`+"\x1e")))
	if _, payloads := serverFrames(t, afterHTTP(t, fc.output())); len(payloads) != 2 || payloads[1] != `{"type":1,"target":"t","arguments":[1]}`+"\x1e" {
		t.Fatalf("delivery: %q", payloads)
	}
	c.OnClose(nil)
	up.mu.Lock()
	var kinds []string
	for _, e := range up.events {
		if e.ConnID == c.ID() && e.Hub == "chat" && e.UserID == "alice" {
			kinds = append(kinds, strconv.Itoa(int(e.Kind)))
		}
	}
	up.mu.Unlock()
	want := []string{strconv.Itoa(int(backplane.EventConnected)), strconv.Itoa(int(backplane.EventInvocation)), strconv.Itoa(int(backplane.EventDisconnected))}
	if strings.Join(kinds, ",") != strings.Join(want, ",") {
		t.Fatalf("upstream events %v, want connected, invocation, disconnected", kinds)
	}

	// skipNegotiation with nameid, any case of the path.
	tok = clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat", "nameid": "bob"})
	c, _ = connectHandshake(t, s, upgradeReq("/Client/?hub=chat&access_token="+tok, ""))
	if c.UserID() != "bob" {
		t.Fatalf("user %q", c.UserID())
	}
	c.OnClose(nil)

	// The SDK's application prefix, lower-cased; or the application
	// parameter as the REST API takes it.
	app := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=contoso_chathub"})
	negotiated(t, s, "/client/negotiate?hub=contoso_chathub&negotiateVersion=1", app)
	negotiated(t, s, "/client/negotiate?hub=chathub&application=contoso&negotiateVersion=1", app)

	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"unknown hub", negotiateReq("/client/negotiate?hub=nope", "Authorization: Bearer "+tok+"\r\n"), http.StatusNotFound},
		{"no hub", negotiateReq("/client/negotiate", "Authorization: Bearer "+tok+"\r\n"), http.StatusNotFound},
		{"other path", negotiateReq("/client/other?hub=chat", "Authorization: Bearer "+tok+"\r\n"), http.StatusNotFound},
		{"token for another hub", negotiateReq("/client/negotiate?hub=contoso_chathub", "Authorization: Bearer "+tok+"\r\n"), http.StatusUnauthorized},
		{"token for another host", negotiateReq("/client/negotiate?hub=chat", "Authorization: Bearer "+clientToken(t, map[string]any{"aud": "https://other.example.com/client/?hub=chat"})+"\r\n"), http.StatusUnauthorized},
		{"no token", upgradeReq("/client/?hub=chat", ""), http.StatusUnauthorized},
		{"GET negotiate", strings.Replace(negotiateReq("/client/negotiate?hub=chat", ""), "POST", "GET", 1), http.StatusMethodNotAllowed},
	} {
		if resp, _ := exchange(t, s, tc.req); resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d (%s)", tc.name, resp.StatusCode, tc.status, resp.Header.Get(ErrorHeader))
		}
	}

	// An open node serves the endpoints too.
	open := serverlessServer(t, Config{})
	if resp, _ := exchange(t, open, negotiateReq("/client/negotiate?hub=chat&negotiateVersion=1", "")); resp.StatusCode != http.StatusOK {
		t.Fatalf("open node: %d", resp.StatusCode)
	}
}

// TestClientEndpointLeavesAHubAtClient: a hub whose own path is /client
// is still reached there when the hub parameter names no hub.
func TestClientEndpointLeavesAHubAtClient(t *testing.T) {
	s, err := New(Config{AcceptRate: -1, HubPaths: map[string]string{"app": "/client"}}, fanout.NewRouter([]string{"app"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if resp, _ := exchange(t, s, negotiateReq("/client/negotiate?negotiateVersion=1&hub=x", "")); resp.StatusCode != http.StatusOK {
		t.Fatalf("hub at /client: %d", resp.StatusCode)
	}
}

// TestClientTokenTransports: asrs.s.htt limits the transports: negotiate
// lists only those the token allows, and a WebSocket upgrade, SSE stream
// or first poll it does not allow is refused (404, as ASP.NET Core
// answers a transport it does not serve); a value that is no set of
// transports is an invalid token.
func TestClientTokenTransports(t *testing.T) {
	s := serverlessServer(t, Config{AccessKey: testKey})
	for _, tc := range []struct {
		htt        any
		negotiate  int
		websockets bool
		sse, poll  bool
	}{
		{"1", 200, true, false, false},
		{7, 200, true, true, true},
		{"6", 200, false, true, true}, // SSE and Long Polling only
		{"2", 200, false, true, false},
		{"4", 200, false, false, true},
		{"x", 401, false, false, false},
		{"0", 401, false, false, false},
		{"8", 401, false, false, false},
	} {
		tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat", "asrs.s.htt": tc.htt})
		resp, body := exchange(t, s, negotiateReq("/client/negotiate?hub=chat&negotiateVersion=1", "Authorization: Bearer "+tok+"\r\n"))
		if resp.StatusCode != tc.negotiate {
			t.Errorf("htt %v: negotiate %d, want %d", tc.htt, resp.StatusCode, tc.negotiate)
			continue
		}
		if tc.negotiate != 200 {
			continue
		}
		if got := strings.Contains(body, `"WebSockets"`); got != tc.websockets {
			t.Errorf("htt %v: negotiate lists WebSockets %v: %s", tc.htt, got, body)
		}
		resp, _ = exchange(t, s, upgradeReq("/client/?hub=chat&access_token="+tok, ""))
		if want := map[bool]int{true: 101, false: 404}[tc.websockets]; resp.StatusCode != want {
			t.Errorf("htt %v: upgrade %d, want %d", tc.htt, resp.StatusCode, want)
		}
		for _, h := range []struct {
			name, accept string
			allowed      bool
		}{{"SSE", "Accept: text/event-stream\r\n", tc.sse}, {"long polling", "", tc.poll}} {
			id := negotiated(t, s, "/client/negotiate?hub=chat&negotiateVersion=1", tok)
			resp, _ := exchange(t, s, "GET /client/?hub=chat&id="+id+"&access_token="+tok+" HTTP/1.1\r\nHost: edge.example.com\r\n"+h.accept+"\r\n")
			if want := map[bool]int{true: 200, false: 404}[h.allowed]; resp.StatusCode != want {
				t.Errorf("htt %v: %s %d, want %d", tc.htt, h.name, resp.StatusCode, want)
			}
		}
	}
}

// TestClientTokenHandshakeTimeout: asrs.s.cht sets the connection's
// handshake time-out (1-30 s, the SDK's range; other values leave the
// node's), shorter or longer than the node's.
func TestClientTokenHandshakeTimeout(t *testing.T) {
	for _, tc := range []struct {
		cht      any
		deadline int64 // seconds after opening
	}{
		{"3", 3}, {"20", 20}, {25, 25}, {"0", 10}, {"31", 10}, {"x", 10}, {nil, 10},
	} {
		s := clockServer(t, Config{AccessKey: testKey, HandshakeTimeout: 10 * time.Second, KeepAliveInterval: time.Hour, ClientTimeout: time.Hour}, 100)
		tok := clientToken(t, map[string]any{"asrs.s.cht": tc.cht})
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		c.OnData([]byte(upgradeReq("/chat?access_token="+tok, "")))
		if c.state.Load() != stHandshake {
			t.Fatalf("cht %v: upgrade %q", tc.cht, fc.output())
		}
		if next := tickAt(s, c, 100+tc.deadline-1); fc.isShutdown() || next != 100+tc.deadline {
			t.Errorf("cht %v: a second before the deadline: closed %v, next %d", tc.cht, fc.isShutdown(), next)
		}
		if tickAt(s, c, 100+tc.deadline); !fc.isShutdown() {
			t.Errorf("cht %v: open at its %d s deadline", tc.cht, tc.deadline)
		}
		c.OnClose(nil)
		if _, ok := s.policies.Load(c); ok {
			t.Errorf("cht %v: policy kept after the close", tc.cht)
		}
	}
	// A shorter time-out moves the connection on the wheel.
	s := clockServer(t, Config{AccessKey: testKey, HandshakeTimeout: 10 * time.Second, KeepAliveInterval: time.Hour, ClientTimeout: time.Hour}, 100)
	c := s.OnOpen(&fakeConn{}).(*Conn)
	defer c.OnClose(nil)
	c.OnData([]byte(upgradeReq("/chat?access_token="+clientToken(t, map[string]any{"asrs.s.cht": "2"}), "")))
	if c.wslot != 102%wheelSlots+1 {
		t.Fatalf("scheduled in slot %d, want second 102's", c.wslot-1)
	}
}

// TestClientTokenCloseOnExpiry: asrs.s.coae with asrs.s.aeo closes the
// connection when the user's authentication expires (a SignalR Close
// with allowReconnect, then 1000), counted as auth_expired; without aeo
// at the token's exp; a token already past it is refused; without coae
// nothing closes.
func TestClientTokenCloseOnExpiry(t *testing.T) {
	cfg := Config{AccessKey: testKey, KeepAliveInterval: time.Hour, ClientTimeout: time.Hour}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		closes bool
	}{
		{"aeo", map[string]any{"asrs.s.coae": "true", "asrs.s.aeo": strconv.FormatInt(time.Now().Unix()+5, 10)}, true},
		{"exp", map[string]any{"asrs.s.coae": true, "exp": time.Now().Unix() + 5}, true},
		{"no coae", map[string]any{"asrs.s.aeo": strconv.FormatInt(time.Now().Unix()+5, 10), "exp": time.Now().Unix() + 5}, false},
	} {
		s := clockServer(t, cfg, 100)
		c, fc := connectHandshake(t, s, upgradeReq("/chat?access_token="+clientToken(t, tc.claims), ""))
		if tickAt(s, c, 103); fc.isShutdown() {
			t.Fatalf("%s: closed before the expiry", tc.name)
		}
		next := tickAt(s, c, 106)
		if fc.isShutdown() != tc.closes {
			t.Fatalf("%s: closed %v after the expiry, want %v", tc.name, fc.isShutdown(), tc.closes)
		}
		if !tc.closes {
			c.OnClose(nil)
			continue
		}
		if next != 107 {
			t.Errorf("%s: next %d", tc.name, next)
		}
		f := readServerFrames(t, afterHTTP(t, fc.output()))
		if len(f) != 3 || f[1].payload != `{"type":7,"error":"authentication expired","allowReconnect":true}`+"\x1e" ||
			f[2].op != byte(wsframe.OpClose) || f[2].payload != "\x03\xe8authentication expired" {
			t.Fatalf("%s: frames %q", tc.name, f)
		}
		if got := s.M.closed[causeAuthExpired.idx].Get(); got != 1 {
			t.Errorf("%s: auth_expired counted %d times", tc.name, got)
		}
		c.OnClose(nil)
		if _, ok := s.policies.Load(c); ok {
			t.Errorf("%s: policy kept after the close", tc.name)
		}
	}
	// The expiry is on the wheel: the tick after the handshake comes by it.
	s := clockServer(t, cfg, 100)
	c, _ := connectHandshake(t, s, upgradeReq("/chat?access_token="+clientToken(t, map[string]any{"asrs.s.coae": "true", "asrs.s.aeo": strconv.FormatInt(time.Now().Unix()+5, 10)}), ""))
	defer c.OnClose(nil)
	if next := tickAt(s, c, 101); next > 105 {
		t.Fatalf("next tick %d, after the expiry (105)", next)
	}

	// A long-polling connection too (its own tick).
	s = clockServer(t, cfg, 100)
	tok := clientToken(t, map[string]any{"asrs.s.coae": "true", "asrs.s.aeo": strconv.FormatInt(time.Now().Unix()+5, 10)})
	id := negotiated(t, s, "/chat/negotiate?negotiateVersion=1", tok)
	target := "/chat?id=" + id + "&access_token=" + tok
	if resp, _ := exchange(t, s, "GET "+target+" HTTP/1.1\r\nHost: edge.example.com\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	hs := `{"protocol":"json","version":1}` + "\x1e"
	if resp, _ := exchange(t, s, "POST "+target+" HTTP/1.1\r\nHost: edge.example.com\r\nContent-Length: "+strconv.Itoa(len(hs))+"\r\n\r\n"+hs); resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	ti, err := s.signer.open("chat", id, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lp := s.httpConns.get(encodeID(ti.id))
	if lp == nil || lp.state.Load() != stOpen {
		t.Fatal("no open long-polling connection")
	}
	if next := tickAt(s, lp, 101); lp.state.Load() != stOpen || next > 105 {
		t.Fatalf("long polling before the expiry: state %d, next %d (want by 105)", lp.state.Load(), next)
	}
	tickAt(s, lp, 105)
	if lp.state.Load() != stClosed || s.M.closed[causeAuthExpired.idx].Get() != 1 {
		t.Fatalf("long polling at the expiry: state %d, auth_expired %d", lp.state.Load(), s.M.closed[causeAuthExpired.idx].Get())
	}

	s = serverlessServer(t, Config{AccessKey: testKey})
	past := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat", "asrs.s.coae": "true", "asrs.s.aeo": strconv.FormatInt(time.Now().Unix()-1, 10)})
	for _, req := range []string{negotiateReq("/client/negotiate?hub=chat", "Authorization: Bearer "+past+"\r\n"), upgradeReq("/client/?hub=chat&access_token="+past, "")} {
		if resp, _ := exchange(t, s, req); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get(ErrorHeader), "authentication expired") {
			t.Errorf("expired authentication: %d %q", resp.StatusCode, resp.Header.Get(ErrorHeader))
		}
	}
}
