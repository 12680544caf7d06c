package service_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/poller"
	"github.com/edgeplane/edgeplane/service"
)

// serverToken signs a token as the SDK does for a server connection.
func serverToken(alg, secret, aud, nameid string) string {
	enc := base64.RawURLEncoding
	hdr, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
	pl, _ := json.Marshal(map[string]any{"nameid": nameid, "aud": aud, "exp": time.Now().Add(time.Hour).Unix()})
	msg := enc.EncodeToString(hdr) + "." + enc.EncodeToString(pl)
	var h func() hash.Hash = sha256.New
	if alg == "HS512" {
		h = sha512.New
	}
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

// rawServer is a server connection driven byte by byte.
type rawServer struct {
	t     *testing.T
	ws    *websocket.Conn
	msgs  chan serviceproto.Message
	close chan *websocket.CloseError
}

// openServer opens an app server connection of hub chathub on n and
// completes its handshake.
func openServer(t *testing.T, n *node.Node) *rawServer {
	t.Helper()
	app, _, err := dialServer(t, n, "chathub", serverToken("HS256", key, "http://127.0.0.1/server/?hub=chathub", "s"))
	if err != nil {
		t.Fatal(err)
	}
	app.send(serviceproto.Frame(&serviceproto.HandshakeRequest{Version: 1}))
	app.next()
	return app
}

func dialServer(t *testing.T, n *node.Node, hub, token string) (*rawServer, *http.Response, error) {
	t.Helper()
	h := http.Header{"X-ASRS-Server-Id": {"raw"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+"/server/?hub="+hub+"&cid=c1", h)
	if err != nil {
		return nil, resp, err
	}
	s := &rawServer{t: t, ws: ws, msgs: make(chan serviceproto.Message, 1024), close: make(chan *websocket.CloseError, 1)}
	done := make(chan struct{})
	t.Cleanup(func() { ws.Close(); <-done })
	go func() {
		defer close(done)
		var split serviceproto.Splitter
		for {
			op, data, err := ws.ReadMessage()
			if err != nil {
				ce, _ := err.(*websocket.CloseError)
				s.close <- ce
				return
			}
			if op != websocket.BinaryMessage {
				t.Errorf("a %d frame from the service", op)
			}
			split.Feed(data, func(body []byte) error {
				m, err := serviceproto.Parse(body)
				if err != nil {
					t.Errorf("the service sent a bad message: %v", err)
					return err
				}
				s.msgs <- m
				return nil
			})
		}
	}()
	return s, resp, nil
}

func (s *rawServer) send(b []byte) {
	if err := s.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

func (s *rawServer) next() serviceproto.Message {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(10 * time.Second):
		s.t.Fatal("no message from the service")
		return nil
	}
}

func (s *rawServer) closed() *websocket.CloseError {
	s.t.Helper()
	select {
	case ce := <-s.close:
		return ce
	case <-time.After(10 * time.Second):
		s.t.Fatal("the service did not close the connection")
		return nil
	}
}

func metrics(t *testing.T, n *node.Node) string {
	t.Helper()
	resp, err := hc.Get("http://" + n.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestServerAuth: an app server needs a token signed with the access key
// (HS256 or HS512) for its hub's /server/ audience; host and hub compare
// leniently (no port, any case); a client token, another hub's, a wrong
// key or none get 401; an unknown hub 404.
func TestServerAuth(t *testing.T) {
	n := startNode(t, service.Config{})
	aud := "http://127.0.0.1/server/?hub=chathub"
	for _, tc := range []struct {
		name, hub, token string
		status           int
	}{
		{"HS256", "chathub", serverToken("HS256", key, aud, "s"), http.StatusSwitchingProtocols},
		{"HS512, hub in another case", "ChatHub", serverToken("HS512", key, "HTTP://127.0.0.1:9/server?hub=CHATHUB", "s"), http.StatusSwitchingProtocols},
		{"no token", "chathub", "", http.StatusUnauthorized},
		{"wrong key", "chathub", serverToken("HS256", key+"x", aud, "s"), http.StatusUnauthorized},
		{"a client token", "chathub", serverToken("HS256", key, "http://127.0.0.1/client/?hub=chathub", "s"), http.StatusUnauthorized},
		{"another hub's token", "chathub", serverToken("HS256", key, "http://127.0.0.1/server/?hub=other", "s"), http.StatusUnauthorized},
		{"a new hub, learned", "newhub", serverToken("HS256", key, "http://127.0.0.1/server/?hub=newhub", "s"), http.StatusSwitchingProtocols},
		{"a new hub with a bad name", "bad%20name", serverToken("HS256", key, "http://127.0.0.1/server/?hub=bad%20name", "s"), http.StatusBadRequest},
		{"a new hub with our path's name", "client", serverToken("HS256", key, "http://127.0.0.1/server/?hub=client", "s"), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, resp, err := dialServer(t, n, tc.hub, tc.token)
			if resp == nil || resp.StatusCode != tc.status {
				t.Fatalf("status %v (err %v), want %d", resp, err, tc.status)
			}
			if s != nil {
				s.ws.Close()
			}
			if tc.status != http.StatusSwitchingProtocols && resp.Header.Get(conn.ErrorHeader) == "" {
				t.Fatal("no error detail header")
			}
		})
	}
	if m := metrics(t, n); !strings.Contains(m, `edgeplane_service_handshakes_total{result="unauthorized"} 4`) {
		t.Fatalf("unauthorized attempts not counted:\n%s", grep(m, "handshakes"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLearnedHubs: a node started without the app's hub learns it from
// the app's server connections, and its clients work; past MaxHubs a new
// hub is refused (404), an unauthenticated server never teaches one.
func TestLearnedHubs(t *testing.T) {
	n := nodetest.Start(t, node.Config{Hubs: []node.Hub{{Name: "other"}}, Service: &service.Config{MaxHubs: 1},
		Conn: conn.Config{AccessKey: key}})
	if _, resp, _ := dialServer(t, n, "stranger", serverToken("HS256", key+"x", "http://127.0.0.1/server/?hub=stranger", "s")); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated: %v", resp)
	}
	_, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})
	if !slices.Contains(n.Router().HubNames(), "chathub") {
		t.Fatalf("hubs %v", n.Router().HubNames())
	}
	if r := connect(t, base, "ChatHub", "alice").invoke("Echo", "learned")["result"]; r != "learned" {
		t.Fatalf("Echo in a learned hub: %v", r)
	}
	if _, resp, _ := dialServer(t, n, "third", serverToken("HS256", key, "http://127.0.0.1/server/?hub=third", "s")); resp == nil || resp.StatusCode != 404 {
		t.Fatalf("past MaxHubs: %v", resp)
	}
	if m := metrics(t, n); !strings.Contains(m, `edgeplane_service_server_connections{hub="chathub"} 5`) ||
		!strings.Contains(m, `edgeplane_connections{hub="chathub"} 1`) {
		t.Fatalf("learned hub's gauges:\n%s", grep(m, "chathub"))
	}
}

// TestServerHandshake: the HandshakeRequest is read from the stream
// however it is cut into WebSocket messages, and answered with the
// current success bytes; older layouts are accepted; another version is
// refused with an error text and closed.
func TestServerHandshake(t *testing.T) {
	n := startNode(t, service.Config{})
	tok := serverToken("HS256", key, "http://127.0.0.1/server/?hub=chathub", "s")
	for _, tc := range []struct {
		name, hex string
		ok        bool
	}{
		{"current, in pieces", "0897010100a00080c2", true},
		{"oldest layout", "03920101", true},
		{"version 2", "03920102", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := dialServer(t, n, "chathub", tok)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := hex.DecodeString(tc.hex)
			for _, part := range [][]byte{b[:2], b[2:]} {
				s.send(part)
			}
			resp, ok := s.next().(*serviceproto.HandshakeResponse)
			if !ok {
				t.Fatal("no HandshakeResponse")
			}
			if tc.ok {
				if resp.ErrorMessage != "" || hex.EncodeToString(serviceproto.Frame(resp)) != "059402a080c0" {
					t.Fatalf("response %+v", resp)
				}
				return
			}
			if !strings.Contains(resp.ErrorMessage, "version") {
				t.Fatalf("refusal %q", resp.ErrorMessage)
			}
			s.closed()
		})
	}
}

// TestServerKeepAlive: the service pings every PingInterval; a server
// connection that sends nothing for ServerTimeout is closed; one that
// sends is kept.
func TestServerKeepAlive(t *testing.T) {
	n := startNode(t, service.Config{PingInterval: time.Second, ServerTimeout: 5 * time.Second})
	tok := serverToken("HS256", key, "http://127.0.0.1/server/?hub=chathub", "s")
	quiet, _, err := dialServer(t, n, "chathub", tok)
	if err != nil {
		t.Fatal(err)
	}
	talker, _, err := dialServer(t, n, "chathub", tok)
	if err != nil {
		t.Fatal(err)
	}
	hs := serviceproto.Frame(&serviceproto.HandshakeRequest{Version: 1})
	quiet.send(hs)
	talker.send(hs)
	quiet.next()
	talker.next()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				talker.ws.WriteMessage(websocket.BinaryMessage, serviceproto.Frame(&serviceproto.Ping{}))
			}
		}
	}()
	pings := 0
	for pings < 2 {
		if _, ok := quiet.next().(*serviceproto.Ping); ok {
			pings++
		}
	}
	if ce := quiet.closed(); ce == nil || ce.Code != 1000 {
		t.Fatalf("quiet connection closed with %v", ce)
	}
	select {
	case ce := <-talker.close:
		t.Fatalf("the talking connection was closed too: %v", ce)
	default:
	}
	testutil.WaitUntil(t, 5*time.Second, "the quiet connection out of its hub", func() bool {
		return n.Service().ServerConnections("chathub") == 1
	})
	if m := metrics(t, n); !strings.Contains(m, `edgeplane_service_server_closed_total{reason="timeout"} 1`) {
		t.Fatalf("time-out not counted:\n%s", grep(m, "server_closed"))
	}
}

// TestServerBadInput: a connection whose first message is not the
// HandshakeRequest, one that sends a message that does not parse, one
// that sends text, one that never shakes hands: each is closed with its
// code, counted, and the others go on.
func TestServerBadInput(t *testing.T) {
	n := startNode(t, service.Config{})
	quick := startNode(t, service.Config{HandshakeTimeout: time.Second}) // for the silent one
	tok := serverToken("HS256", key, "http://127.0.0.1/server/?hub=chathub", "s")
	good, _, _ := dialServer(t, n, "chathub", tok)
	good.send(serviceproto.Frame(&serviceproto.HandshakeRequest{Version: 1}))
	good.next()
	hs := serviceproto.Frame(&serviceproto.HandshakeRequest{Version: 1})
	for _, tc := range []struct {
		name  string
		send  func(s *rawServer)
		code  int
		label string
	}{
		{"ping before the handshake", func(s *rawServer) { s.send(serviceproto.Frame(&serviceproto.Ping{})) }, 1002, "handshake_error"},
		{"malformed message", func(s *rawServer) { s.send(hs); s.next(); s.send([]byte{0x03, 0x93, 0x0b, 0xc0}) }, 1002, "protocol_error"},
		{"length prefix over 5 bytes", func(s *rawServer) { s.send(hs); s.next(); s.send([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}) }, 1002, "protocol_error"},
		{"text frame", func(s *rawServer) { s.ws.WriteMessage(websocket.TextMessage, []byte("hi")) }, 1003, "protocol_error"},
		{"silence", func(s *rawServer) {}, 1008, "handshake_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := n
			if tc.label == "handshake_timeout" {
				n = quick
			}
			s, _, err := dialServer(t, n, "chathub", tok)
			if err != nil {
				t.Fatal(err)
			}
			tc.send(s)
			if ce := s.closed(); ce == nil || ce.Code != tc.code {
				t.Fatalf("closed with %v, want %d", ce, tc.code)
			}
			testutil.WaitUntil(t, 5*time.Second, "counted", func() bool {
				return strings.Contains(metrics(t, n), `edgeplane_service_server_closed_total{reason="`+tc.label+`"}`)
			})
		})
	}
	good.send(serviceproto.Frame(&serviceproto.CheckGroupExistenceWithAck{Group: "g", AckID: 9}))
	if ack, ok := good.next().(*serviceproto.Ack); !ok || ack.AckID != 9 || ack.Status != serviceproto.AckNotFound {
		t.Fatalf("the good connection: %+v", ack)
	}
}

// TestWeakConnectionsHostNoClients: the Management SDK's Weak connections
// send but host no client; a client of such a hub is refused at its
// handshake.
func TestWeakConnectionsHostNoClients(t *testing.T) {
	n := startNode(t, service.Config{})
	a, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}, ConnectionType: serviceproto.ConnectionWeak})
	if ok, err := a.Hub("ChatHub").GroupExists(context.Background(), "none"); ok || err != nil {
		t.Fatalf("a weak connection's ack-able message: %v %v", ok, err)
	}
	code, body := post(t, base+"/ChatHub/negotiate?negotiateVersion=1", "")
	var redirect struct{ URL, AccessToken string }
	json.Unmarshal(body, &redirect)
	if code != 200 {
		t.Fatal(code)
	}
	u := strings.Replace(redirect.URL, "http://", "ws://", 1)
	ws, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + redirect.AccessToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	_, msg, _ := ws.ReadMessage()
	if !strings.Contains(string(msg), `"error":"no app server is connected for this hub"`) {
		t.Fatalf("handshake answer %q", msg)
	}
}

// TestServerBacklog: a server connection's traffic beyond the poller's
// per-connection queue waits in its backlog, in order, while the app
// server is slow to read; an app server that lets the backlog fill is
// closed as slow, the other connections unharmed.
func TestServerBacklog(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backlog int
		slow    bool
	}{
		{"a slow reader catches up", 64 << 20, false},
		{"a reader that stops is closed", 64 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodetest.Start(t, node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Conn: conn.Config{AccessKey: key},
				Service:      &service.Config{BacklogBytes: tc.backlog, InboxBytes: 256 << 20},
				PollerConfig: poller.Config{MaxQueueBytes: 16 << 10}})
			h := http.Header{"Authorization": {"Bearer " + serverToken("HS256", key, "http://127.0.0.1/server/?hub=chathub", "s")}}
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+"/server/?hub=chathub", h)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			ws.WriteMessage(websocket.BinaryMessage, serviceproto.Frame(&serviceproto.HandshakeRequest{Version: 1}))
			// Many ack-able requests, each answered with an Ack (a longer
			// one, with an error text, for the reader that stops), while
			// this side does not read: far more than the socket buffers and
			// the poller's queue hold.
			const batch, total = 20000, 100_000
			var b []byte
			for i := 1; i <= total; i++ {
				var m serviceproto.Message = &serviceproto.CheckGroupExistenceWithAck{Group: "g", AckID: int32(i)}
				if tc.slow {
					m = &serviceproto.GroupMemberQuery{Group: "g", AckID: int32(i)}
				}
				b = serviceproto.AppendFrame(b, m)
				if i%batch == 0 {
					if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
						break // closed as slow
					}
					b = b[:0]
				}
			}
			if tc.slow {
				testutil.WaitUntil(t, 30*time.Second, "closed as slow", func() bool {
					return strings.Contains(metrics(t, n), `edgeplane_service_server_closed_total{reason="slow_server"} 1`)
				})
				return
			}
			r := &msgReader{ws: ws}
			next := int32(1)
			if _, ok := r.next(t).(*serviceproto.HandshakeResponse); !ok {
				t.Fatal("no handshake response first")
			}
			for next <= int32(total) {
				ack, ok := r.next(t).(*serviceproto.Ack)
				if !ok || ack.AckID != next {
					t.Fatalf("ack %+v, want id %d", ack, next)
				}
				next++
			}
			if m := metrics(t, n); strings.Contains(m, `reason="slow_server"`) {
				t.Fatal("closed as slow")
			}
		})
	}
}

// msgReader reads service messages from a WebSocket, pings skipped.
type msgReader struct {
	ws      *websocket.Conn
	split   serviceproto.Splitter
	pending []serviceproto.Message
}

func (r *msgReader) next(t *testing.T) serviceproto.Message {
	t.Helper()
	for {
		for len(r.pending) > 0 {
			m := r.pending[0]
			r.pending = r.pending[1:]
			if _, ping := m.(*serviceproto.Ping); !ping {
				return m
			}
		}
		r.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := r.ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if err := r.split.Feed(data, func(body []byte) error {
			m, err := serviceproto.Parse(body)
			r.pending = append(r.pending, m)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// directClientToken signs a client access token as the SDK's negotiate
// does, for a client connecting to n's /client/ without an app.
func directClientToken(n *node.Node, claims map[string]any) string {
	claims["aud"] = "http://127.0.0.1/client/?hub=chathub"
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	tok, _ := auth.Sign(claims, []byte(key))
	return tok
}

// TestRelayOnTheWire: what the service sends an app server for a client
// (OpenConnection with .NET claim types, headers, the query string and
// the protocol, then the handshake as ConnectionData) and how it relays
// the app's bytes: the handshake response first, then only whole records
// (an older SDK's raw chunks cut records anywhere), in one frame per
// ConnectionData; the client's messages as ConnectionData; its close as
// CloseConnection.
func TestRelayOnTheWire(t *testing.T) {
	n := startNode(t, service.Config{})
	app := openServer(t, n)
	tok := directClientToken(n, map[string]any{"asrs.s.uid": "alice", "nameid": "alice", "role": []string{"a", "b"}, "level": 3})
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+"/client/?hub=chathub&asrs.op=%2Fchathub&access_token="+tok,
		http.Header{"X-Custom": {"v1", "v2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	open, ok := app.next().(*serviceproto.OpenConnection)
	if !ok {
		t.Fatal("no OpenConnection")
	}
	if open.Ext.Protocol != "json" || open.Ext.Has&serviceproto.ExtProtocol == 0 || open.QueryString != "?hub=chathub&asrs.op=%2Fchathub" {
		t.Fatalf("OpenConnection %+v", open)
	}
	want := []serviceproto.Claim{{Type: "asrs.s.uid", Value: "alice"}, {Type: serviceproto.ClaimNameIdentifier, Value: "alice"},
		{Type: serviceproto.ClaimRole, Value: "a"}, {Type: serviceproto.ClaimRole, Value: "b"}, {Type: "level", Value: "3"}}
	for _, w := range want {
		if !slices.Contains(open.Claims, w) {
			t.Fatalf("claims %v lack %v", open.Claims, w)
		}
	}
	var custom []string
	for _, h := range open.Headers {
		if h.Name == "X-Custom" {
			custom = h.Values
		}
		if h.Name == "Authorization" {
			t.Fatal("Authorization forwarded")
		}
	}
	if !slices.Equal(custom, []string{"v1", "v2"}) {
		t.Fatalf("headers %v", open.Headers)
	}
	hs, ok := app.next().(*serviceproto.ConnectionData)
	if !ok || hs.ConnectionID != open.ConnectionID || string(hs.Payload) != `{"protocol":"json","version":1}`+"\x1e" {
		t.Fatalf("handshake %+v", hs)
	}
	id := open.ConnectionID
	// The app's answer in raw chunks that cut records anywhere.
	rec := `{"type":1,"target":"t","arguments":["x"]}` + "\x1e"
	for _, chunk := range []string{"{}", "\x1e" + rec[:10], rec[10:] + rec, rec[:5]} {
		app.send(serviceproto.Frame(&serviceproto.ConnectionData{ConnectionID: id, Payload: []byte(chunk)}))
	}
	var frames []string
	for len(frames) < 2 {
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, m, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("client read: %v (got %q)", err, frames)
		}
		frames = append(frames, string(m))
	}
	if frames[0] != "{}\x1e" || frames[1] != rec+rec {
		t.Fatalf("client frames %q", frames)
	}
	app.send(serviceproto.Frame(&serviceproto.ConnectionData{ConnectionID: id, Payload: []byte(rec[5:])}))
	if _, m, _ := ws.ReadMessage(); string(m) != rec {
		t.Fatalf("the rest: %q", m)
	}
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":6}`+"\x1e"))
	if d, ok := app.next().(*serviceproto.ConnectionData); !ok || string(d.Payload) != `{"type":6}`+"\x1e" {
		t.Fatalf("client data %+v", d)
	}
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	if cl, ok := app.next().(*serviceproto.CloseConnection); !ok || cl.ConnectionID != id || cl.ErrorMessage.String != "" {
		t.Fatalf("close %+v", cl)
	}
}

// TestJoinRightAfterHandshake: an app that answers a client's handshake
// and adds it to a group at once (OnConnectedAsync, or a hub method the
// client invokes as soon as it is connected) gets Ok: the client is in
// its hub as soon as the app's handshake response is relayed, however
// soon that is after OpenConnection. The race it guards (the answer
// relayed before the client's event loop marked it open, conn's
// TestServiceRelayAcceptedBeforeOpen forces it) made joins NotFound.
func TestJoinRightAfterHandshake(t *testing.T) {
	n := startNode(t, service.Config{})
	app := openServer(t, n)
	tok := directClientToken(n, map[string]any{"nameid": "u"})
	for i := range 500 {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Addr().String()+"/client/?hub=chathub&access_token="+tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"json","version":1}`+"\x1e"))
		var open *serviceproto.OpenConnection
		for open == nil { // skipping the last client's CloseConnection
			open, _ = app.next().(*serviceproto.OpenConnection)
		}
		var answer []byte
		answer = append(answer, serviceproto.Frame(&serviceproto.ConnectionData{ConnectionID: open.ConnectionID, Payload: []byte("{}\x1e")})...)
		answer = append(answer, serviceproto.Frame(&serviceproto.JoinGroupWithAck{ConnectionID: open.ConnectionID, Group: "g", AckID: int32(i)})...)
		app.send(answer)
		for {
			m := app.next()
			if ack, ok := m.(*serviceproto.Ack); ok {
				if ack.AckID != int32(i) || ack.Status != serviceproto.AckOk {
					t.Fatalf("client %d: ack %+v, want Ok", i, ack)
				}
				break
			}
		}
		ws.Close()
	}
}
