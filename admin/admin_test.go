package admin

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// closer records REST closes; it knows the connections in ids.
type closer struct {
	mu     sync.Mutex
	ids    map[string]bool
	closed []string
}

func (c *closer) CloseConnection(hub, id, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ids[id] {
		return false
	}
	c.closed = append(c.closed, hub+"/"+id+": "+reason)
	return true
}

type member struct {
	mu     sync.Mutex
	frames []string
	mp     bool // speaks MessagePack
}

func (m *member) Deliver(f *fanout.Frames) int {
	id := hubproto.IDJSON
	if m.mp {
		id = hubproto.IDMessagePack
	}
	fr := f.Frame(id)
	m.mu.Lock()
	m.frames = append(m.frames, string(fr))
	m.mu.Unlock()
	return len(fr)
}
func (m *member) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.frames...)
}

type fixture struct {
	ts      *httptest.Server
	h       *Handler
	router  *fanout.Router
	closer  *closer
	metrics *metricset.Registry
}

func setup(t *testing.T, key string) *fixture {
	t.Helper()
	bp := backplane.NewMemory()
	router := fanout.NewRouter([]string{"chat"}, bp)
	if err := bp.Start(router); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	f := &fixture{router: router, closer: &closer{ids: map[string]bool{"a": true}}, metrics: metricset.NewRegistry()}
	h, err := New(Config{Router: router, Backplane: bp, Conns: f.closer, Metrics: f.metrics, AccessKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	f.h = h
	f.ts = httptest.NewServer(h)
	t.Cleanup(f.ts.Close)
	return f
}

func do(t *testing.T, method, url, body, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSendAndGroups(t *testing.T) {
	f := setup(t, "")
	ts := f.ts
	h := f.router.Hub("chat")
	a, b := &member{}, &member{}
	h.Add(a, "a", "alice")
	h.Add(b, "b", "")
	if c, body := do(t, "PUT", ts.URL+"/api/hubs/chat/groups/g/connections/a", "", ""); c != 200 {
		t.Fatalf("PUT group: %d %s", c, body)
	}
	if c, body := do(t, "PUT", ts.URL+"/api/hubs/chat/groups/g/connections/zz", "", ""); c != 404 || !strings.Contains(body, "not found") {
		t.Fatalf("PUT unknown: %d %s", c, body)
	}
	for _, path := range []string{"/api/hubs/chat/:send?excluded=a", "/api/hubs/chat/groups/g/:send", "/api/hubs/chat/users/alice/:send"} {
		if c, body := do(t, "POST", ts.URL+path, `{"target":"t","arguments":[1,"x"]}`, ""); c != 202 {
			t.Fatalf("POST %s: %d %s", path, c, body)
		}
	}
	want := "\x81" + string(rune(len(`{"type":1,"target":"t","arguments":[1,"x"]}`+"\x1e"))) + `{"type":1,"target":"t","arguments":[1,"x"]}` + "\x1e"
	if got := a.got(); len(got) != 2 || got[0] != want {
		t.Fatalf("a got %q", got)
	}
	if got := b.got(); len(got) != 1 {
		t.Fatalf("b got %q", got)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/api/hubs/nope/:send", `{"target":"t"}`, 404},
		{"POST", "/api/hubs/chat/:send", `not json`, 400},
		{"POST", "/api/hubs/chat/:send", `{"target":"t","arguments":"x"}`, 400},
		{"HEAD", "/api/hubs/chat/groups/g", "", 200},
		{"HEAD", "/api/hubs/chat/users/alice", "", 200},
		{"HEAD", "/api/hubs/chat/connections/b", "", 200},
		{"HEAD", "/api/hubs/chat/connections/zz", "", 404},
		{"GET", "/readyz", "", 200},
		{"GET", "/healthz", "", 200},
	} {
		if c, body := do(t, tc.method, ts.URL+tc.path, tc.body, ""); c != tc.code {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, c, tc.code, body)
		}
	}
}

// restToken signs a REST token for url (the request URL is the audience).
func restToken(t *testing.T, key, url string, claims map[string]any) string {
	t.Helper()
	m := map[string]any{"aud": url, "exp": time.Now().Add(time.Minute).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	tok, err := auth.Sign(m, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestAuth: the REST API takes only REST tokens: signed with the access
// key, with exp, and whose audience is the request URL (Azure SignalR's
// rule, matched as leniently as its Management SDK writes it). A client's
// access token, a token for another URL and one that never expires are
// refused with 401 and a message saying why.
func TestAuth(t *testing.T) {
	const key = "admin-test-access-key-0123456789"
	ts := setup(t, key).ts
	const path = "/api/hubs/chat/:send"
	host := strings.TrimPrefix(ts.URL, "http://")
	hostNoPort, _, _ := strings.Cut(host, ":")
	for _, tc := range []struct {
		name, tok string
		code      int
		why       string
	}{
		{"no token", "", 401, "missing bearer token"},
		{"wrong key", restToken(t, "another-key-of-32-bytes-at-least!", ts.URL+path, nil), 401, "bad signature"},
		{"no exp", restToken(t, key, ts.URL+path, map[string]any{"exp": nil}), 401, "no exp"},
		{"expired", restToken(t, key, ts.URL+path, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), 401, "expired"},
		{"no aud", restToken(t, key, "", map[string]any{"aud": nil}), 401, "audience"},
		{"a client access token", restToken(t, key, ts.URL+"/chat", map[string]any{"nameid": "alice"}), 401, "audience"},
		{"an Azure client access token", restToken(t, key, "http://"+hostNoPort+"/client/?hub=chat", nil), 401, "audience"},
		{"the node's base URL", restToken(t, key, ts.URL, nil), 401, "audience"},
		{"another REST path", restToken(t, key, ts.URL+"/api/hubs/chat/groups/g/:send", nil), 401, "audience"},
		{"the request URL", restToken(t, key, ts.URL+path, nil), 202, ""},
		{"as the Management SDK writes it", restToken(t, key, "https://"+hostNoPort+"/api/hubs/CHAT/:send/?api-version=2022-06-01", nil), 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, "POST", ts.URL+path, `{"target":"t"}`, tc.tok)
			if code != tc.code || !strings.Contains(body, tc.why) {
				t.Fatalf("%d %s, want %d mentioning %q", code, body, tc.code, tc.why)
			}
		})
	}
	if c, _ := do(t, "GET", ts.URL+"/metrics", "", ""); c != 200 {
		t.Fatalf("metrics must not need a token: %d", c)
	}
}

// TestPprof: /debug/pprof/ needs a REST token for its URL when an access
// key is configured, answers only loopback clients without one, and
// refuses profiles longer than MaxProfileSeconds.
func TestPprof(t *testing.T) {
	const key = "admin-test-access-key-0123456789"
	ts := setup(t, key).ts
	if c, _ := do(t, "GET", ts.URL+"/debug/pprof/", "", ""); c != 401 {
		t.Fatalf("pprof without a token: %d, want 401", c)
	}
	if c, _ := do(t, "GET", ts.URL+"/debug/pprof/", "", restToken(t, key, ts.URL+"/api/hubs/chat/:send", nil)); c != 401 {
		t.Fatalf("pprof with a token for another URL: %d, want 401", c)
	}
	if c, body := do(t, "GET", ts.URL+"/debug/pprof/", "", restToken(t, key, ts.URL+"/debug/pprof/", nil)); c != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index with a token: %d %.200s", c, body)
	}
	if c, _ := do(t, "GET", ts.URL+"/debug/pprof/goroutine?debug=1", "", restToken(t, key, ts.URL+"/debug/pprof/goroutine", nil)); c != 200 {
		t.Fatalf("goroutine profile with a token: %d", c)
	}
	// Refused at once (a client time-out, so that an unbounded profile
	// fails the test instead of running for an hour).
	quick := &http.Client{Timeout: 5 * time.Second}
	for _, q := range []string{"seconds=3600", "seconds=61", "seconds=0", "seconds=-1", "seconds=abc"} {
		for _, p := range []string{"/debug/pprof/profile", "/debug/pprof/heap"} {
			req, _ := http.NewRequest("GET", ts.URL+p+"?"+q, nil)
			req.Header.Set("Authorization", "Bearer "+restToken(t, key, ts.URL+p, nil))
			resp, err := quick.Do(req)
			if err != nil {
				t.Errorf("GET %s?%s: %v, want 400 at once", p, q, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !strings.Contains(string(body), "seconds") {
				t.Errorf("GET %s?%s: %d %s, want 400", p, q, resp.StatusCode, body)
			}
		}
	}
	if c, _ := do(t, "GET", ts.URL+"/debug/pprof/heap?seconds=1", "", restToken(t, key, ts.URL+"/debug/pprof/heap", nil)); c != 200 {
		t.Fatalf("a 1 s heap delta profile: %d", c)
	}

	// Without an access key: loopback clients only.
	open := setup(t, "")
	if c, _ := do(t, "GET", open.ts.URL+"/debug/pprof/", "", ""); c != 200 {
		t.Fatalf("open node, loopback client: %d", c)
	}
	for _, remote := range []string{"10.0.0.7:4242", "[2001:db8::1]:4242", "garbage"} {
		req := httptest.NewRequest("GET", "/debug/pprof/", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		open.h.ServeHTTP(rec, req)
		if rec.Code != 403 {
			t.Errorf("open node, client %s: %d, want 403", remote, rec.Code)
		}
	}
}

// TestServerTimeouts: the admin server closes a request whose body stalls
// (ReadTimeout) and a keep-alive connection left idle (IdleTimeout);
// without them each holds a connection and a goroutine for ever.
func TestServerTimeouts(t *testing.T) {
	bp := backplane.NewMemory()
	router := fanout.NewRouter([]string{"chat"}, bp)
	if err := bp.Start(router); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	h, err := New(Config{Router: router, Backplane: bp, Conns: &closer{}, ReadTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	srv := h.Server()
	if srv.ReadHeaderTimeout <= 0 || srv.WriteTimeout <= MaxProfileSeconds*time.Second {
		t.Fatalf("ReadHeaderTimeout %v, WriteTimeout %v (must exceed the longest profile)", srv.ReadHeaderTimeout, srv.WriteTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	closedWithin := func(name string, c net.Conn, d time.Duration) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("%s: the server kept the connection open for %v", name, d)
				}
				return // closed by the server
			}
		}
	}
	stalled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	io.WriteString(stalled, "POST /api/hubs/chat/:send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"tar")
	closedWithin("stalled body", stalled, 5*time.Second)

	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	closedWithin("idle keep-alive", idle, 5*time.Second)
}

func TestReadyzDraining(t *testing.T) {
	f := setup(t, "")
	if c, _ := do(t, "GET", f.ts.URL+"/readyz", "", ""); c != 200 {
		t.Fatalf("readyz before draining: %d", c)
	}
	f.h.SetDraining()
	if c, _ := do(t, "GET", f.ts.URL+"/readyz", "", ""); c != 503 {
		t.Fatalf("readyz while draining: %d", c)
	}
}

func TestCloseConnection(t *testing.T) {
	f := setup(t, "")
	if c, body := do(t, "DELETE", f.ts.URL+"/api/hubs/chat/connections/a?reason=bye", "", ""); c != 200 {
		t.Fatalf("DELETE known: %d %s", c, body)
	}
	if c, body := do(t, "DELETE", f.ts.URL+"/api/hubs/chat/connections/zz", "", ""); c != 404 || !strings.Contains(body, `"code":"Warning.Connection.NotExisted"`) {
		t.Fatalf("DELETE unknown: %d %s", c, body)
	}
	if c, _ := do(t, "DELETE", f.ts.URL+"/api/hubs/chat/connections/a", "", ""); c != 200 {
		t.Fatalf("DELETE without reason: %d", c)
	}
	f.closer.mu.Lock()
	defer f.closer.mu.Unlock()
	want := []string{"chat/a: bye", "chat/a: closed by the server"}
	if strings.Join(f.closer.closed, "|") != strings.Join(want, "|") {
		t.Fatalf("closed %q, want %q", f.closer.closed, want)
	}
}

func TestMetricsWritesTheRegistry(t *testing.T) {
	f := setup(t, "")
	set := metricset.New()
	set.Counter("edgeplane_admin_test_total", "A counter of the test.").Add(4)
	f.metrics.Register(set)
	c, body := do(t, "GET", f.ts.URL+"/metrics", "", "")
	if c != 200 || !strings.Contains(body, "# HELP edgeplane_admin_test_total A counter of the test.\nedgeplane_admin_test_total 4\n") {
		t.Fatalf("/metrics: %d\n%s", c, body)
	}
}

func TestNewNeedsItsParts(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a config without router, backplane and closer")
	}
}

// TestSendRefusesWhatNoClientCanTake: a send whose arguments are not
// valid UTF-8 gets 400, one whose frame could never fit a connection's
// outbound queue (or whose body is over the REST limit) gets 413; nothing
// is published, so no client is broken or closed as a slow client, and
// the next good send is delivered. (Issue 12 items 6 and 7: both used to
// answer 202; the first broke every recipient's connection, the second,
// with the defaults and a 1 MiB body, closed every recipient.)
func TestSendRefusesWhatNoClientCanTake(t *testing.T) {
	f := setup(t, "")
	f.router.MaxFrameBytes = 1 << 20 // the poller's default queue limit
	a := &member{}
	f.router.Hub("chat").Add(a, "a", "")
	pad := func(size int) string { // a body of exactly size bytes
		head, tail := `{"target":"t","arguments":["`, `"]}`
		return head + strings.Repeat("x", size-len(head)-len(tail)) + tail
	}
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"invalid UTF-8 in arguments", "{\"target\":\"t\",\"arguments\":[\"\xff\xfe\"]}", 400, "not valid UTF-8"},
		{"truncated rune in arguments", "{\"target\":\"t\",\"arguments\":[{\"k\":\"\xe2\x82\"}]}", 400, "not valid UTF-8"},
		{"1 MiB body: frame over the queue", pad(1 << 20), 413, "outbound queue holds at most 1048576"},
		{"body over the REST limit", pad(1<<20 + 1), 413, "request body over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, body := do(t, "POST", f.ts.URL+"/api/hubs/chat/:send", tc.body, "")
			if c != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s, want %d with %q", c, body, tc.code, tc.want)
			}
			if got := a.got(); len(got) != 0 {
				t.Fatalf("the refused message reached a client: %d frames", len(got))
			}
		})
	}
	// Just under the limit still goes through, whole.
	body := pad(1<<20 - 64)
	if c, resp := do(t, "POST", f.ts.URL+"/api/hubs/chat/:send", body, ""); c != 202 {
		t.Fatalf("a send that fits: %d %s", c, resp)
	}
	if got := a.got(); len(got) != 1 || len(got[0]) > 1<<20 || !strings.Contains(got[0], body[len(`{"target":"t","arguments":[`):len(body)-1]) {
		t.Fatalf("the send that fits: %d frames", len(got))
	}
}
