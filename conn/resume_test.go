package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// statefulClient is one client connection with stateful reconnect, driven
// through fake sockets: its connection, the token it reconnects with and
// the socket in use.
type statefulClient struct {
	t     *testing.T
	s     *Server
	c     *Conn // the connection (the first socket's session)
	token string
	fc    *fakeConn // current socket
	sess  interface {
		OnData([]byte)
		OnClose(error)
	}
}

// negotiateStateful negotiates with useStatefulReconnect=true and
// returns the response.
func negotiateStateful(t *testing.T, s *Server, query string) (body map[string]any, token string) {
	t.Helper()
	resp, raw := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1"+query, ""))
	if resp.StatusCode != 200 {
		t.Fatalf("negotiate: %d", resp.StatusCode)
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("negotiate body %q: %v", raw, err)
	}
	token, _ = body["connectionToken"].(string)
	return body, token
}

// openStateful negotiates stateful reconnect, upgrades and handshakes
// with version 2; the output is cleared.
func openStateful(t *testing.T, s *Server, extra string) *statefulClient {
	t.Helper()
	_, token := negotiateStateful(t, s, "&useStatefulReconnect=true")
	sc := &statefulClient{t: t, s: s, token: token, fc: &fakeConn{}}
	sess := s.OnOpen(sc.fc)
	sc.sess = sess
	sc.c = sess.(*Conn)
	sess.OnData([]byte(upgradeReq("/chat?id="+token, extra)))
	if !bytes.HasPrefix(sc.fc.output(), []byte("HTTP/1.1 101 ")) {
		t.Fatalf("upgrade: %q", sc.fc.output())
	}
	sess.OnData(clientFrame(0x81, []byte(`{"protocol":"json","version":2}`+"\x1e")))
	if sc.c.state.Load() != stOpen || !sc.c.has(flStateful) {
		t.Fatalf("not an open stateful connection: state %d, output %q", sc.c.state.Load(), sc.fc.output())
	}
	sc.fc.reset()
	t.Cleanup(func() { sc.sess.OnClose(nil) })
	return sc
}

func (f *fakeConn) reset() {
	f.mu.Lock()
	f.out.Reset()
	f.mu.Unlock()
}

func (f *fakeConn) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// send sends client records, one text message.
func (sc *statefulClient) send(recs ...string) {
	var b []byte
	for _, r := range recs {
		b = append(b, r...)
		b = append(b, 0x1e)
	}
	if len(b) < 126 {
		sc.sess.OnData(clientFrame(0x81, b))
	} else {
		sc.sess.OnData(clientFrame126(0x81, b))
	}
}

// drop ends the current socket without a close, as a dead network does.
func (sc *statefulClient) drop() { sc.sess.OnClose(io.ErrUnexpectedEOF) }

// reconnect opens a new socket with the same token, as the JS client
// does: no negotiate, no handshake.
func (sc *statefulClient) reconnect(extra string) *http.Response {
	sc.t.Helper()
	sc.fc = &fakeConn{}
	sc.sess = sc.s.OnOpen(sc.fc)
	sc.sess.OnData([]byte(upgradeReq("/chat?id="+sc.token, extra)))
	return sc.response()
}

// response parses the HTTP response at the start of the socket's output.
func (sc *statefulClient) response() *http.Response {
	sc.t.Helper()
	out := sc.fc.output()
	if len(out) == 0 {
		return nil
	}
	i := bytes.Index(out, []byte("\r\n\r\n"))
	if i < 0 {
		sc.t.Fatalf("no HTTP response: %q", out)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out[:i+4])), nil)
	if err != nil {
		sc.t.Fatalf("HTTP response %q: %v", out[:i+4], err)
	}
	return resp
}

// records lists the SignalR records the current socket received after
// any HTTP response, and the WebSocket opcodes that carried them.
func (sc *statefulClient) records() []string {
	sc.t.Helper()
	out := sc.fc.output()
	if i := bytes.Index(out, []byte("\r\n\r\n")); i >= 0 && bytes.HasPrefix(out, []byte("HTTP/")) {
		out = out[i+4:]
	}
	ops, payloads := serverFrames(sc.t, out)
	var recs []string
	for i, p := range payloads {
		if ops[i] == 0x88 {
			recs = append(recs, fmt.Sprintf("close %d", int(p[0])<<8|int(p[1])))
			continue
		}
		recs = append(recs, strings.TrimSuffix(p, "\x1e"))
	}
	return recs
}

func broadcast(s *Server, msg string) {
	s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: []byte(fmt.Sprintf(`{"type":1,"target":"t","arguments":[%q]}`, msg) + "\x1e")})
}

func inv(msg string) string { return fmt.Sprintf(`{"type":1,"target":"t","arguments":[%q]}`, msg) }

func eventsOf(u *upstreamRec, kind backplane.EventKind) []backplane.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []backplane.Event
	for _, e := range u.events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestNegotiateStatefulReconnect: negotiate grants stateful reconnect
// only to a client that asks (the official clients fail a connection
// whose server grants it unasked) and only when it is offered; the token
// says so under its signature.
func TestNegotiateStatefulReconnect(t *testing.T) {
	on := newTestServer(t, Config{})
	off := newTestServer(t, Config{DisableStatefulReconnect: true})
	for _, tc := range []struct {
		s     *Server
		query string
		want  bool
	}{
		{on, "&useStatefulReconnect=true", true},
		{on, "&UseStatefulReconnect=True", true},
		{on, "&useStatefulReconnect=false", false},
		{on, "", false},
		{off, "&useStatefulReconnect=true", false},
	} {
		body, token := negotiateStateful(t, tc.s, tc.query)
		got, present := body["useStatefulReconnect"]
		if tc.want != (got == true) || (!tc.want && present) {
			t.Errorf("%q: useStatefulReconnect %v (present %v), want %v", tc.query, got, present, tc.want)
		}
		ti, err := tc.s.signer.open("chat", token, time.Now())
		if err != nil || (ti.flags&tokStateful != 0) != tc.want {
			t.Errorf("%q: token flags %d, %v", tc.query, ti.flags, err)
		}
	}
	// Negotiate version 0 says it too.
	resp, raw := exchange(t, on, negotiateReq("/chat/negotiate?useStatefulReconnect=true", ""))
	if resp.StatusCode != 200 || !strings.Contains(raw, `"useStatefulReconnect":true`) || strings.Contains(raw, "connectionToken") {
		t.Errorf("v0 negotiate: %d %s", resp.StatusCode, raw)
	}
}

// TestResumeWithinWindow: a stateful connection whose socket drops stays
// in its hub and groups; deliveries meanwhile are kept; the client comes
// back with its token and no handshake and gets Sequence{first
// unacknowledged} and every unacknowledged message in order, then what
// follows. The upstream hears reconnected, not disconnected.
func TestResumeWithinWindow(t *testing.T) {
	up := &upstreamRec{}
	s := newTestServer(t, Config{Upstream: up})
	sc := openStateful(t, s, "")
	id := sc.c.entry.ID()
	s.router.Hub("chat").AddToGroup(id, "g")
	broadcast(s, "m1")
	broadcast(s, "m2")
	broadcast(s, "m3")
	if got, want := sc.records(), []string{inv("m1"), inv("m2"), inv("m3")}; !equal(got, want) {
		t.Fatalf("before the drop: %q", got)
	}
	sc.send(`{"type":8,"sequenceId":1}`) // the client acknowledged m1

	sc.drop()
	if st := sc.c.state.Load(); st != stDetached {
		t.Fatalf("state %d after the socket dropped, want detached", st)
	}
	if s.router.Hub("chat").Len() != 1 || len(eventsOf(up, backplane.EventDisconnected)) != 0 {
		t.Fatalf("connection left its hub (%d) or was reported disconnected (%v)", s.router.Hub("chat").Len(), up.events)
	}
	broadcast(s, "m4")
	s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.Group, Name: "g", Payload: []byte(inv("m5") + "\x1e")})

	resp := sc.reconnect("")
	if resp == nil || resp.StatusCode != 101 {
		t.Fatalf("reconnect: %v %q", resp, sc.fc.output())
	}
	want := []string{`{"type":9,"sequenceId":2}`, inv("m2"), inv("m3"), inv("m4"), inv("m5")}
	if got := sc.records(); !equal(got, want) {
		t.Fatalf("after the reconnect the client got\n%q\nwant\n%q", got, want)
	}
	broadcast(s, "m6")
	if got := sc.records(); !equal(got, append(want, inv("m6"))) {
		t.Fatalf("after the resume: %q", got)
	}
	if s.M.resume.resumed.Get() != 1 || s.M.resume.detached.Get() != 1 || s.M.resume.replayed.Get() != 4 {
		t.Errorf("metrics: resumed %d detached %d replayed %d", s.M.resume.resumed.Get(), s.M.resume.detached.Get(), s.M.resume.replayed.Get())
	}
	if r := eventsOf(up, backplane.EventReconnected); len(r) != 1 || r[0].ConnID != id || len(eventsOf(up, backplane.EventDisconnected)) != 0 {
		t.Fatalf("upstream events %+v", up.events)
	}
	// The resumed socket's input is the connection's: an Ack of all
	// frees the buffer, a Close ends the connection.
	sc.send(`{"type":9,"sequenceId":1}`, `{"type":8,"sequenceId":6}`)
	if rs := sc.c.rs.Load(); rs.x == nil || len(rs.x.frames) != 0 || rs.x.bytes != 0 {
		t.Fatalf("acknowledged frames still kept: %+v", rs.x)
	}
	sc.send(`{"type":7}`)
	sc.drop()
	if s.router.Hub("chat").Len() != 0 || len(eventsOf(up, backplane.EventDisconnected)) != 1 {
		t.Fatalf("client close: registered %d, events %+v", s.router.Hub("chat").Len(), up.events)
	}
	if r := sc.reconnect(""); r == nil || r.StatusCode != 409 {
		t.Fatalf("reconnect after a close: %v", r)
	}
}

// TestResumeAgain: a connection resumes more than once, the second time
// from a resumed socket, with the sequence carried on.
func TestResumeAgain(t *testing.T) {
	s := newTestServer(t, Config{})
	sc := openStateful(t, s, "")
	broadcast(s, "a")
	sc.drop()
	sc.reconnect("")
	sc.send(`{"type":9,"sequenceId":1}`, `{"type":8,"sequenceId":1}`)
	broadcast(s, "b")
	sc.drop()
	broadcast(s, "c")
	sc.reconnect("")
	want := []string{`{"type":9,"sequenceId":2}`, inv("b"), inv("c")}
	if got := sc.records(); !equal(got, want) {
		t.Fatalf("second resume: %q, want %q", got, want)
	}
	if s.M.resume.resumed.Get() != 2 {
		t.Fatalf("resumed %d", s.M.resume.resumed.Get())
	}
}

// TestResumeExpiry: a connection not resumed within the window ends then
// (not before): it leaves its hub, the upstream hears disconnected
// (reconnect_expired), and the token is refused afterwards.
func TestResumeExpiry(t *testing.T) {
	up := &upstreamRec{}
	s := newTestServer(t, Config{Upstream: up, ReconnectWindow: time.Second})
	sc := openStateful(t, s, "")
	broadcast(s, "m1")
	sc.drop()
	if len(eventsOf(up, backplane.EventDisconnected)) != 0 {
		t.Fatal("disconnected reported when the socket dropped, not when the window ended")
	}
	testutil.WaitUntil(t, 5*time.Second, "disconnected at the end of the window", func() bool {
		return len(eventsOf(up, backplane.EventDisconnected)) == 1
	})
	if e := eventsOf(up, backplane.EventDisconnected)[0]; e.Reason != "reconnect_expired" {
		t.Fatalf("disconnected reason %q", e.Reason)
	}
	if s.router.Hub("chat").Len() != 0 || s.M.closed[causeReconnectExpired.idx].Get() != 1 {
		t.Fatalf("expired: registered %d, counted %d", s.router.Hub("chat").Len(), s.M.closed[causeReconnectExpired.idx].Get())
	}
	if rs := sc.c.rs.Load(); rs.x != nil && (len(rs.x.frames) != 0 || rs.x.bytes != 0) {
		t.Fatalf("an ended connection keeps frames: %+v", rs.x)
	}
	if r := sc.reconnect(""); r == nil || r.StatusCode != 409 {
		t.Fatalf("reconnect after the window: %v", r)
	}
}

// TestResumeBufferBound: unacknowledged frames are bounded by
// ReconnectBufferBytes; past it the connection closes with allowReconnect
// (open) or ends (detached), counted; acknowledged frames free their
// share, and the replay buffer disappears once everything is acked.
func TestResumeBufferBound(t *testing.T) {
	frame := len(inv("m00")) + 1 + 2 // record, separator, frame header
	t.Run("acks free it", func(t *testing.T) {
		s := newTestServer(t, Config{ReconnectBufferBytes: 2 * frame})
		sc := openStateful(t, s, "")
		for i := range 10 {
			broadcast(s, fmt.Sprintf("m%02d", i))
			sc.send(fmt.Sprintf(`{"type":8,"sequenceId":%d}`, i+1))
		}
		if sc.fc.isShutdown() || len(sc.records()) != 10 {
			t.Fatalf("acked frames counted against the bound: %q", sc.records())
		}
		if sc.c.rs.Load().x != nil {
			t.Fatal("replay buffer kept with nothing unacknowledged")
		}
	})
	t.Run("open", func(t *testing.T) {
		s := newTestServer(t, Config{ReconnectBufferBytes: 2 * frame})
		sc := openStateful(t, s, "")
		broadcast(s, "m00")
		broadcast(s, "m01")
		broadcast(s, "m02")
		got := sc.records()
		if len(got) != 4 || got[2] != `{"type":7,"error":"stateful reconnect buffer full: too much unacknowledged data","allowReconnect":true}` || got[3] != "close 1008" {
			t.Fatalf("overflow: %q", got)
		}
		if s.M.closed[causeReconnectBufferFull.idx].Get() != 1 {
			t.Fatal("overflow not counted")
		}
	})
	t.Run("detached", func(t *testing.T) {
		up := &upstreamRec{}
		s := newTestServer(t, Config{ReconnectBufferBytes: 2 * frame, Upstream: up})
		sc := openStateful(t, s, "")
		sc.drop()
		for i := range 3 {
			broadcast(s, fmt.Sprintf("m%02d", i))
		}
		if s.router.Hub("chat").Len() != 0 {
			t.Fatal("detached connection over its bound still registered")
		}
		if e := eventsOf(up, backplane.EventDisconnected); len(e) != 1 || e[0].Reason != "reconnect_buffer_full" {
			t.Fatalf("disconnected events %+v", e)
		}
		if r := sc.reconnect(""); r == nil || r.StatusCode != 409 {
			t.Fatalf("reconnect after the overflow: %v", r)
		}
	})
}

// TestResumeDuplicates: what the client sends again after a reconnect
// (announced by its Sequence) and the node had processed reaches the
// upstream once; what is new goes on.
func TestResumeDuplicates(t *testing.T) {
	up := &upstreamRec{}
	s := newTestServer(t, Config{Upstream: up})
	sc := openStateful(t, s, "")
	sc.send(inv("i1"), inv("i2"), inv("i3"))
	sc.drop()
	sc.reconnect("")
	// The client had no Ack for 2 and 3: it sends them again, then 4.
	sc.send(`{"type":9,"sequenceId":2}`, inv("i2"), inv("i3"), inv("i4"))
	var got []string
	for _, e := range eventsOf(up, backplane.EventInvocation) {
		got = append(got, string(e.Arguments))
	}
	if want := []string{`["i1"]`, `["i2"]`, `["i3"]`, `["i4"]`}; !equal(got, want) {
		t.Fatalf("upstream invocations %q, want %q", got, want)
	}
	// A Sequence that skips nothing, and messages after it, all new.
	sc.send(`{"type":9,"sequenceId":5}`, inv("i5"))
	if n := len(eventsOf(up, backplane.EventInvocation)); n != 5 {
		t.Fatalf("%d invocations after i5", n)
	}
	if rs := sc.c.rs.Load(); rs.recv != 5 {
		t.Fatalf("recv %d", rs.recv)
	}
}

// TestResumePeerAhead: a client whose Sequence is past what the node
// received claims the node got messages it never did: the connection
// closes with a clear error.
func TestResumePeerAhead(t *testing.T) {
	for _, seq := range []int64{3, 0} {
		s := newTestServer(t, Config{})
		sc := openStateful(t, s, "")
		sc.send(inv("i1"))
		sc.drop()
		sc.reconnect("")
		sc.fc.reset()
		sc.send(fmt.Sprintf(`{"type":9,"sequenceId":%d}`, seq))
		got := sc.records()
		if len(got) != 2 || got[0] != `{"type":7,"error":"Sequence ID greater than amount of messages we've received."}` || got[1] != "close 1002" {
			t.Fatalf("Sequence %d after 1 message: %q", seq, got)
		}
	}
}

// TestAckCadence: the node acknowledges the client's messages from the
// timing wheel, not per message: a burst gets one Ack for its last id,
// a tick with nothing new sends none (its keep-alive Ping shows the tick
// happened), a later message gets its own Ack.
func TestAckCadence(t *testing.T) {
	s := newTestServer(t, Config{KeepAliveInterval: time.Second})
	sc := openStateful(t, s, "")
	count := func(rec string) int {
		n := 0
		for _, r := range sc.records() {
			if r == rec {
				n++
			}
		}
		return n
	}
	sc.send(inv("i1"), inv("i2"))
	sc.send(inv("i3"))
	if n := count(`{"type":8,"sequenceId":3}`); n != 0 {
		t.Fatal("Ack sent from the input path, not the wheel")
	}
	testutil.WaitUntil(t, 5*time.Second, "Ack{3}", func() bool { return count(`{"type":8,"sequenceId":3}`) == 1 })
	// The tick after the Ack sends a Ping (one second without output)
	// and no second Ack: nothing new arrived.
	testutil.WaitUntil(t, 5*time.Second, "a Ping after the Ack", func() bool {
		recs := sc.records()
		return len(recs) > 0 && recs[len(recs)-1] == `{"type":6}`
	})
	for _, r := range sc.records() {
		if strings.HasPrefix(r, `{"type":8`) && r != `{"type":8,"sequenceId":3}` {
			t.Fatalf("unexpected Ack %s in %q", r, sc.records())
		}
	}
	if n := count(`{"type":8,"sequenceId":3}`); n != 1 {
		t.Fatalf("%d Acks of 3 without new messages: %q", n, sc.records())
	}
	sc.send(inv("i4"))
	testutil.WaitUntil(t, 5*time.Second, "Ack{4}", func() bool { return count(`{"type":8,"sequenceId":4}`) == 1 })
	// Pings and Acks are not trackable: the client's sequence counts
	// only its invocations.
	if rs := sc.c.rs.Load(); rs.recv != 4 || rs.sent != 0 {
		t.Fatalf("recv %d sent %d", rs.recv, rs.sent)
	}
}

// TestResumeTakeover: the client comes back while the node still holds
// its old socket open (it has not seen it die): the old socket is closed,
// and the new one is answered once the old one's close is through, so
// only one socket's input is read at a time.
func TestResumeTakeover(t *testing.T) {
	s := newTestServer(t, Config{})
	sc := openStateful(t, s, "")
	broadcast(s, "m1")
	old, oldSess := sc.fc, sc.sess
	if r := sc.reconnect(""); r != nil {
		t.Fatalf("answered before the old socket closed: %d", r.StatusCode)
	}
	if !old.isClosed() {
		t.Fatal("old socket not closed")
	}
	oldSess.OnClose(nil) // the poller's callback for the closed socket
	if r := sc.response(); r == nil || r.StatusCode != 101 {
		t.Fatalf("after the old socket closed: %v %q", r, sc.fc.output())
	}
	if got, want := sc.records(), []string{`{"type":9,"sequenceId":1}`, inv("m1")}; !equal(got, want) {
		t.Fatalf("resumed: %q", got)
	}
	if s.M.resume.takeovers.Get() != 1 || s.M.resume.resumed.Get() != 1 {
		t.Fatalf("takeovers %d resumed %d", s.M.resume.takeovers.Get(), s.M.resume.resumed.Get())
	}
	// A second reconnect racing the first: refused.
	sc2 := *sc
	sc2.reconnect("")
	third := sc2
	third.reconnect("")
	if r := third.response(); r == nil || r.StatusCode != 409 {
		t.Fatalf("a reconnect while another waits: %v", r)
	}
}

// TestNotStateful: without stateful reconnect (not negotiated, or a
// handshake below version 2) a dropped socket ends the connection at once
// and its token is not accepted again; nothing is numbered or kept.
func TestNotStateful(t *testing.T) {
	for _, tc := range []struct{ query, hs string }{
		{"", `{"protocol":"json","version":1}`},
		{"", `{"protocol":"json","version":2}`},
		{"&useStatefulReconnect=true", `{"protocol":"json","version":1}`},
	} {
		up := &upstreamRec{}
		s := newTestServer(t, Config{Upstream: up})
		_, token := negotiateStateful(t, s, tc.query)
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		c.OnData([]byte(upgradeReq("/chat?id="+token, "")))
		c.OnData(clientFrame(0x81, []byte(tc.hs+"\x1e")))
		if c.state.Load() != stOpen || c.has(flStateful) {
			t.Fatalf("%q %s: state %d stateful %v", tc.query, tc.hs, c.state.Load(), c.has(flStateful))
		}
		broadcast(s, "m")
		c.OnData(clientFrame(0x81, []byte(inv("i")+"\x1e")))
		if c.rs.Load() != nil {
			t.Fatalf("%q %s: sequence state allocated", tc.query, tc.hs)
		}
		c.OnClose(io.ErrUnexpectedEOF)
		if len(eventsOf(up, backplane.EventDisconnected)) != 1 || s.router.Hub("chat").Len() != 0 {
			t.Fatalf("%q %s: not ended with its socket", tc.query, tc.hs)
		}
		if r, _ := exchange(t, s, upgradeReq("/chat?id="+token, "")); r.StatusCode != 409 {
			t.Fatalf("%q %s: reconnect %d", tc.query, tc.hs, r.StatusCode)
		}
	}
}

// TestStatefulIdleCostsNothing: an idle stateful connection allocates no
// sequence state; one whose messages were all acknowledged keeps only its
// counters.
func TestStatefulIdleCostsNothing(t *testing.T) {
	s := newTestServer(t, Config{})
	sc := openStateful(t, s, "")
	sc.send(`{"type":6}`)
	if sc.c.rs.Load() != nil {
		t.Fatal("idle stateful connection allocated its sequence state")
	}
	broadcast(s, "m")
	if rs := sc.c.rs.Load(); rs == nil || rs.x == nil || len(rs.x.frames) != 1 {
		t.Fatal("unacknowledged frame not kept")
	}
	sc.send(`{"type":8,"sequenceId":1}`)
	if rs := sc.c.rs.Load(); rs.x != nil || rs.sent != 1 {
		t.Fatalf("after the Ack: %+v", rs)
	}
}

// TestResumeChecks: a reconnect must be by the connection's user; an
// old (expired) token still resumes its live connection, since the
// connection, not the token's lifetime, is the authority; a drain ends
// detached connections.
func TestResumeChecks(t *testing.T) {
	up := &upstreamRec{}
	s := newTestServer(t, Config{AccessKey: testKey, Upstream: up})
	_, token := negotiateStateful(t, s, "&useStatefulReconnect=true&access_token="+clientToken(t, map[string]any{"nameid": "alice"}))
	sc := &statefulClient{t: t, s: s, token: token, fc: &fakeConn{}}
	sc.sess = s.OnOpen(sc.fc)
	sc.c = sc.sess.(*Conn)
	sc.sess.OnData([]byte(upgradeReq("/chat?id="+token, "Authorization: Bearer "+clientToken(t, map[string]any{"nameid": "alice"})+"\r\n")))
	sc.sess.OnData(clientFrame(0x81, []byte(`{"protocol":"json","version":2}`+"\x1e")))
	if !sc.c.has(flStateful) || sc.c.entry.User() != "alice" {
		t.Fatalf("not alice's stateful connection")
	}
	sc.drop()
	if r := sc.reconnect("Authorization: Bearer " + clientToken(t, map[string]any{"nameid": "mallory"}) + "\r\n"); r == nil || r.StatusCode != 403 {
		t.Fatalf("another user's reconnect: %v", r)
	}
	var id [idLen]byte
	if _, err := b64.Decode(id[:], []byte(sc.c.entry.ID())); err != nil {
		t.Fatal(err)
	}
	sc.token = s.signer.issueFlags("chat", id, time.Now().Add(-time.Hour), tokStateful)
	if r := sc.reconnect("Authorization: Bearer " + clientToken(t, map[string]any{"nameid": "alice"}) + "\r\n"); r == nil || r.StatusCode != 101 {
		t.Fatalf("reconnect with an expired token: %v", r)
	}
	sc.drop()
	s.Drain(t.Context(), 0)
	if e := eventsOf(up, backplane.EventDisconnected); len(e) != 1 || e[0].Reason != "shutdown" || s.router.Hub("chat").Len() != 0 {
		t.Fatalf("drain of a detached connection: %+v", e)
	}
}

// TestResumeUnderLoad: messages published without pause while the
// client's socket drops and comes back, again and again (sometimes the
// node sees the drop first, sometimes the reconnect): a client that
// handles Sequence and duplicates as the official one does
// (MessageBuffer) gets every message once, in order.
func TestResumeUnderLoad(t *testing.T) {
	s := newTestServer(t, Config{ReconnectBufferBytes: 10 << 20, MaxMessageRate: -1})
	sc := openStateful(t, s, "")
	const n = 3000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			broadcast(s, fmt.Sprint(i))
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	// The client's receive side (MessageBuffer._shouldProcessMessage,
	// _resetSequence), fed socket by socket.
	var got []string
	next, latest := int64(1), int64(0)
	read := func(fc *fakeConn, first bool) {
		out := fc.output()
		if i := bytes.Index(out, []byte("\r\n\r\n")); i >= 0 && bytes.HasPrefix(out, []byte("HTTP/1.1 101")) {
			out = out[i+4:]
		}
		waiting := !first
		for len(out) > 0 {
			n := int(out[1] & 0x7f)
			hdr := 2
			if n == 126 {
				n, hdr = int(out[2])<<8|int(out[3]), 4
			}
			rec := strings.TrimSuffix(string(out[hdr:hdr+n]), "\x1e")
			out = out[hdr+n:]
			var m struct {
				Type       int      `json:"type"`
				SequenceID int64    `json:"sequenceId"`
				Arguments  []string `json:"arguments"`
			}
			if err := json.Unmarshal([]byte(rec), &m); err != nil {
				t.Fatalf("record %q: %v", rec, err)
			}
			if waiting && m.Type != 9 {
				continue
			}
			switch m.Type {
			case 9:
				waiting = false
				if m.SequenceID > next {
					t.Fatalf("Sequence %d ahead of %d", m.SequenceID, next)
				}
				next = m.SequenceID
			case 1:
				id := next
				next++
				if id <= latest {
					continue
				}
				latest = id
				got = append(got, m.Arguments[0])
			}
		}
	}
	first := true
	for round := 0; ; round++ {
		select {
		case <-done:
		default:
			time.Sleep(time.Millisecond)
			old, oldSess := sc.fc, sc.sess
			if round%2 == 0 {
				old.Close()
				oldSess.OnClose(io.ErrUnexpectedEOF)
				if r := sc.reconnect(""); r == nil || r.StatusCode != 101 {
					t.Fatalf("round %d: reconnect %v", round, r)
				}
			} else {
				sc.reconnect("") // the node still holds the old socket
				oldSess.OnClose(nil)
				if r := sc.response(); r == nil || r.StatusCode != 101 {
					t.Fatalf("round %d: takeover %v", round, r)
				}
			}
			read(old, first)
			first = false
			sc.send(`{"type":9,"sequenceId":1}`, fmt.Sprintf(`{"type":8,"sequenceId":%d}`, latest))
			continue
		}
		break
	}
	read(sc.fc, first)
	if len(got) != n {
		t.Fatalf("client got %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, m)
		}
	}
	t.Logf("%d messages over %d sockets, %d replayed", n, s.M.resume.resumed.Get()+1, s.M.resume.replayed.Get())
}

// TestClosedByTheNodeIsNotResumed: a connection the node closes (here
// with allowReconnect) is not resumable, even before its socket is
// through: the official client tries its token again as soon as it reads
// the Close, and must be told to start over.
func TestClosedByTheNodeIsNotResumed(t *testing.T) {
	s := newTestServer(t, Config{})
	sc := openStateful(t, s, "")
	broadcast(s, "m1")
	sc.c.closeWith(causeServerClose)
	old := sc.sess
	if r := sc.reconnect(""); r == nil || r.StatusCode != 409 {
		t.Fatalf("reconnect after the node closed the connection: %v", r)
	}
	old.OnClose(nil)
	if s.M.resume.resumed.Get() != 0 || s.M.resume.detached.Get() != 0 {
		t.Fatal("a connection the node closed was kept or resumed")
	}
}

// BenchmarkIdleConnMemory reports the heap an idle connection holds
// (B/conn, Conn and fanout index included, the fake socket not): plain,
// with stateful reconnect, and with stateful reconnect after a message
// it acknowledged (its sequence counters allocated).
//
//	go test -run X -bench IdleConnMemory -benchtime 1x ./conn/
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 5000
	for _, mode := range []string{"json", "stateful", "stateful-acked"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				s := newTestServer(b, Config{})
				socks := make([]*fakeConn, n)
				for i := range socks {
					socks[i] = &fakeConn{}
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				sess := make([]*Conn, n)
				for i := range sess {
					flags := tokStateful
					hs := `{"protocol":"json","version":2}` + "\x1e"
					if mode == "json" {
						flags, hs = 0, `{"protocol":"json","version":1}`+"\x1e"
					}
					tok := s.signer.issueFlags("chat", newConnID(), time.Now(), flags)
					c := s.OnOpen(socks[i]).(*Conn)
					c.OnData([]byte(upgradeReq("/chat?id="+tok, "")))
					c.OnData(clientFrame(0x81, []byte(hs)))
					sess[i] = c
				}
				if mode == "stateful-acked" {
					broadcast(s, "m")
					for _, c := range sess {
						c.OnData(clientFrame(0x81, []byte(`{"type":8,"sequenceId":1}`+"\x1e")))
					}
				}
				for _, f := range socks {
					f.mu.Lock()
					f.out = bytes.Buffer{} // the fake socket's own buffer is not the connection's
					f.mu.Unlock()
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/conn")
				runtime.KeepAlive(sess)
				runtime.KeepAlive(socks)
			}
		})
	}
}
