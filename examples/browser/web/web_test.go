package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const key = "web-example-access-key-0123456789-abcdef"

// start runs a real node with an access key and the example's handler in
// front of it; modules is the node_modules directory it serves from.
func start(t *testing.T, modules string) (n *node.Node, page *httptest.Server) {
	t.Helper()
	n = nodetest.Start(t, node.Config{Conn: conn.Config{AccessKey: key}})
	page = httptest.NewServer(Handler(Config{
		HubURL:      "http://" + n.Addr().String() + "/chat",
		AdminURL:    "http://" + n.AdminAddr().String(),
		AccessKey:   key,
		NodeModules: modules,
		Logger:      slog.New(slog.DiscardHandler),
	}))
	t.Cleanup(page.Close)
	return n, page
}

func do(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTokenOpensHub: the token the page gets is a client token the node
// accepts for the hub, with the user id; without it negotiate is refused.
func TestTokenOpensHub(t *testing.T) {
	n, page := start(t, t.TempDir())
	code, tok := do(t, "GET", page.URL+"/token?user=bob", "")
	if code != 200 || tok == "" {
		t.Fatalf("GET /token: %d %q", code, tok)
	}
	cl, err := auth.Verify(tok, []byte(key), time.Now())
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if cl.UserID() != "bob" {
		t.Errorf("token user %q, want bob", cl.UserID())
	}
	negotiate := "http://" + n.Addr().String() + "/chat/negotiate?negotiateVersion=1"
	if code, body := do(t, "POST", negotiate, "", "Authorization", "Bearer "+tok); code != 200 {
		t.Fatalf("negotiate with the page's token: %d %s", code, body)
	}
	if code, _ := do(t, "POST", negotiate, ""); code != 401 {
		t.Fatalf("negotiate without a token: %d, want 401", code)
	}
}

// TestRESTCalls: join and send reach the node's REST API with a REST
// token; what the node refuses reaches the page with its status, bad
// requests stop at the page server.
func TestRESTCalls(t *testing.T) {
	_, page := start(t, t.TempDir())
	cases := []struct {
		name, method, path, body string
		code                     int
		contains                 string
	}{
		{"send to all", "POST", "/send", `{"text":"hi"}`, 202, ""},
		{"send to a group", "POST", "/send", `{"text":"hi","group":"g 1/x"}`, 202, ""},
		{"send bad body", "POST", "/send", `{"text":`, 400, "body"},
		{"join unknown connection", "POST", "/join?group=g1&connectionId=nope", "", 404, "REST API: 404"},
		{"join without connection", "POST", "/join?group=g1", "", 400, "required"},
		{"join by GET", "GET", "/join?group=g1&connectionId=x", "", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := do(t, c.method, page.URL+c.path, c.body)
			if code != c.code || !strings.Contains(body, c.contains) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", c.method, c.path, code, body, c.code, c.contains)
			}
		})
	}
}

// TestStatic: the page, its script, its config and the two bundles are
// served; nothing else of node_modules is.
func TestStatic(t *testing.T) {
	modules := t.TempDir()
	for rel, body := range map[string]string{
		"@microsoft/signalr/dist/browser/signalr.js":                                   "signalr bundle",
		"@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.js": "msgpack bundle",
		"@microsoft/signalr/package.json":                                              "{}",
	} {
		p := filepath.Join(modules, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, page := start(t, modules)
	for _, c := range []struct {
		path     string
		code     int
		contains string
	}{
		{"/", 200, `<script src="lib/signalr.js">`},
		{"/app.js", 200, "withAutomaticReconnect()"},
		{"/config.json", 200, `"hubUrl":"http://` + n.Addr().String() + `/chat"`},
		{"/lib/signalr.js", 200, "signalr bundle"},
		{"/lib/signalr-protocol-msgpack.js", 200, "msgpack bundle"},
		{"/lib/package.json", 404, ""},
		{"/lib/..%2F@microsoft%2Fsignalr%2Fpackage.json", 404, ""},
	} {
		if code, body := do(t, "GET", page.URL+c.path, ""); code != c.code || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q, want %d containing %q", c.path, code, body, c.code, c.contains)
		}
	}
}
