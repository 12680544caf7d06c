package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// errProbe is one failing request made by the real client (test/compat/errors.js).
type errProbe struct {
	Name  string         `json:"name"`
	Start map[string]any `json:"start,omitempty"`
	HTTP  map[string]any `json:"http,omitempty"`
	Keep  bool           `json:"keep,omitempty"`
	want  string         // the message the client surfaces; "" = it succeeds
}

type errResult struct {
	Name  string `json:"name"`
	Event string `json:"event"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// runErrProbes runs probes in order with the unmodified @microsoft/signalr
// client and returns what each surfaced.
func runErrProbes(t *testing.T, probes []errProbe) map[string]errResult {
	t.Helper()
	spec, _ := json.Marshal(map[string]any{"probes": probes})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "errors.js", string(spec))
	cmd.Dir = compatDir(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("errors.js: %v\n%s", err, stderr.String())
	}
	res := map[string]errResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	done := false
	for sc.Scan() {
		var r errResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad line from errors.js: %q", sc.Text())
		}
		if r.Event == "done" {
			done = true
			continue
		}
		res[r.Name] = r
	}
	if !done {
		t.Fatalf("errors.js did not finish:\n%s\n%s", out, stderr.String())
	}
	return res
}

// TestClientSurfacesASPNETErrors: for every error status of the client
// port, the message the official client surfaces to the app is the one
// ASP.NET Core's answer produces: the client shows a non-empty body in
// place of the status text, and ASP.NET answers these with an empty body
// and the standard reason phrase ("Error: Unauthorized: Status code
// '401'", not "unauthorized\n: Status code '401'"). Negotiate errors go
// through HubConnection.start(); statuses start() cannot reach (a request
// it never makes) through the client's own HTTP layer, which surfaces them
// the same way. (409 exists only on the WebSocket, where the client shows
// a fixed text whatever the answer; 429 is never sent: limits answer 503,
// as ASP.NET's rate limiter does by default.)
func TestClientSurfacesASPNETErrors(t *testing.T) {
	backend := testutil.Backends(t)[0]
	const key = "errors-access-key-0123456789-abcdef"
	n := startNode(t, backend, "--access-key", key, "--allowed-origins", "https://app.example.com")
	limited := startNode(t, backend, "--accept-rate", "0.001", "--accept-burst", "1")
	full := startNode(t, backend, "--max-conns", "1")
	good := clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"})
	wrong := clientToken(t, "another-key-0123456789-0123456789", n, "chat", map[string]any{"nameid": "alice"})
	rest := token(t, key, map[string]any{"aud": "http://" + n.admin + "/api/hubs/chat/:send"})
	base := "http://" + n.client
	negotiation := func(code int, text string) string {
		return fmt.Sprintf("Failed to complete negotiation with the server: Error: %s: Status code '%d'", text, code)
	}
	httpErr := func(code int, text string) string { return fmt.Sprintf("%s: Status code '%d'", text, code) }
	start := func(url string, kv ...any) map[string]any {
		m := map[string]any{"url": url}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	probes := []errProbe{
		{Name: "connects", Start: start(base+"/chat", "accessToken", good)},
		{Name: "400 not an upgrade", HTTP: map[string]any{"method": "GET", "url": base + "/chat"}, want: httpErr(400, "Bad Request")},
		{Name: "401 no token", Start: start(base + "/chat"), want: negotiation(401, "Unauthorized")},
		{Name: "401 wrong key", Start: start(base+"/chat", "accessToken", wrong), want: negotiation(401, "Unauthorized")},
		{Name: "401 a REST token", Start: start(base+"/chat", "accessToken", rest), want: negotiation(401, "Unauthorized")},
		{Name: "403 origin", Start: start(base+"/chat", "accessToken", good, "headers", map[string]string{"Origin": "https://evil.example.com"}), want: negotiation(403, "Forbidden")},
		{Name: "404 unknown hub", Start: start(base+"/nope", "accessToken", good), want: negotiation(404, "Not Found") + " Either this is not a SignalR endpoint or there is a proxy blocking the connection."},
		{Name: "405 negotiate GET", HTTP: map[string]any{"method": "GET", "url": base + "/chat/negotiate"}, want: httpErr(405, "Method Not Allowed")},
		{Name: "413 negotiate body", HTTP: map[string]any{"method": "POST", "url": base + "/chat/negotiate", "content": strings.Repeat("x", 5000)}, want: httpErr(413, "Payload Too Large")},
		{Name: "431 headers", Start: start(base+"/chat", "accessToken", good, "headers", map[string]string{"X-Big": strings.Repeat("b", 9000)}), want: negotiation(431, "Request Header Fields Too Large")},
		{Name: "rate: first", Start: start("http://" + limited.client + "/chat"), Keep: true},
		{Name: "503 accept rate", Start: start("http://" + limited.client + "/chat"), want: negotiation(503, "Service Unavailable")},
		{Name: "full: first", Start: start("http://" + full.client + "/chat"), Keep: true},
		{Name: "503 max conns", Start: start("http://" + full.client + "/chat"), want: negotiation(503, "Service Unavailable")},
	}
	res := runErrProbes(t, probes)
	for _, p := range probes {
		r, ok := res[p.Name]
		switch {
		case !ok:
			t.Errorf("%s: no result", p.Name)
		case p.want == "" && !r.OK:
			t.Errorf("%s: failed: %s", p.Name, r.Error)
		case p.want != "" && r.OK:
			t.Errorf("%s: succeeded, want the error %q", p.Name, p.want)
		case p.want != "" && r.Error != p.want:
			t.Errorf("%s: the client surfaced\n\t%q\nwant (as against ASP.NET Core)\n\t%q", p.Name, r.Error, p.want)
		}
	}
}
