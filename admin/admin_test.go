package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
)

type member struct {
	mu     sync.Mutex
	frames []string
}

func (m *member) Deliver(f []byte) {
	m.mu.Lock()
	m.frames = append(m.frames, string(f))
	m.mu.Unlock()
}
func (m *member) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.frames...)
}

func setup(t *testing.T, key string) (*httptest.Server, *conn.Server) {
	t.Helper()
	srv, err := conn.New(conn.Config{Hubs: []string{"chat"}, AccessKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ts := httptest.NewServer(New(srv, nil))
	t.Cleanup(ts.Close)
	return ts, srv
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
	ts, srv := setup(t, "")
	h := srv.Router().Hub("chat")
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

func TestAuth(t *testing.T) {
	ts, _ := setup(t, "k")
	good, _ := auth.Sign(map[string]any{"exp": time.Now().Add(time.Minute).Unix()}, []byte("k"))
	bad, _ := auth.Sign(map[string]any{}, []byte("other"))
	if c, _ := do(t, "POST", ts.URL+"/api/hubs/chat/:send", `{"target":"t"}`, ""); c != 401 {
		t.Fatalf("no token: %d", c)
	}
	if c, _ := do(t, "POST", ts.URL+"/api/hubs/chat/:send", `{"target":"t"}`, bad); c != 401 {
		t.Fatalf("bad token: %d", c)
	}
	if c, _ := do(t, "POST", ts.URL+"/api/hubs/chat/:send", `{"target":"t"}`, good); c != 202 {
		t.Fatalf("good token: %d", c)
	}
	if c, _ := do(t, "GET", ts.URL+"/metrics", "", ""); c != 200 {
		t.Fatalf("metrics must not need a token: %d", c)
	}
}

func TestReadyzDraining(t *testing.T) {
	srv, err := conn.New(conn.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	h := New(srv, nil)
	ts := httptest.NewServer(h)
	defer ts.Close()
	h.SetDraining()
	if c, _ := do(t, "GET", ts.URL+"/readyz", "", ""); c != 503 {
		t.Fatalf("readyz while draining: %d", c)
	}
}
