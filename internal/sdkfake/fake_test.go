package sdkfake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"hash"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

const testKey = "fake-access-key-0123456789abcdef0123456789"

func echoHub() *Hub {
	return &Hub{Name: "ChatHub", Methods: map[string]Method{
		"Echo": func(c *Context, args []json.RawMessage) (any, error) { return args[0], nil },
		"Fail": func(c *Context, args []json.RawMessage) (any, error) { return nil, errors.New("secret") },
		"Boom": func(c *Context, args []json.RawMessage) (any, error) { return nil, &HubError{Message: "boom"} },
		"Join": func(c *Context, args []json.RawMessage) (any, error) {
			return c.Hub.AddToGroup(context.Background(), c.ConnectionID, "g")
		},
		"Abort": func(c *Context, args []json.RawMessage) (any, error) { c.Abort(); return nil, nil },
	}}
}

func startApp(t *testing.T, p *peer, c Config) *App {
	t.Helper()
	c.Endpoint = p.srv.URL
	if c.AccessKey == "" {
		c.AccessKey = testKey
	}
	if c.Hubs == nil {
		c.Hubs = []*Hub{echoHub()}
	}
	a, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// verifyJWT checks a token as the service must: signature with the
// key's UTF-8 bytes, and returns header and payload.
func verifyJWT(t *testing.T, tok, key string) (hdr, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	enc := base64.RawURLEncoding
	hb, _ := enc.DecodeString(parts[0])
	pb, _ := enc.DecodeString(parts[1])
	json.Unmarshal(hb, &hdr)
	json.Unmarshal(pb, &payload)
	var h func() hash.Hash = sha256.New
	if hdr["alg"] == "HS512" {
		h = sha512.New
	}
	m := hmac.New(h, []byte(key))
	m.Write([]byte(parts[0] + "." + parts[1]))
	if enc.EncodeToString(m.Sum(nil)) != parts[2] {
		t.Fatalf("bad signature on %s", tok)
	}
	return hdr, payload
}

// TestConnectsAsTheSDK: five connections per hub, each to
// /server/?hub={lower-cased}&cid={GUID} with the SDK's headers and token,
// each opening with the current SDK's HandshakeRequest bytes.
func TestConnectsAsTheSDK(t *testing.T) {
	for _, alg := range []string{"HS256", "HS512"} {
		t.Run(alg, func(t *testing.T) {
			p := newPeer(t)
			a := startApp(t, p, Config{Algorithm: alg, ServerID: "host_0123"})
			guid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
			cids := map[string]bool{}
			for i := 0; i < 5; i++ {
				pc := p.accept(t)
				r := pc.req
				if r.URL.Path != "/server/" || r.URL.Query().Get("hub") != "chathub" {
					t.Fatalf("URL %s", r.URL)
				}
				cid := r.URL.Query().Get("cid")
				if !guid.MatchString(cid) || cids[cid] {
					t.Fatalf("cid %q (seen %v)", cid, cids)
				}
				cids[cid] = true
				if got := r.Header.Get("X-ASRS-Server-Id"); got != "host_0123" {
					t.Fatalf("X-ASRS-Server-Id %q", got)
				}
				if r.Header.Get("Asrs-User-Agent") == "" {
					t.Fatal("no Asrs-User-Agent")
				}
				tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
				if !ok {
					t.Fatalf("Authorization %q", r.Header.Get("Authorization"))
				}
				hdr, pl := verifyJWT(t, tok, testKey)
				host := strings.Split(strings.TrimPrefix(p.srv.URL, "http://"), ":")[0]
				if hdr["alg"] != alg || hdr["typ"] != "JWT" || pl["nameid"] != "host_0123" ||
					pl["aud"] != "http://"+host+"/server/?hub=chathub" || pl["exp"] == nil {
					t.Fatalf("token header %v payload %v", hdr, pl)
				}
				testutil.WaitUntil(t, 5*time.Second, "handshake request", func() bool { return len(pc.messages()) > 0 })
				pc.mu.Lock()
				first := pc.raw[0]
				pc.mu.Unlock()
				if got := hex.EncodeToString(first); got != "0897010100a00080c2" {
					t.Fatalf("first bytes %s, want the 7-item HandshakeRequest 0897010100a00080c2", got)
				}
			}
			if err := a.WaitConnected(ctxT(t, 5*time.Second), 5); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestHandshakeFailures: an error text, another message first, or no
// answer within the handshake time-out: not connected, and the slot
// tries again.
func TestHandshakeFailures(t *testing.T) {
	for name, answer := range map[string]serviceproto.Message{
		"error":         &serviceproto.HandshakeResponse{ErrorMessage: "Version mismatch."},
		"other message": &serviceproto.Ping{},
		"silence":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			p := newPeer(t)
			p.setHandshake(answer)
			a := startApp(t, p, fast(Config{ConnectionsPerHub: 1, HandshakeTimeout: 200 * time.Millisecond}))
			p.accept(t)
			p.accept(t) // it tried again
			if n := a.Stats("ChatHub").Connected; n != 0 {
				t.Fatalf("%d connected", n)
			}
		})
	}
}

// TestPingOnReceive: the app pings only when it receives something and
// its last ping is KeepAliveInterval old, with its client counts; an
// echo ping comes back as it was; silence longer than ServiceTimeout
// drops the connection.
func TestPingOnReceive(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, fast(Config{ConnectionsPerHub: 1, KeepAliveInterval: time.Second, ServiceTimeout: time.Hour}))
	pc := p.ready(t)
	waitUp(t, a)
	pings := func() (n int) {
		for _, m := range pc.messages() {
			if ping, ok := m.(*serviceproto.Ping); ok && len(ping.Messages) == 4 {
				n++
			}
		}
		return n
	}
	time.Sleep(1200 * time.Millisecond) // silence: no ping however long
	if n := pings(); n != 0 {
		t.Fatalf("%d pings without receiving anything", n)
	}
	pc.send(&serviceproto.Ping{})
	m := pc.wait(t, "a ping after receiving one", func(m serviceproto.Message) bool {
		ping, ok := m.(*serviceproto.Ping)
		return ok && len(ping.Messages) == 4
	}).(*serviceproto.Ping)
	if m.Messages[0] != "#clientInHub" || m.Messages[1] != "0" || m.Messages[2] != "#client" || m.Messages[3] != "0" {
		t.Fatalf("ping %q", m.Messages)
	}
	pc.send(&serviceproto.Ping{}) // too soon: no second ping
	time.Sleep(20 * time.Millisecond)
	if n := pings(); n != 1 {
		t.Fatalf("%d pings, want 1", n)
	}
	pc.send(&serviceproto.Ping{Messages: []string{"echo", "42"}})
	pc.wait(t, "the echo back", func(m serviceproto.Message) bool {
		ping, ok := m.(*serviceproto.Ping)
		return ok && len(ping.Messages) == 2 && ping.Messages[0] == "echo" && ping.Messages[1] == "42"
	})
}

func TestServiceTimeout(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, fast(Config{ConnectionsPerHub: 1, KeepAliveInterval: 50 * time.Millisecond, ServiceTimeout: 200 * time.Millisecond}))
	p.accept(t)
	testutil.WaitUntil(t, 5*time.Second, "connected", func() bool { return a.Stats("ChatHub").Connected == 1 })
	p.accept(t) // dropped after the silence, and back
}

// openClient opens a client on pc and completes its handshake.
func openClient(t *testing.T, pc *peerConn, id, protocol string, claims ...serviceproto.Claim) {
	t.Helper()
	m := &serviceproto.OpenConnection{ConnectionID: id, Claims: claims, QueryString: "?hub=chathub"}
	if protocol != "" {
		m.Ext = m.Ext.WithProtocol(protocol)
	}
	pc.send(m, &serviceproto.ConnectionData{ConnectionID: id, Payload: []byte(`{"protocol":"` + protocol + `","version":1}` + "\x1e")})
}

func dataFor(id string, typ serviceproto.DataMessageType) func(serviceproto.Message) bool {
	return func(m serviceproto.Message) bool {
		d, ok := m.(*serviceproto.ConnectionData)
		return ok && d.ConnectionID == id && d.Ext.DataType == typ
	}
}

// TestClientLifecycle: the handshake answer, an invocation's completion
// (result, HubException text, hidden error, unknown method), each record
// its own typed ConnectionData; the app's Abort ends in CloseConnection
// with a nil error after OnDisconnected.
func TestClientLifecycle(t *testing.T) {
	p := newPeer(t)
	disconnected := make(chan string, 4)
	h := echoHub()
	h.OnDisconnected = func(c *Context, err error) { disconnected <- c.ConnectionID }
	h.OnConnected = func(c *Context) error {
		if c.ConnectionID == "c1" && c.UserID != "alice" || c.ConnectionID == "c1" && (c.Claim(serviceproto.ClaimNameIdentifier) != "alice" || c.Claim(serviceproto.ClaimUserID) != "") {
			t.Errorf("context: user %q claims %v", c.UserID, c.Claims)
		}
		return nil
	}
	a := startApp(t, p, Config{ConnectionsPerHub: 1, Hubs: []*Hub{h}})
	pc := p.ready(t)
	waitUp(t, a)
	openClient(t, pc, "c1", "json",
		serviceproto.Claim{Type: serviceproto.ClaimUserID, Value: "alice"},
		serviceproto.Claim{Type: serviceproto.ClaimNameIdentifier, Value: "alice"})
	hs := pc.wait(t, "handshake answer", dataFor("c1", serviceproto.DataHandshake)).(*serviceproto.ConnectionData)
	if string(hs.Payload) != "{}\x1e" {
		t.Fatalf("handshake answer %q", hs.Payload)
	}
	for _, tc := range []struct{ rec, want string }{
		{`{"type":1,"invocationId":"1","target":"Echo","arguments":[{"a":1}]}`, `{"type":3,"invocationId":"1","result":{"a":1}}`},
		{`{"type":1,"invocationId":"2","target":"Boom","arguments":[]}`, `{"type":3,"invocationId":"2","error":"boom"}`},
		{`{"type":1,"invocationId":"3","target":"Fail","arguments":[]}`, `{"type":3,"invocationId":"3","error":"An unexpected error occurred invoking 'Fail' on the server."}`},
		{`{"type":1,"invocationId":"4","target":"Nope","arguments":[]}`, `{"type":3,"invocationId":"4","error":"Unknown hub method 'Nope'"}`},
	} {
		pc.send(&serviceproto.ConnectionData{ConnectionID: "c1", Payload: []byte(tc.rec + "\x1e")})
		pc.wait(t, tc.want, func(m serviceproto.Message) bool {
			d, ok := m.(*serviceproto.ConnectionData)
			return ok && d.Ext.DataType == serviceproto.DataInvocation && string(d.Payload) == tc.want+"\x1e"
		})
	}
	if a.Stats("ChatHub").Clients != 1 {
		t.Fatal("client not hosted")
	}
	pc.send(&serviceproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":1,"target":"Abort","arguments":[]}` + "\x1e")})
	cl := pc.wait(t, "CloseConnection", func(m serviceproto.Message) bool {
		c, ok := m.(*serviceproto.CloseConnection)
		return ok && c.ConnectionID == "c1"
	}).(*serviceproto.CloseConnection)
	if cl.ErrorMessage.Valid {
		t.Fatalf("close error %q, want nil", cl.ErrorMessage.String)
	}
	select {
	case id := <-disconnected:
		if id != "c1" {
			t.Fatal(id)
		}
	default:
		t.Fatal("CloseConnection before OnDisconnected")
	}
	// The service closing a client: OnDisconnected, nothing back.
	openClient(t, pc, "c2", "json")
	pc.wait(t, "c2 handshake", dataFor("c2", serviceproto.DataHandshake))
	pc.send(&serviceproto.CloseConnection{ConnectionID: "c2"})
	if id := <-disconnected; id != "c2" {
		t.Fatal(id)
	}
	time.Sleep(50 * time.Millisecond)
	for _, m := range pc.messages() {
		if c, ok := m.(*serviceproto.CloseConnection); ok && c.ConnectionID == "c2" {
			t.Fatal("CloseConnection sent back for a close the service made")
		}
	}
}

// TestNoProtocolNeverServed: an OpenConnection without the ext protocol
// gets no handshake answer (current SDKs throw in GetProtocol(null)).
func TestNoProtocolNeverServed(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, Config{ConnectionsPerHub: 1})
	pc := p.ready(t)
	waitUp(t, a)
	pc.send(&serviceproto.OpenConnection{ConnectionID: "c1"},
		&serviceproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"protocol":"json","version":1}` + "\x1e")})
	testutil.WaitUntil(t, 5*time.Second, "counted", func() bool { return a.Stats("ChatHub").ProtocolMissing == 1 })
	time.Sleep(50 * time.Millisecond)
	for _, m := range pc.messages() {
		if _, ok := m.(*serviceproto.ConnectionData); ok {
			t.Fatal("answered a client without protocol")
		}
	}
}

// TestAcks: JoinGroupWithAck with ids from 1 on the client's own
// connection; Ok is true, NotFound false, silence a time-out error.
func TestAcks(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, Config{ConnectionsPerHub: 1, AckTimeout: time.Second, AckCheckInterval: 100 * time.Millisecond})
	pc := p.ready(t)
	waitUp(t, a)
	openClient(t, pc, "c1", "json")
	pc.wait(t, "handshake", dataFor("c1", serviceproto.DataHandshake))
	join := func(id string) {
		pc.send(&serviceproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":1,"invocationId":"` + id + `","target":"Join","arguments":[]}` + "\x1e")})
	}
	answer := func(inv string) string {
		d := pc.wait(t, "completion "+inv, func(m serviceproto.Message) bool {
			d, ok := m.(*serviceproto.ConnectionData)
			return ok && strings.Contains(string(d.Payload), `"invocationId":"`+inv+`"`)
		}).(*serviceproto.ConnectionData)
		return string(d.Payload)
	}
	join("1")
	j := pc.wait(t, "JoinGroupWithAck", func(m serviceproto.Message) bool { _, ok := m.(*serviceproto.JoinGroupWithAck); return ok }).(*serviceproto.JoinGroupWithAck)
	if j.AckID != 1 || j.ConnectionID != "c1" || j.Group != "g" {
		t.Fatalf("%+v", j)
	}
	pc.send(&serviceproto.Ack{AckID: 1, Status: serviceproto.AckOk})
	if got := answer("1"); got != `{"type":3,"invocationId":"1","result":true}`+"\x1e" {
		t.Fatal(got)
	}
	join("2")
	pc.wait(t, "ack 2", func(m serviceproto.Message) bool {
		j, ok := m.(*serviceproto.JoinGroupWithAck)
		return ok && j.AckID == 2
	})
	pc.send(&serviceproto.Ack{AckID: 2, Status: serviceproto.AckNotFound})
	if got := answer("2"); got != `{"type":3,"invocationId":"2","result":false}`+"\x1e" {
		t.Fatal(got)
	}
	// No ack: the time-out.
	start := time.Now()
	ok, err := a.Hub("ChatHub").AddToGroup(context.Background(), "c1", "g")
	if !errors.Is(err, ErrAckTimeout) || ok {
		t.Fatalf("no ack: %v %v", ok, err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("timed out after %v, before the ack time-out", d)
	}
}

// TestSendsPerProtocol: multicast messages carry one payload per
// protocol, exactly what hubproto writes; Clients.Client of a hosted
// client carries its protocol only and goes on its own connection.
func TestSendsPerProtocol(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, Config{ConnectionsPerHub: 1})
	pc := p.ready(t)
	waitUp(t, a)
	h := a.Hub("ChatHub")
	if err := h.All().Send("news", "hi", 3); err != nil {
		t.Fatal(err)
	}
	b := pc.wait(t, "broadcast", func(m serviceproto.Message) bool { _, ok := m.(*serviceproto.BroadcastData); return ok }).(*serviceproto.BroadcastData)
	wantJSON := `{"type":1,"target":"news","arguments":["hi",3]}` + "\x1e"
	mp, _ := hubproto.JSONToMessagePack(nil, []byte(`["hi",3]`))
	wantMP, _ := hubproto.MessagePack.AppendInvocation(nil, "", "news", mp)
	if len(b.Payloads) != 2 || b.Payloads[0].Protocol != "json" || string(b.Payloads[0].Data) != wantJSON ||
		b.Payloads[1].Protocol != "messagepack" || !bytes.Equal(b.Payloads[1].Data, wantMP) || b.Excluded != nil {
		t.Fatalf("broadcast %+v", b)
	}
	for _, send := range []func() error{
		func() error { return h.AllExcept("x", "y").Send("t") },
		func() error { return h.GroupExcept("g", "x").Send("t") },
		func() error { return h.Groups("g1", "g2").Send("t") },
		func() error { return h.User("u").Send("t") },
		func() error { return h.Users("u1", "u2").Send("t") },
		func() error { return h.Clients("a", "b").Send("t") },
		func() error { return h.Client("remote").Send("t") },
	} {
		if err := send(); err != nil {
			t.Fatal(err)
		}
	}
	pc.wait(t, "the rest", func(m serviceproto.Message) bool {
		d, ok := m.(*serviceproto.MultiConnectionData)
		return ok && len(d.ConnectionIDs) == 1 && d.ConnectionIDs[0] == "remote" && len(d.Payloads) == 2
	})
	want := []serviceproto.Type{serviceproto.TypeBroadcastData, serviceproto.TypeBroadcastData, serviceproto.TypeGroupBroadcastData,
		serviceproto.TypeMultiGroupBroadcastData, serviceproto.TypeUserData, serviceproto.TypeMultiUserData,
		serviceproto.TypeMultiConnectionData, serviceproto.TypeMultiConnectionData}
	var got []serviceproto.Type
	for _, m := range pc.messages()[1:] {
		if _, ok := m.(*serviceproto.Ping); !ok {
			got = append(got, m.Type())
		}
	}
	if len(got) != len(want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sent %v, want %v", got, want)
		}
	}
	openClient(t, pc, "c1", "messagepack")
	pc.wait(t, "handshake", dataFor("c1", serviceproto.DataHandshake))
	if err := h.Client("c1").Send("t", 1); err != nil {
		t.Fatal(err)
	}
	d := pc.wait(t, "to c1", func(m serviceproto.Message) bool {
		d, ok := m.(*serviceproto.MultiConnectionData)
		return ok && d.ConnectionIDs[0] == "c1"
	}).(*serviceproto.MultiConnectionData)
	if len(d.Payloads) != 1 || d.Payloads[0].Protocol != "messagepack" {
		t.Fatalf("to a hosted client: %+v", d.Payloads)
	}
}

// TestMessagePackClient: a MessagePack client's invocation is parsed
// and answered in MessagePack.
func TestMessagePackClient(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, Config{ConnectionsPerHub: 1})
	pc := p.ready(t)
	waitUp(t, a)
	openClient(t, pc, "c1", "messagepack")
	pc.wait(t, "handshake", dataFor("c1", serviceproto.DataHandshake))
	args, _ := hubproto.JSONToMessagePack(nil, []byte(`[{"k":[1,"x"]}]`))
	inv, _ := hubproto.MessagePack.AppendInvocation(nil, "7", "Echo", args)
	pc.send(&serviceproto.ConnectionData{ConnectionID: "c1", Payload: inv})
	res, _ := hubproto.JSONToMessagePack(nil, []byte(`{"k":[1,"x"]}`))
	want, _ := hubproto.MessagePack.AppendCompletion(nil, "7", res)
	pc.wait(t, "MessagePack completion", func(m serviceproto.Message) bool {
		d, ok := m.(*serviceproto.ConnectionData)
		return ok && bytes.Equal(d.Payload, want)
	})
}

// TestClientResults: the caller hosting the client completes locally
// and tells the service with an empty ClientCompletion; a routed
// invocation's completion goes back with the record as payload; a
// routed ClientCompletion and an ErrorCompletion complete the caller.
func TestClientResults(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, Config{ConnectionsPerHub: 1, ServerID: "A"})
	pc := p.ready(t)
	waitUp(t, a)
	openClient(t, pc, "c1", "json")
	pc.wait(t, "handshake", dataFor("c1", serviceproto.DataHandshake))
	h := a.Hub("ChatHub")
	type res struct {
		v   json.RawMessage
		err error
	}
	call := func(conn string) chan res {
		ch := make(chan res, 1)
		go func() {
			v, err := h.InvokeClient(ctxT(t, 5*time.Second), conn, "ask", 1)
			ch <- res{v, err}
		}()
		return ch
	}
	ch := call("c1")
	inv := pc.wait(t, "ClientInvocation", func(m serviceproto.Message) bool { _, ok := m.(*serviceproto.ClientInvocation); return ok }).(*serviceproto.ClientInvocation)
	if inv.ConnectionID != "c1" || inv.CallerServerID != "A" || !strings.HasPrefix(inv.InvocationID, "c1-") {
		t.Fatalf("%+v", inv)
	}
	js, _ := inv.Payloads.Get("json")
	if !strings.Contains(string(js), `"invocationId":"`+inv.InvocationID+`"`) {
		t.Fatalf("payload %s", js)
	}
	pc.send(&serviceproto.ConnectionData{ConnectionID: "c1", Payload: []byte(`{"type":3,"invocationId":"` + inv.InvocationID + `","result":"yes"}` + "\x1e")})
	if r := <-ch; r.err != nil || string(r.v) != `"yes"` {
		t.Fatalf("local result %s %v", r.v, r.err)
	}
	cc := pc.wait(t, "ClientCompletion", func(m serviceproto.Message) bool { _, ok := m.(*serviceproto.ClientCompletion); return ok }).(*serviceproto.ClientCompletion)
	if cc.InvocationID != inv.InvocationID || cc.CallerServerID != "A" || cc.Protocol != "json" || len(cc.Payload) != 0 {
		t.Fatalf("%+v", cc)
	}
	// Router: server B invoked c1 through the service.
	pc.send(&serviceproto.ClientInvocation{InvocationID: "B-inv", ConnectionID: "c1", CallerServerID: "B"})
	time.Sleep(20 * time.Millisecond)
	rec := `{"type":3,"invocationId":"B-inv","error":"no"}`
	pc.send(&serviceproto.ConnectionData{ConnectionID: "c1", Payload: []byte(rec + "\x1e")})
	routed := pc.wait(t, "routed completion", func(m serviceproto.Message) bool {
		c, ok := m.(*serviceproto.ClientCompletion)
		return ok && c.InvocationID == "B-inv"
	}).(*serviceproto.ClientCompletion)
	if string(routed.Payload) != rec+"\x1e" || routed.Protocol != "json" || routed.ConnectionID != "c1" {
		t.Fatalf("%+v", routed)
	}
	// Caller of a client elsewhere: completed by the service.
	ch = call("far")
	inv = pc.wait(t, "ClientInvocation far", func(m serviceproto.Message) bool {
		i, ok := m.(*serviceproto.ClientInvocation)
		return ok && i.ConnectionID == "far"
	}).(*serviceproto.ClientInvocation)
	pc.send(&serviceproto.ClientCompletion{InvocationID: inv.InvocationID, ConnectionID: "far", CallerServerID: "B", Protocol: "json",
		Payload: []byte(`{"type":3,"invocationId":"` + inv.InvocationID + `","result":[1,2]}` + "\x1e")})
	if r := <-ch; r.err != nil || string(r.v) != `[1,2]` {
		t.Fatalf("routed result %s %v", r.v, r.err)
	}
	ch = call("far")
	inv = pc.wait(t, "third invocation", func(m serviceproto.Message) bool {
		i, ok := m.(*serviceproto.ClientInvocation)
		return ok && i.ConnectionID == "far" && !strings.HasSuffix(i.InvocationID, "-2")
	}).(*serviceproto.ClientInvocation)
	pc.send(&serviceproto.ErrorCompletion{InvocationID: inv.InvocationID, ConnectionID: "far", CallerServerID: "A", Error: "Connection 'far' is disconnected."})
	if r := <-ch; r.err == nil || r.err.Error() != "Connection 'far' is disconnected." {
		t.Fatalf("error completion: %v", r.err)
	}
}

// TestWriteChunk: with WriteChunk the app's bytes cross WebSocket
// message boundaries, and the stream still parses.
func TestWriteChunk(t *testing.T) {
	p := newPeer(t)
	a := startApp(t, p, Config{ConnectionsPerHub: 1, WriteChunk: 3})
	pc := p.ready(t)
	waitUp(t, a)
	for i := 0; i < 5; i++ {
		a.Hub("ChatHub").All().Send("t", strings.Repeat("x", 100))
	}
	testutil.WaitUntil(t, 5*time.Second, "5 broadcasts", func() bool {
		n := 0
		for _, m := range pc.messages() {
			if _, ok := m.(*serviceproto.BroadcastData); ok {
				n++
			}
		}
		return n == 5
	})
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, r := range pc.raw[1:] {
		if len(r) > 3 {
			t.Fatalf("a %d-byte WebSocket message", len(r))
		}
	}
}

// TestNegotiate: the app's negotiate redirects to the service's client
// endpoint with a token as the SDK signs it; 500 before any server
// connection is up.
func TestNegotiate(t *testing.T) {
	p := newPeer(t)
	p.setHandshake(nil) // no connection completes: negotiate fails
	a := startApp(t, p, Config{ConnectionsPerHub: 1, ServerStickyMode: "Required", ServerID: "A",
		HandshakeTimeout: 200 * time.Millisecond, RetryDelay: func(int) time.Duration { return 10 * time.Millisecond },
		UserClaims: func(*http.Request) []serviceproto.Claim {
			return []serviceproto.Claim{{Type: serviceproto.ClaimNameIdentifier, Value: "alice"}, {Type: serviceproto.ClaimRole, Value: "r1"},
				{Type: serviceproto.ClaimRole, Value: "r2"}, {Type: "aud", Value: "mine"}}
		}})
	base, err := a.ListenNegotiate("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	post := func() *http.Response {
		resp, err := hc.Post(base+"/chathub/negotiate?negotiateVersion=1&user=alice", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := post(); r.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d before connecting", r.StatusCode)
	}
	p.setHandshake(&serviceproto.HandshakeResponse{})
	testutil.WaitUntil(t, 10*time.Second, "connected", func() bool { return a.Stats("ChatHub").Connected == 1 })
	r := post()
	var body struct {
		NegotiateVersion *int     `json:"negotiateVersion"`
		URL              string   `json:"url"`
		AccessToken      string   `json:"accessToken"`
		Transports       []string `json:"availableTransports"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	u, err := url.Parse(body.URL)
	if err != nil || r.StatusCode != 200 || body.NegotiateVersion == nil || *body.NegotiateVersion != 0 || body.Transports == nil {
		t.Fatalf("%d %+v", r.StatusCode, body)
	}
	q := u.Query()
	if u.Path != "/client/" || q.Get("hub") != "chathub" || q.Get("asrs.op") != "/chathub" || q.Get("negotiateVersion") != "1" ||
		q.Get("user") != "alice" || q.Get("asrs_request_id") == "" || "http://"+u.Host != p.srv.URL {
		t.Fatalf("url %s", body.URL)
	}
	_, pl := verifyJWT(t, body.AccessToken, testKey)
	host := strings.Split(u.Host, ":")[0]
	if pl["aud"] != "http://"+host+"/client/?hub=chathub" || pl["asrs.s.uid"] != "alice" || pl["nameid"] != "alice" ||
		pl["asrs.s.sn"] != "A" || pl["asrs.s.ssticky"] != "Required" || pl["asrs.u.aud"] != "mine" {
		t.Fatalf("claims %v", pl)
	}
	if roles, ok := pl["role"].([]any); !ok || len(roles) != 2 {
		t.Fatalf("role %v, want an array of 2", pl["role"])
	}
}

// waitUp waits until the app's one connection counts as connected.
func waitUp(t *testing.T, a *App) {
	t.Helper()
	if err := a.WaitConnected(ctxT(t, 5*time.Second), 1); err != nil {
		t.Fatal(err)
	}
}
