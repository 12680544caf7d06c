package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// mgmtClient calls the REST API as Microsoft.Azure.SignalR.Management
// (transient mode, RestHubLifetimeManager and RestApiProvider, API
// 2022-06-01) does: the hub (and application) lower-cased in the path,
// ?application=…&api-version=2022-06-01, a token whose aud is the same
// URL on the audience base (no port) with nameid {machine}_{guid}, bodies
// as JsonPayloadMessageContent ({"Target","Arguments"}) or
// BinaryPayloadMessageContent (application/octet-stream, a MessagePack
// map of protocol → serialized message), and 404s it expects (a
// connection, user or group that does not exist) taken as answers when
// they carry the x-ms-error-code it looks for.
type mgmtClient struct {
	t        *testing.T
	server   string // ServerEndpoint.AbsoluteUri: http://127.0.0.1:port/
	audience string // AudienceBaseUrl: http://127.0.0.1/
	key      string
	hub, app string
	binary   bool
	// protocols are the app's hub protocols, the entries of a binary
	// body in this order; nil: json and messagepack.
	protocols []string
	name      string
}

func newMgmt(t *testing.T, n *node.Node, key, hub string, binary bool) *mgmtClient {
	host, _, _ := strings.Cut(n.AdminAddr().String(), ":")
	return &mgmtClient{t: t, server: restURL(n) + "/", audience: "http://" + host + "/", key: key, hub: hub, binary: binary, name: "testmachine_0123456789abcdef0123456789abcdef"}
}

// sdkError is what the SDK throws: the status of a response it did not
// expect.
type sdkError struct {
	status int
	code   string
	body   string
}

func (e *sdkError) Error() string { return fmt.Sprintf("%d %s %s", e.status, e.code, e.body) }

// call sends one request; expected, if set, is the error code of a 404
// the SDK takes as an answer. It returns the status.
func (m *mgmtClient) call(method, pathAfterHub string, query url.Values, payload *[2]any, expected string) (int, error) {
	m.t.Helper()
	hub := url.PathEscape(strings.ToLower(m.hub))
	tail := pathAfterHub + "?api-version=2022-06-01"
	if m.app != "" {
		tail = pathAfterHub + "?application=" + url.QueryEscape(strings.ToLower(m.app)) + "&api-version=2022-06-01"
	}
	u := m.server + "api/hubs/" + hub + tail
	if len(query) > 0 {
		u += "&" + query.Encode()
	}
	now := time.Now()
	tok, err := auth.Sign(map[string]any{"nameid": m.name, "aud": m.audience + "api/hubs/" + hub + tail,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}, []byte(m.key))
	if err != nil {
		m.t.Fatal(err)
	}
	var body []byte
	ctype := ""
	if payload != nil {
		if m.binary {
			entries := m.entries(payload)
			body = msgp.AppendMapHeader(nil, uint32(len(entries)))
			for _, e := range entries {
				body = msgp.AppendString(body, e[0])
				body = msgp.AppendBytes(body, []byte(e[1]))
			}
			ctype = "application/octet-stream"
		} else {
			body, _ = json.Marshal(map[string]any{"Target": payload[0], "Arguments": payload[1]})
			ctype = "application/json; charset=utf-8"
		}
	}
	req, _ := http.NewRequest(method, u, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+tok)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, u, err)
	}
	rb := readAll(resp)
	code := resp.Header.Get("x-ms-error-code")
	if resp.StatusCode < 300 || resp.StatusCode == 404 && expected != "" && strings.EqualFold(code, expected) {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, &sdkError{resp.StatusCode, code, string(rb)}
}

// entries are a binary body's entries (protocol name, serialized and
// framed message), as BinaryPayloadMessageContent writes them: one per
// hub protocol of the app, each protocol serializing the arguments its
// own way (MessagePack: []byte as bin, float64 as float64; JSON: []byte
// as base64).
func (m *mgmtClient) entries(payload *[2]any) [][2]string {
	m.t.Helper()
	target, args := payload[0].(string), payload[1].([]any)
	protocols := m.protocols
	if protocols == nil {
		protocols = []string{"json", "messagepack"}
	}
	var out [][2]string
	for _, p := range protocols {
		var rec []byte
		var err error
		switch p {
		case "json":
			argsJSON, _ := json.Marshal(args)
			rec, err = hubproto.JSON.AppendInvocation(nil, "", target, argsJSON)
		case "messagepack":
			var mpArgs []byte
			if mpArgs, err = msgp.AppendIntf(nil, args); err == nil {
				rec, err = hubproto.MessagePack.AppendInvocation(nil, "", target, mpArgs)
			}
		default:
			m.t.Fatalf("protocol %q", p)
		}
		if err != nil {
			m.t.Fatal(err)
		}
		out = append(out, [2]string{p, string(rec)})
	}
	return out
}

func (m *mgmtClient) ok(method, path string, query url.Values, payload *[2]any, expected string) int {
	m.t.Helper()
	status, err := m.call(method, path, query, payload, expected)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	return status
}

func msg(target string, args ...any) *[2]any {
	if args == nil {
		args = []any{}
	}
	return &[2]any{target, args}
}

func (m *mgmtClient) SendAll(p *[2]any, excluded ...string) {
	m.t.Helper()
	m.ok("POST", "/:send", url.Values{"excluded": excluded}, p, "")
}
func (m *mgmtClient) SendUser(user string, p *[2]any) {
	m.t.Helper()
	m.ok("POST", "/users/"+url.PathEscape(user)+"/:send", nil, p, "")
}
func (m *mgmtClient) SendConnection(id string, p *[2]any) {
	m.t.Helper()
	m.ok("POST", "/connections/"+url.PathEscape(id)+"/:send", nil, p, "")
}
func (m *mgmtClient) SendGroup(group string, p *[2]any, excluded ...string) {
	m.t.Helper()
	m.ok("POST", "/groups/"+url.PathEscape(group)+"/:send", url.Values{"excluded": excluded}, p, "")
}
func (m *mgmtClient) AddToGroup(id, group string) int {
	m.t.Helper()
	return m.ok("PUT", "/groups/"+url.PathEscape(group)+"/connections/"+url.PathEscape(id), nil, nil, "Error.Connection.NotExisted")
}
func (m *mgmtClient) RemoveFromAllGroups(id string) {
	m.t.Helper()
	m.ok("DELETE", "/connections/"+url.PathEscape(id)+"/groups", nil, nil, "")
}
func (m *mgmtClient) UserAddToGroup(user, group string, ttl time.Duration) {
	m.t.Helper()
	var q url.Values
	if ttl > 0 {
		q = url.Values{"ttl": {strconv.Itoa(int(ttl.Seconds()))}}
	}
	m.ok("PUT", "/users/"+url.PathEscape(user)+"/groups/"+url.PathEscape(group), q, nil, "")
}
func (m *mgmtClient) UserRemoveFromAllGroups(user string) {
	m.t.Helper()
	m.ok("DELETE", "/users/"+url.PathEscape(user)+"/groups", nil, nil, "")
}

// IsUserInGroup asks with GET, as the SDK does.
func (m *mgmtClient) IsUserInGroup(user, group string) bool {
	m.t.Helper()
	return m.ok("GET", "/users/"+url.PathEscape(user)+"/groups/"+url.PathEscape(group), nil, nil, "Info.User.NotInGroup") == 200
}
func (m *mgmtClient) CloseConnection(id, reason string) int {
	m.t.Helper()
	return m.ok("DELETE", "/connections/"+url.PathEscape(id), url.Values{"reason": {reason}}, nil, "Warning.Connection.NotExisted")
}
func (m *mgmtClient) ConnectionExists(id string) bool {
	m.t.Helper()
	return m.ok("HEAD", "/connections/"+url.PathEscape(id), nil, nil, "Warning.Connection.NotExisted") == 200
}
func (m *mgmtClient) UserExists(user string) bool {
	m.t.Helper()
	return m.ok("HEAD", "/users/"+url.PathEscape(user), nil, nil, "Warning.User.NotExisted") == 200
}
func (m *mgmtClient) GroupExists(group string) bool {
	m.t.Helper()
	return m.ok("HEAD", "/groups/"+url.PathEscape(group), nil, nil, "Warning.Group.NotExisted") == 200
}
func (m *mgmtClient) CloseConnections(scope string, reason string, excluded ...string) {
	m.t.Helper()
	m.ok("POST", scope+"/:closeConnections", url.Values{"reason": {reason}, "excluded": excluded}, nil, "")
}

// ListGroup pages through a group's connections, maxpagesize at a time,
// following nextLink (2024-12-01).
func (m *mgmtClient) ListGroup(group string, pageSize int) (ids []string, pages int) {
	m.t.Helper()
	u := m.server + "api/hubs/" + strings.ToLower(m.hub) + "/groups/" + url.PathEscape(group) + "/connections?maxpagesize=" + strconv.Itoa(pageSize) + "&api-version=2024-12-01"
	for u != "" {
		pages++
		resp, body := restRequest(m.t, m.key, "GET", u, "", nil)
		var p struct {
			Value []struct {
				ConnectionID string `json:"connectionId"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
			m.t.Fatalf("list %s: %d %s", group, resp.StatusCode, body)
		}
		if len(p.Value) > pageSize {
			m.t.Fatalf("a page of %d, maxpagesize %d", len(p.Value), pageSize)
		}
		for _, v := range p.Value {
			ids = append(ids, v.ConnectionID)
		}
		u = p.NextLink
		if pages > 50 {
			m.t.Fatal("nextLink never ends")
		}
	}
	return ids, pages
}

const sdkKey = "sdk-test-access-key-0123456789abcdef0123"

// received waits until every client in want has msg and then checks the
// others have not: a marker sent to all afterwards fences what was
// delivered before it.
func received(t *testing.T, m *mgmtClient, msg string, all []*client, want ...*client) {
	t.Helper()
	for _, c := range want {
		testutil.WaitUntil(t, 10*time.Second, c.user+"/"+c.id+" to receive "+msg, func() bool { return c.has(msg) })
	}
	marker := fmt.Sprintf("fence-%d", time.Now().UnixNano())
	var live []*client
	for _, c := range all {
		if !c.gone() {
			live = append(live, c)
		}
	}
	m.SendAll(&[2]any{marker, []any{}})
	for _, c := range live {
		testutil.WaitUntil(t, 10*time.Second, c.user+"/"+c.id+" to receive the fence", func() bool { return c.has(marker + ":[]") })
		if !slices.Contains(want, c) && c.has(msg) {
			t.Errorf("%s/%s received %s", c.user, c.id, msg)
		}
	}
}

// startSDKFleet starts two nodes of hub ChatHub on one real Redis.
func startSDKFleet(t *testing.T) (*node.Node, *node.Node) {
	srv := redistest.Start(t)
	start := func() *node.Node {
		return nodetest.Start(t, node.Config{
			Hubs:  []node.Hub{{Name: "ChatHub"}},
			Conn:  conn.Config{AccessKey: sdkKey},
			Redis: &backplane.RedisConfig{URL: srv.URL()},
		})
	}
	return start(), start()
}

// TestManagementSDKFleet drives a two-node fleet on one Redis with a
// Management-SDK-shaped client, sending through one node and the other:
// sends of every kind (MessagePack and JSON bodies) reach the clients on
// both nodes; group membership of a connection on the other node; the
// existence checks see the whole fleet; a user's group membership with a
// TTL covers its connections on both nodes and ends with the TTL; one
// without TTL covers a connection the user opens later; a connection
// leaves every group; a group's members are listed across nodes a page at
// a time; closes of a connection, a user's, a group's and the hub's
// connections reach the other node, with the reason and the excluded ids.
func TestManagementSDKFleet(t *testing.T) {
	n1, n2 := startSDKFleet(t)
	m1 := newMgmt(t, n1, sdkKey, "ChatHub", true) // MessagePack bodies
	m2 := newMgmt(t, n2, sdkKey, "ChatHub", false)
	a1 := connect(t, n1, sdkKey, "ChatHub", "alice")
	a2 := connect(t, n2, sdkKey, "ChatHub", "alice")
	b1 := connect(t, n2, sdkKey, "ChatHub", "bob")
	c1 := connect(t, n1, sdkKey, "ChatHub", "")
	all := []*client{a1, a2, b1, c1}
	// The nodes learn of each other's connections through Redis
	// subscriptions: wait until each sees the others.
	testutil.WaitUntil(t, 10*time.Second, "the fleet to see every connection", func() bool {
		for _, c := range all {
			if st, _ := m1.call("HEAD", "/connections/"+c.id, nil, nil, "Warning.Connection.NotExisted"); st != 200 {
				return false
			}
		}
		return true
	})

	m1.SendAll(msg("all", 1))
	received(t, m1, "all:[1]", all, all...)
	m2.SendAll(msg("others", "x"), a1.id, c1.id)
	received(t, m1, `others:["x"]`, all, a2, b1)
	m2.SendUser("alice", msg("alice", true))
	received(t, m1, "alice:[true]", all, a1, a2)
	m1.SendConnection(b1.id, msg("direct", map[string]any{"k": []int{1, 2}}))
	received(t, m1, `direct:[{"k":[1,2]}]`, all, b1)

	// A connection on the other node joins a group.
	if st := m1.AddToGroup(b1.id, "room"); st != 200 {
		t.Fatalf("AddToGroup(b1 on node 2) through node 1: %d", st)
	}
	if st := m1.AddToGroup("no-such-connection", "room"); st != 404 {
		t.Fatalf("AddToGroup(unknown): %d, want the 404 the SDK expects", st)
	}
	m1.SendGroup("room", msg("room", 1))
	received(t, m1, "room:[1]", all, b1)

	// Existence, fleet-wide, from the node that does not hold it.
	if !m1.ConnectionExists(b1.id) || m1.ConnectionExists("no-such-connection") {
		t.Error("ConnectionExists through node 1")
	}
	if !m1.UserExists("bob") || m2.UserExists("carol") {
		t.Error("UserExists")
	}
	if !m1.GroupExists("room") || m1.GroupExists("no-such-group") {
		t.Error("GroupExists")
	}

	// A user group with a TTL: alice's connections on both nodes.
	m2.UserAddToGroup("alice", "vip", 2*time.Second)
	if !m1.IsUserInGroup("alice", "vip") || m1.IsUserInGroup("bob", "vip") {
		t.Fatal("IsUserInGroup after the add")
	}
	m1.SendGroup("vip", msg("vip", 1))
	received(t, m1, "vip:[1]", all, a1, a2)
	testutil.WaitUntil(t, 10*time.Second, "vip to expire on both nodes", func() bool {
		return !m2.IsUserInGroup("alice", "vip") && n1.Router().Hub("ChatHub").GroupLen("vip") == 0 && n2.Router().Hub("ChatHub").GroupLen("vip") == 0
	})
	m1.SendGroup("vip", msg("vip", 2))
	received(t, m1, "vip:[2]", all)

	// Without a TTL: a connection bob opens later, on the other node,
	// joins too (from the membership in Redis).
	m1.UserAddToGroup("bob", "late", 0)
	b2 := connect(t, n1, sdkKey, "ChatHub", "bob")
	all = append(all, b2)
	testutil.WaitUntil(t, 10*time.Second, "bob's new connection to join late", func() bool {
		return n1.Router().Hub("ChatHub").GroupLen("late") == 1
	})
	m2.SendGroup("late", msg("late", 1))
	received(t, m1, "late:[1]", all, b1, b2)

	// A connection leaves every group: b1 is out of room and late.
	m1.RemoveFromAllGroups(b1.id)
	m1.SendGroup("late", msg("late", 2))
	m1.SendGroup("room", msg("room", 2))
	received(t, m1, "late:[2]", all, b2)
	if b1.has("room:[2]") {
		t.Error("b1 got room after leaving every group")
	}
	m2.UserRemoveFromAllGroups("bob")
	if m1.IsUserInGroup("bob", "late") {
		t.Error("bob still in late")
	}

	// List a group with members on both nodes, one per page.
	for _, c := range []*client{a1, a2, b2, c1} {
		m2.AddToGroup(c.id, "big")
	}
	ids, pages := m1.ListGroup("big", 1)
	want := []string{a1.id, a2.id, b2.id, c1.id}
	slices.Sort(want)
	if !slices.Equal(ids, want) || pages != 4 {
		t.Fatalf("listed %q in %d pages, want %q in 4", ids, pages, want)
	}
	if ids, _ := m2.ListGroup("big", 3); !slices.Equal(ids, want) {
		t.Fatalf("listed %q by 3, want %q", ids, want)
	}

	// Closes.
	if st := m1.CloseConnection(a2.id, "bye a2"); st != 200 {
		t.Fatalf("CloseConnection(a2 on node 2) through node 1: %d", st)
	}
	testutil.WaitUntil(t, 10*time.Second, "a2 to be closed with its reason", func() bool { return a2.gone() && strings.Contains(a2.closeReason(), "bye a2") })
	if st := m1.CloseConnection(a2.id, "again"); st != 404 {
		t.Fatalf("CloseConnection of a closed connection: %d", st)
	}
	m2.CloseConnections("/users/bob", "bob out", b2.id)
	testutil.WaitUntil(t, 10*time.Second, "b1 to be closed", func() bool { return b1.gone() && strings.Contains(b1.closeReason(), "bob out") })
	d1 := connect(t, n2, sdkKey, "ChatHub", "dave")
	m1.CloseConnections("", "everyone out", c1.id)
	for _, c := range []*client{a1, b2, d1} {
		testutil.WaitUntil(t, 10*time.Second, c.user+" to be closed by the hub-wide close", func() bool {
			return c.gone() && strings.Contains(c.closeReason(), "everyone out")
		})
	}
	m1.SendAll(msg("last"))
	received(t, m1, "last:[]", []*client{c1}, c1)
	if !m2.ConnectionExists(c1.id) || m2.UserExists("alice") {
		t.Error("after the closes: the excluded connection must remain, alice must be gone")
	}
}
