package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// liveConns is a ConnCloser over real fanout entries: closing a
// connection removes it from its hub (its groups, its user), as the
// connection server does, and records the reason.
type liveConns struct {
	mu      sync.Mutex
	router  *fanout.Router
	entries map[string]*fanout.Entry // hub/id
	members map[string]*member
	closed  []string
}

func (c *liveConns) add(t *testing.T, hub, id, user string) *member {
	t.Helper()
	m := &member{}
	e, ok := c.router.Hub(hub).Add(m, id, user)
	if !ok {
		t.Fatalf("connection %s/%s added twice", hub, id)
	}
	c.mu.Lock()
	c.entries[hub+"/"+id] = e
	c.members[hub+"/"+id] = m
	c.mu.Unlock()
	return m
}

func (c *liveConns) CloseConnection(hub, id, reason string) bool {
	c.mu.Lock()
	e := c.entries[hub+"/"+id]
	delete(c.entries, hub+"/"+id)
	if e != nil {
		c.closed = append(c.closed, id+": "+reason)
	}
	c.mu.Unlock()
	if e == nil {
		return false
	}
	c.router.Hub(hub).Remove(e)
	return true
}

func (c *liveConns) closedList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := slices.Clone(c.closed)
	slices.Sort(s)
	return s
}

type restFixture struct {
	t     *testing.T
	ts    *httptest.Server
	h     *Handler
	r     *fanout.Router
	conns *liveConns
	key   string
}

// newREST serves the REST API on a memory backplane with hubs "Chat" and
// "contoso_chat" (the second for the application parameter).
func newREST(t *testing.T, key string) *restFixture {
	t.Helper()
	bp := backplane.NewMemory()
	router := fanout.NewRouter([]string{"Chat", "contoso_chat"}, bp)
	if err := bp.Start(router); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	conns := &liveConns{router: router, entries: map[string]*fanout.Entry{}, members: map[string]*member{}}
	h, err := New(Config{Router: router, Backplane: bp, Conns: conns, AccessKey: key, SecondaryAccessKey: secondaryIf(key)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &restFixture{t: t, ts: ts, h: h, r: router, conns: conns, key: key}
}

func secondaryIf(key string) string {
	if key == "" {
		return ""
	}
	return "secondary-" + key
}

type response struct {
	code   int
	header http.Header
	body   string
}

// errorCode is the response's x-ms-error-code, checked against its
// ErrorDetail body (a HEAD answer has none).
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	code := r.header.Get("x-ms-error-code")
	if r.body != "" {
		var d errorDetail
		if err := json.Unmarshal([]byte(r.body), &d); err != nil || d.Code != code || d.Message == "" {
			t.Fatalf("error body %q is not an ErrorDetail with code %q: %v", r.body, code, err)
		}
	}
	return code
}

// call makes a request; with the fixture's key it carries a REST token
// for the request's URL.
func (f *restFixture) call(method, path, body, contentType string) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if f.key != "" {
		req.Header.Set("Authorization", "Bearer "+restToken(f.t, f.key, f.ts.URL+path, nil))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

func (f *restFixture) want(method, path, body string, code int) response {
	f.t.Helper()
	r := f.call(method, path, body, "")
	if r.code != code {
		f.t.Fatalf("%s %s: %d %s, want %d", method, path, r.code, r.body, code)
	}
	return r
}

func invocation(target string, args ...any) string {
	var b []byte
	if len(args) > 0 {
		b, _ = json.Marshal(args)
	}
	rec, _ := hubproto.JSON.AppendInvocation(nil, "", target, b)
	return string(rec)
}

// frames returns the records m received (WebSocket header stripped).
func frames(m *member) []string {
	var out []string
	for _, f := range m.got() {
		out = append(out, f[2:])
	}
	return out
}

// TestRESTHubNamesAndVersions: hubs are found whatever their case (the
// Management SDK lower-cases them), application=X names hub X_{hub},
// api-version is a version date or absent, and a hub or application name
// outside the API's pattern is a 400 naming the parameter.
func TestRESTHubNamesAndVersions(t *testing.T) {
	f := newREST(t, "")
	a := f.conns.add(t, "Chat", "a", "")
	b := f.conns.add(t, "contoso_chat", "b", "")
	f.want("POST", "/api/hubs/chat/:send?api-version=2022-06-01", `{"target":"one"}`, 202)
	f.want("POST", "/api/hubs/CHAT/:send", `{"Target":"two","Arguments":[1]}`, 202)
	f.want("POST", "/api/hubs/chat/:send?application=Contoso&api-version=2024-12-01", `{"target":"three"}`, 202)
	f.want("POST", "/api/v1/hubs/Chat", `{"target":"four"}`, 202)
	if got := frames(a); !slices.Equal(got, []string{invocation("one"), invocation("two", 1), invocation("four")}) {
		t.Errorf("hub Chat got %q", got)
	}
	if got := frames(b); !slices.Equal(got, []string{invocation("three")}) {
		t.Errorf("hub contoso_chat got %q", got)
	}
	for _, tc := range []struct{ path, param string }{
		{"/api/hubs/chat/:send?api-version=latest", "api-version"},
		{"/api/hubs/chat/:send?application=1app", "application"},
		{"/api/hubs/9chat/:send", "hub"},
		{"/api/hubs/chat/groups/%20%20/:send", "group"},
		{"/api/hubs/chat/users/" + strings.Repeat("u", 1025) + "/:closeConnections", "user"},
	} {
		r := f.call("POST", tc.path, `{"target":"x"}`, "")
		var d errorDetail
		json.Unmarshal([]byte(r.body), &d)
		if r.code != 400 || r.errorCode(t) != codeInvalid || d.Target != tc.param {
			t.Errorf("POST %s: %d %s, want 400 Error.Request.Invalid for %s", tc.path, r.code, r.body, tc.param)
		}
	}
	r := f.call("POST", "/api/hubs/news/:send", `{"target":"x"}`, "")
	if r.code != 404 || r.errorCode(t) != codeHubNotExisted {
		t.Errorf("a hub the node does not serve: %d %s", r.code, r.body)
	}
	if len(frames(a))+len(frames(b)) != 4 {
		t.Error("a refused send was delivered")
	}
}

// mpPayload is a Management SDK MessagePack body: a map of protocol name
// to the message serialized (and framed) in that protocol.
func mpPayload(entries ...[2]string) string {
	b := msgp.AppendMapHeader(nil, uint32(len(entries)))
	for _, e := range entries {
		b = msgp.AppendString(b, e[0])
		b = msgp.AppendBytes(b, []byte(e[1]))
	}
	return string(b)
}

// mpInvocation is a MessagePack Invocation record behind its VarInt
// length, as the SDK's MessagePackHubProtocol writes it; args appends
// the arguments array.
func mpInvocation(t *testing.T, invocationID, target string, args func([]byte) []byte) string {
	t.Helper()
	rec, err := hubproto.MessagePack.AppendInvocation(nil, invocationID, target, args(nil))
	if err != nil {
		t.Fatal(err)
	}
	return string(rec)
}

// TestRESTMessagePackBody: an application/octet-stream body, the
// Management SDK's map of protocol → serialized message: each recipient
// gets its protocol's entry as it is (JSON clients the json entry,
// MessagePack clients the messagepack entry, byte for byte); a map with
// only the messagepack entry reaches JSON clients converted (binary as
// base64), one with only the json entry MessagePack clients converted;
// entries that are not one non-blocking Invocation record, a
// messagepack-only map JSON cannot express, a map with neither entry are
// a 400 saying so.
func TestRESTMessagePackBody(t *testing.T) {
	f := newREST(t, "")
	a := f.conns.add(t, "Chat", "a", "alice")
	p := f.conns.add(t, "Chat", "p", "alice")
	p.mp = true
	rec := `{"type":1,"target":"hi","arguments":["AQI=",{"k":[1,2]}]}` + "\x1e"
	mp := mpInvocation(t, "", "hi", func(b []byte) []byte {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendBytes(b, []byte{1, 2}) // bin: JSON has base64 for it
		return msgp.AppendFloat64(b, 1)       // a float that JSON would make an integer
	})
	r := f.call("POST", "/api/hubs/chat/users/alice/:send", mpPayload([2]string{"messagepack", mp}, [2]string{"json", rec}), "application/octet-stream")
	if r.code != 202 {
		t.Fatalf("MessagePack body: %d %s", r.code, r.body)
	}
	if got := frames(a); !slices.Equal(got, []string{rec}) {
		t.Fatalf("JSON client got %q, want the json entry %q", got, rec)
	}
	if got := frames(p); !slices.Equal(got, []string{mp}) {
		t.Fatalf("MessagePack client got %q, want the messagepack entry %q", got, mp)
	}

	// messagepack only: JSON clients get it converted, once.
	mpOnly := mpInvocation(t, "", "bin", func(b []byte) []byte {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendBytes(b, []byte{1, 2})
		return msgp.AppendString(b, "x")
	})
	if r := f.call("POST", "/api/hubs/chat/:send", mpPayload([2]string{"messagepack", mpOnly}), "application/octet-stream"); r.code != 202 {
		t.Fatalf("messagepack-only body: %d %s", r.code, r.body)
	}
	if got := frames(a); len(got) != 2 || got[1] != `{"type":1,"target":"bin","arguments":["AQI=","x"]}`+"\x1e" {
		t.Fatalf("JSON client got %q for a messagepack-only body", got)
	}
	if got := frames(p); len(got) != 2 || got[1] != mpOnly {
		t.Fatalf("MessagePack client got %q, want %q", got, mpOnly)
	}
	// json only: MessagePack clients get it converted.
	if r := f.call("POST", "/api/hubs/chat/:send", mpPayload([2]string{"json", `{"type":1,"target":"j","arguments":[7]}` + "\x1e"}), "application/octet-stream"); r.code != 202 {
		t.Fatalf("json-only body: %d %s", r.code, r.body)
	}
	if got := frames(p); len(got) != 3 || got[2] != mpInvocation(t, "", "j", func(b []byte) []byte { return msgp.AppendInt(msgp.AppendArrayHeader(b, 1), 7) }) {
		t.Fatalf("MessagePack client got %q for a json-only body", got)
	}

	ext := mpInvocation(t, "", "t", func(b []byte) []byte {
		return append(msgp.AppendArrayHeader(b, 1), 0xd4, 0x05, 0x00) // fixext1 of type 5
	})
	blocking := mpInvocation(t, "7", "t", func(b []byte) []byte { return msgp.AppendArrayHeader(b, 0) })
	for _, tc := range []struct{ name, body, want string }{
		{"neither entry", mpPayload([2]string{"protobuf", "x"}), `neither a \"json\" nor a \"messagepack\" entry`},
		{"messagepack only, not JSON-expressible", mpPayload([2]string{"messagepack", ext}), "cannot be converted to JSON"},
		{"messagepack entry unframed", mpPayload([2]string{"messagepack", mp[1:]}, [2]string{"json", rec}), "VarInt length"},
		{"messagepack entry two records", mpPayload([2]string{"messagepack", mp + mp}, [2]string{"json", rec}), "2 records"},
		{"messagepack entry blocking", mpPayload([2]string{"json", rec}, [2]string{"messagepack", blocking}), `messagepack\" entry is a Invocation with an invocation id`},
		{"not a map", "\x93\x01\x02\x03", "MessagePack map"},
		{"json entry unframed", mpPayload([2]string{"json", `{"type":1,"target":"t","arguments":[]}`}), "ending in 0x1e"},
		{"json entry a completion", mpPayload([2]string{"json", `{"type":3,"invocationId":"1"}` + "\x1e"}), "want a non-blocking Invocation"},
		{"json entry blocking", mpPayload([2]string{"json", `{"type":1,"invocationId":"1","target":"t","arguments":[]}` + "\x1e"}), "with an invocation id"},
		{"trailing bytes", mpPayload([2]string{"json", rec}) + "\x00", "after the payload map"},
	} {
		r := f.call("POST", "/api/hubs/chat/:send", tc.body, "application/x-msgpack")
		if r.code != 400 || r.errorCode(t) != codeInvalid || !strings.Contains(r.body, tc.want) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", tc.name, r.code, r.body, tc.want)
		}
	}
	big := mpPayload([2]string{"json", strings.Repeat("x", maxBody)})
	if r := f.call("POST", "/api/hubs/chat/:send", big, "application/octet-stream"); r.code != 413 || r.errorCode(t) != codeTooLarge {
		t.Errorf("a body over 1 MB: %d %s", r.code, r.body)
	}
	if len(frames(a)) != 3 || len(frames(p)) != 3 {
		t.Error("a refused body was delivered")
	}
}

// TestRESTV1Routes: the v1 API's paths and status codes (202 for closes
// and user-group changes, GET existence checks, the
// /groups/{group}/users/{user} order).
func TestRESTV1Routes(t *testing.T) {
	f := newREST(t, "")
	a := f.conns.add(t, "Chat", "a", "alice")
	f.conns.add(t, "Chat", "b", "bob")
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{"POST", "/api/v1/hubs/chat/users/alice", 202},
		{"POST", "/api/v1/hubs/chat/connections/a", 202},
		{"PUT", "/api/v1/hubs/chat/groups/g/connections/a", 200},
		{"POST", "/api/v1/hubs/chat/groups/g", 202},
		{"GET", "/api/v1/hubs/chat/groups/g", 200},
		{"HEAD", "/api/v1/hubs/chat/groups/g", 200},
		{"DELETE", "/api/v1/hubs/chat/connections/a/groups/g", 200},
		{"GET", "/api/v1/hubs/chat/groups/g", 404},
		{"PUT", "/api/v1/hubs/chat/connections/a/groups/g", 200},
		{"DELETE", "/api/v1/hubs/chat/groups/g/connections/a", 200},
		{"DELETE", "/api/v1/hubs/chat/groups/g/connections/zz", 404},
		{"GET", "/api/v1/hubs/chat/connections/a", 200},
		{"HEAD", "/api/v1/hubs/chat/connections/zz", 404},
		{"GET", "/api/v1/hubs/chat/users/bob", 200},
		{"GET", "/api/v1/hubs/chat/users/carol", 404},
		{"PUT", "/api/v1/hubs/chat/groups/vip/users/bob?ttl=60", 202},
		{"GET", "/api/v1/hubs/chat/groups/vip/users/bob", 200},
		{"HEAD", "/api/v1/hubs/chat/groups/vip/users/alice", 404},
		{"DELETE", "/api/v1/hubs/chat/groups/vip/users/bob", 202},
		{"GET", "/api/v1/hubs/chat/groups/vip/users/bob", 404},
		{"PUT", "/api/v1/hubs/chat/groups/vip/users/bob", 202},
		{"DELETE", "/api/v1/hubs/chat/users/bob/groups", 200},
		{"HEAD", "/api/v1/hubs/chat/groups/vip/users/bob", 404},
		{"DELETE", "/api/v1/hubs/chat/connections/a?reason=v1", 202},
		{"DELETE", "/api/v1/hubs/chat/connections/a", 404},
		{"HEAD", "/api/v1/health", 200},
	} {
		if r := f.call(tc.method, tc.path, `{"target":"t"}`, ""); r.code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.code, r.body, tc.code)
		}
	}
	if got := frames(a); len(got) != 3 {
		t.Errorf("a got %d messages, want 3 (user, connection, group)", len(got))
	}
	if got := f.conns.closedList(); !slices.Equal(got, []string{"a: v1"}) {
		t.Errorf("closed %q", got)
	}
}

// TestRESTCloseConnections: the three :closeConnections close the hub's,
// a group's or a user's connections but the excluded ones, with the
// reason given (a default otherwise), and answer 204.
func TestRESTCloseConnections(t *testing.T) {
	f := newREST(t, "")
	for _, c := range []struct{ id, user string }{{"a1", "alice"}, {"a2", "alice"}, {"b1", "bob"}, {"c1", "carol"}, {"c2", "carol"}, {"d1", ""}} {
		f.conns.add(t, "Chat", c.id, c.user)
	}
	f.want("PUT", "/api/hubs/chat/groups/g/connections/b1", "", 200)
	f.want("PUT", "/api/hubs/chat/groups/g/connections/c1", "", 200)
	f.want("POST", "/api/hubs/chat/users/alice/:closeConnections?excluded=a2&reason=user+gone", "", 204)
	f.want("POST", "/api/hubs/chat/groups/g/:closeConnections?excluded=c1", "", 204)
	if got := f.conns.closedList(); !slices.Equal(got, []string{"a1: user gone", "b1: " + defaultCloseReason}) {
		t.Fatalf("closed %q", got)
	}
	f.want("POST", "/api/hubs/chat/:closeConnections?excluded=c2&excluded=d1&reason=maintenance", "", 204)
	if got := f.conns.closedList(); !slices.Equal(got, []string{"a1: user gone", "a2: maintenance", "b1: " + defaultCloseReason, "c1: maintenance"}) {
		t.Fatalf("closed %q", got)
	}
	if h := f.r.Hub("Chat"); h.Len() != 2 || !h.Lookup("c2") || !h.Lookup("d1") {
		t.Fatalf("left %d connections, want the excluded c2 and d1", h.Len())
	}
	if r := f.call("POST", "/api/hubs/news/:closeConnections", "", ""); r.code != 404 || r.errorCode(t) != codeHubNotExisted {
		t.Fatalf("unknown hub: %d %s", r.code, r.body)
	}
}

// TestRESTExistenceAndGroups: existence checks answer 404 with the codes
// the Management SDK expects; DELETE …/connections/{id}/groups takes a
// connection out of every group.
func TestRESTExistenceAndGroups(t *testing.T) {
	f := newREST(t, "")
	a := f.conns.add(t, "Chat", "a", "alice")
	f.want("PUT", "/api/hubs/chat/groups/g1/connections/a", "", 200)
	f.want("PUT", "/api/hubs/chat/groups/g2/connections/a", "", 200)
	for _, tc := range []struct {
		method, path string
		code         int
		errCode      string
	}{
		{"HEAD", "/api/hubs/chat/connections/a", 200, ""},
		{"HEAD", "/api/hubs/chat/connections/zz", 404, codeConnNotExisted},
		{"HEAD", "/api/hubs/chat/users/alice", 200, ""},
		{"HEAD", "/api/hubs/chat/users/bob", 404, codeUserNotExisted},
		{"HEAD", "/api/hubs/chat/groups/g1", 200, ""},
		{"HEAD", "/api/hubs/chat/groups/g9", 404, codeGroupNotExisted},
		{"HEAD", "/api/hubs/news/connections/a", 404, codeConnNotExisted},
		{"PUT", "/api/hubs/chat/groups/g1/connections/zz", 404, codeAddConnNotExisted},
		{"DELETE", "/api/hubs/chat/groups/g1/connections/zz", 404, codeConnNotExisted},
		{"DELETE", "/api/hubs/chat/connections/zz", 404, codeConnNotExisted},
		{"DELETE", "/api/hubs/chat/connections/a/groups", 200, ""},
		{"DELETE", "/api/hubs/chat/connections/zz/groups", 200, ""},
		{"HEAD", "/api/hubs/chat/groups/g1", 404, codeGroupNotExisted},
		{"HEAD", "/api/hubs/chat/groups/g2", 404, codeGroupNotExisted},
		// :invoke (rest_invoke.go; answered end to end in
		// test/e2e TestCompatStreams): bad requests only here.
		{"POST", "/api/hubs/chat/connections/a/:invoke?timeout=0", 400, ""},
		{"POST", "/api/hubs/chat/connections/a/:invoke?timeout=999999", 400, ""},
	} {
		r := f.call(tc.method, tc.path, `{"target":"t"}`, "")
		if r.code != tc.code || (tc.errCode != "" && r.errorCode(t) != tc.errCode) {
			t.Errorf("%s %s: %d %q %s, want %d %s", tc.method, tc.path, r.code, r.header.Get("x-ms-error-code"), r.body, tc.code, tc.errCode)
		}
	}
	f.want("POST", "/api/hubs/chat/groups/g1/:send", `{"target":"t"}`, 202)
	if len(frames(a)) != 0 {
		t.Error("a connection out of every group still got a group's message")
	}
}

// arrive tells the fleet a connection of user arrived, as the connection
// server's upstream event does.
func (f *restFixture) arrive(t *testing.T, hub, id, user string) *member {
	t.Helper()
	m := f.conns.add(t, hub, id, user)
	if err := f.h.fleet.Upstream(nil).Send(&backplane.Event{Kind: backplane.EventConnected, Hub: hub, ConnID: id, UserID: user}); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRESTUserGroups: a user added to a group belongs to it with its
// current connections and those it opens later, until the TTL; ttl=0
// adds only the current ones; removal takes them out; the check answers
// 404 Info.User.NotInGroup (HEAD, and GET as the Management SDK asks).
func TestRESTUserGroups(t *testing.T) {
	f := newREST(t, "")
	a1 := f.arrive(t, "Chat", "a1", "alice")
	f.want("PUT", "/api/hubs/chat/users/alice/groups/vip?ttl=2", "", 200)
	f.want("PUT", "/api/hubs/chat/users/alice/groups/forever", "", 200)
	f.want("PUT", "/api/hubs/chat/users/alice/groups/now?ttl=0", "", 200)
	if h := f.r.Hub("Chat"); h.GroupLen("vip") != 1 || h.GroupLen("forever") != 1 || h.GroupLen("now") != 1 {
		t.Fatal("the user's current connection did not join its groups")
	}
	a2 := f.arrive(t, "Chat", "a2", "alice")
	testutil.WaitUntil(t, 5*time.Second, "alice's new connection to join vip and forever", func() bool {
		return slices.Equal(slices.Sorted(slices.Values(f.r.Hub("Chat").ConnGroups("a2"))), []string{"forever", "vip"})
	})
	for _, p := range []string{"vip", "forever"} {
		if r := f.call("HEAD", "/api/hubs/chat/users/alice/groups/"+p, "", ""); r.code != 200 {
			t.Errorf("HEAD alice in %s: %d", p, r.code)
		}
	}
	for _, m := range []string{"HEAD", "GET"} {
		r := f.call(m, "/api/hubs/chat/users/alice/groups/now", "", "")
		if r.code != 404 || r.errorCode(t) != codeUserNotInGroup {
			t.Errorf("%s alice in now (ttl=0 stores nothing): %d %s", m, r.code, r.body)
		}
	}
	f.want("POST", "/api/hubs/chat/groups/vip/:send", `{"target":"vip"}`, 202)
	if len(frames(a1)) != 1 || len(frames(a2)) != 1 {
		t.Fatal("a send to vip did not reach both of alice's connections")
	}
	testutil.WaitUntil(t, 10*time.Second, "vip to expire on alice's connections", func() bool {
		return f.r.Hub("Chat").GroupLen("vip") == 0
	})
	if r := f.call("GET", "/api/hubs/chat/users/alice/groups/vip", "", ""); r.code != 404 {
		t.Errorf("alice in vip after its TTL: %d", r.code)
	}
	if f.r.Hub("Chat").GroupLen("forever") != 2 {
		t.Fatal("the expiry of vip took alice out of forever")
	}
	f.want("DELETE", "/api/hubs/chat/users/alice/groups/forever", "", 204)
	if f.r.Hub("Chat").GroupLen("forever") != 0 {
		t.Fatal("DELETE did not take alice's connections out of forever")
	}
	f.want("PUT", "/api/hubs/chat/users/alice/groups/x", "", 200)
	f.want("PUT", "/api/hubs/chat/users/alice/groups/y?ttl=100", "", 200)
	f.want("DELETE", "/api/hubs/chat/users/alice/groups", "", 204)
	if gs := f.r.Hub("Chat").ConnGroups("a1"); len(gs) != 0 {
		t.Fatalf("after DELETE …/users/alice/groups a1 is in %q", gs)
	}
	a3 := f.arrive(t, "Chat", "a3", "alice")
	_ = a3
	f.want("PUT", "/api/hubs/chat/users/bob/groups/probe", "", 200) // a later lookup, as a fence
	f.arrive(t, "Chat", "b1", "bob")
	testutil.WaitUntil(t, 5*time.Second, "bob's connection to join probe", func() bool { return f.r.Hub("Chat").GroupLen("probe") == 1 })
	if gs := f.r.Hub("Chat").ConnGroups("a3"); len(gs) != 0 {
		t.Fatalf("a connection of alice after she left every group joined %q", gs)
	}
	if r := f.call("PUT", "/api/hubs/chat/users/alice/groups/g?ttl=-1", "", ""); r.code != 400 || r.errorCode(t) != codeInvalid {
		t.Fatalf("negative ttl: %d %s", r.code, r.body)
	}
}

// TestRESTUserGroupCap: without a TTL a user keeps its latest 100 groups;
// its connections leave the group it lost.
func TestRESTUserGroupCap(t *testing.T) {
	f := newREST(t, "")
	f.arrive(t, "Chat", "a", "alice")
	for i := range backplane.MaxUserGroups + 1 {
		f.want("PUT", fmt.Sprintf("/api/hubs/chat/users/alice/groups/g%03d", i), "", 200)
	}
	gs := f.r.Hub("Chat").ConnGroups("a")
	if len(gs) != backplane.MaxUserGroups || slices.Contains(gs, "g000") {
		t.Fatalf("a is in %d groups (g000: %v), want the latest %d", len(gs), slices.Contains(gs, "g000"), backplane.MaxUserGroups)
	}
	if r := f.call("HEAD", "/api/hubs/chat/users/alice/groups/g000", "", ""); r.code != 404 {
		t.Fatalf("alice still in the oldest group: %d", r.code)
	}
}

// TestRESTListGroup: a group's connections a page at a time, ordered by
// connection id, with nextLink until top or the end.
func TestRESTListGroup(t *testing.T) {
	f := newREST(t, "")
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("c%d", 6-i)
		f.conns.add(t, "contoso_chat", id, "u"+id)
		f.want("PUT", "/api/hubs/chat/groups/room/connections/"+id+"?application=contoso", "", 200)
		want = append(want, id)
	}
	slices.Sort(want)
	list := func(path string) ([]string, string) {
		t.Helper()
		r := f.want("GET", path, "", 200)
		var p groupPage
		if err := json.Unmarshal([]byte(r.body), &p); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range p.Value {
			if m.UserID != "u"+m.ConnectionID {
				t.Errorf("member %+v: wrong user", m)
			}
			ids = append(ids, m.ConnectionID)
		}
		return ids, p.NextLink
	}
	var got []string
	path := "/api/hubs/chat/groups/room/connections?application=contoso&maxpagesize=3&api-version=2024-12-01"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("more than 3 pages of 3 for 7 members")
		}
		ids, next := list(path)
		if len(ids) > 3 {
			t.Fatalf("a page of %d, maxpagesize 3", len(ids))
		}
		got = append(got, ids...)
		path = ""
		if next != "" {
			u, err := url.Parse(next)
			if err != nil || u.Host != strings.TrimPrefix(f.ts.URL, "http://") || u.Query().Get("api-version") != "2024-12-01" {
				t.Fatalf("nextLink %q", next)
			}
			path = u.RequestURI()
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
	if ids, next := list("/api/hubs/chat/groups/room/connections?application=contoso&maxpagesize=2&top=3"); len(ids) != 2 || next == "" {
		t.Fatalf("top 3, page 2: %q next %q", ids, next)
	} else {
		u, _ := url.Parse(next)
		if ids2, next2 := list(u.RequestURI()); !slices.Equal(append(ids, ids2...), want[:3]) || next2 != "" {
			t.Fatalf("top 3: %q then %q (next %q)", ids, ids2, next2)
		}
	}
	if ids, next := list("/api/hubs/chat/groups/empty/connections"); len(ids) != 0 || next != "" {
		t.Fatalf("an empty group: %q %q", ids, next)
	}
	for _, q := range []string{"maxpagesize=0", "maxpagesize=201", "top=0", "continuationToken=%21%21"} {
		if r := f.call("GET", "/api/hubs/chat/groups/room/connections?"+q, "", ""); r.code != 400 || r.errorCode(t) != codeInvalid {
			t.Errorf("%s: %d %s", q, r.code, r.body)
		}
	}
}

// TestRESTAuthAsAzure: REST tokens signed HS256 or HS512, with the
// primary or the secondary key, whose audience is the request URL as the
// Management SDK writes it; :generateToken gives a client token the
// node's client endpoint accepts for the hub.
func TestRESTAuthAsAzure(t *testing.T) {
	const key = "rest-test-access-key-0123456789abcdef"
	f := newREST(t, key)
	f.conns.add(t, "Chat", "a", "")
	host := strings.TrimPrefix(f.ts.URL, "http://")
	hostNoPort, _, _ := strings.Cut(host, ":")
	const path = "/api/hubs/chat/connections/a"
	sign := func(alg, k, aud string) string {
		tok, err := auth.SignAlg(alg, map[string]any{"aud": aud, "exp": time.Now().Add(time.Minute).Unix(), "nameid": "machine_guid"}, []byte(k))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name, tok string
		code      int
	}{
		{"HS256, the SDK's audience", sign("HS256", key, "http://"+hostNoPort+"/api/hubs/chat/connections/a?api-version=2022-06-01"), 200},
		{"HS512", sign("HS512", key, f.ts.URL+path), 200},
		{"secondary key", sign("HS256", secondaryIf(key), f.ts.URL+path), 200},
		{"upper case, trailing slash", sign("HS256", key, "HTTP://"+strings.ToUpper(hostNoPort)+"/API/HUBS/CHAT/CONNECTIONS/A/"), 200},
		{"another key", sign("HS256", "another-key-0123456789abcdef0123456789", f.ts.URL+path), 401},
		{"another connection", sign("HS256", key, f.ts.URL+"/api/hubs/chat/connections/b"), 401},
	} {
		req, _ := http.NewRequest("HEAD", f.ts.URL+path+"?api-version=2022-06-01", nil)
		req.Header.Set("Authorization", "Bearer "+tc.tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.code == 401 && resp.Header.Get("x-ms-error-code") != codeUnauthorized) {
			t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, resp.Header.Get("x-ms-error-code"), tc.code)
		}
	}

	r := f.want("POST", "/api/hubs/CHAT/:generateToken?userId=alice&minutesToExpire=5&api-version=2023-07-01", "", 200)
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(r.body), &tok); err != nil {
		t.Fatal(err)
	}
	c, err := auth.Verify(tok.Token, []byte(key), time.Now())
	if err != nil {
		t.Fatalf("generated token: %v", err)
	}
	if err := c.CheckClient(hostNoPort+":8080", "Chat"); err != nil || c.UserID() != "alice" || *c.Exp > time.Now().Add(6*time.Minute).Unix() {
		t.Fatalf("generated token: %v, user %q, exp %d (aud %q)", err, c.UserID(), *c.Exp, c.Audience)
	}
	if err := c.CheckREST(host, "/api/hubs/chat/:send"); err == nil {
		t.Fatal("a generated client token opens the REST API")
	}
	if r := f.call("POST", "/api/hubs/chat/:generateToken?minutesToExpire=0", "", ""); r.code != 400 {
		t.Fatalf("minutesToExpire=0: %d", r.code)
	}
}
