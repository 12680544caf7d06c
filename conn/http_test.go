package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/auth"
)

const testKey = "conn-test-access-key-0123456789-abcdef"

// exchange sends one request on a fresh connection and parses the answer.
func exchange(t *testing.T, s *Server, req string) (*http.Response, string) {
	t.Helper()
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	sess.OnData([]byte(req))
	defer sess.OnClose(nil)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
	if err != nil {
		t.Fatalf("no HTTP response to %q: %v (%q)", req, err, fc.output())
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func upgradeReq(target, extra string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: edge.example.com:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

func negotiateReq(target, extra string) string {
	return "POST " + target + " HTTP/1.1\r\nHost: edge.example.com:8080\r\nContent-Length: 0\r\n" + extra + "\r\n"
}

func clientToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	m := map[string]any{"aud": "https://edge.example.com/chat", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	tok, err := auth.Sign(m, []byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestHTTPErrorsAnswerLikeASPNET: every error on the client port answers
// as ASP.NET Core does, the standard reason phrase and an empty body (the
// SignalR clients show a non-empty body instead of the status text), the
// one exception being ASP.NET's own "No Connection with that ID"; the
// detail for operators is in X-Edgeplane-Error.
func TestHTTPErrorsAnswerLikeASPNET(t *testing.T) {
	s := newTestServer(t, Config{AccessKey: testKey, MaxHeaderBytes: 1024, AllowedOrigins: []string{"https://app.example.com"}})
	good := clientToken(t, nil)
	// A token that was used: connect with it, disconnect.
	_, negBody := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", "Authorization: Bearer "+good+"\r\n"))
	var n struct{ ConnectionToken string }
	if err := json.Unmarshal([]byte(negBody), &n); err != nil || n.ConnectionToken == "" {
		t.Fatalf("negotiate: %v", err)
	}
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	sess.OnData([]byte(upgradeReq("/chat?id="+n.ConnectionToken, "Authorization: Bearer "+good+"\r\n")))
	if !bytes.HasPrefix(fc.output(), []byte("HTTP/1.1 101 ")) {
		t.Fatalf("upgrade with the negotiated token: %q", fc.output())
	}
	sess.OnData(clientFrame(0x81, []byte(`{"protocol":"json","version":1}`+"\x1e")))
	// (Still connected: the token is in use.)
	defer sess.OnClose(nil)

	for _, tc := range []struct {
		name, req    string
		code         int
		reason, body string
		detail       string
	}{
		{"malformed", "GET / HTTP/1.1\r\nHost x\r\n\r\n", 400, "Bad Request", "", "malformed"},
		{"not an upgrade, no id", "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request", "", "connection id required"},
		{"no token, negotiate", negotiateReq("/chat/negotiate?negotiateVersion=1", ""), 401, "Unauthorized", "", "no access token"},
		{"REST token, negotiate", negotiateReq("/chat/negotiate", "Authorization: Bearer "+clientToken(t, map[string]any{"aud": "http://edge.example.com/api/hubs/chat/:send"})+"\r\n"), 401, "Unauthorized", "", "audience"},
		{"no exp, connect", upgradeReq("/chat?access_token="+clientToken(t, map[string]any{"exp": nil}), ""), 401, "Unauthorized", "", "no exp"},
		{"origin", negotiateReq("/chat/negotiate", "Origin: https://evil.example.com\r\n"), 403, "Forbidden", "", "origin"},
		{"unknown hub, negotiate", negotiateReq("/nope/negotiate", ""), 404, "Not Found", "", "unknown hub"},
		{"unknown hub, connect", upgradeReq("/nope", ""), 404, "Not Found", "", "unknown hub"},
		{"bad connection token", upgradeReq("/chat?id=AAAA", "Authorization: Bearer "+good+"\r\n"), 404, "Not Found", "No Connection with that ID", "token"},
		{"negotiate GET", "GET /chat/negotiate HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Method Not Allowed", "", "POST"},
		{"token in use", upgradeReq("/chat?id="+n.ConnectionToken, "Authorization: Bearer "+good+"\r\n"), 409, "Conflict", "", "already used"},
		{"chunked", "POST /chat/negotiate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, "Length Required", "", "chunked"},
		{"body too large", "POST /chat/negotiate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413, "Payload Too Large", "", "too large"},
		{"no WebSocket key", "GET /chat?access_token=" + good + " HTTP/1.1\r\nHost: edge.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, "Bad Request", "", "WebSocket upgrade failed"},
		{"WebSocket version", "GET /chat?access_token=" + good + " HTTP/1.1\r\nHost: edge.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426, "Upgrade Required", "", "WebSocket upgrade failed"},
		{"header too large", "GET /chat HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 2000) + "\r\n\r\n", 431, "Request Header Fields Too Large", "", "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := exchange(t, s, tc.req)
			if resp.StatusCode != tc.code || resp.Status != fmt.Sprintf("%d %s", tc.code, tc.reason) {
				t.Fatalf("status %q, want %d %s", resp.Status, tc.code, tc.reason)
			}
			if body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if d := resp.Header.Get(ErrorHeader); !strings.Contains(d, tc.detail) {
				t.Errorf("%s %q, want it to mention %q", ErrorHeader, d, tc.detail)
			}
			if tc.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", resp.Header)
			}
			if tc.code == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("426 without Sec-WebSocket-Version: 13: %v", resp.Header)
			}
		})
	}

	// 503s (accept rate, draining) answer the same way.
	limited := newTestServer(t, Config{AcceptRate: 0.001, AcceptBurst: 1})
	exchange(t, limited, negotiateReq("/chat/negotiate", ""))
	resp, body := exchange(t, limited, negotiateReq("/chat/negotiate", ""))
	if resp.Status != "503 Service Unavailable" || body != "" || resp.Header.Get("Retry-After") == "" || resp.Header.Get(ErrorHeader) == "" {
		t.Fatalf("accept rate: %q %q %v", resp.Status, body, resp.Header)
	}
	limited.draining.Store(true)
	resp, body = exchange(t, limited, negotiateReq("/chat/negotiate", ""))
	if resp.Status != "503 Service Unavailable" || body != "" || resp.Header.Get(ErrorHeader) == "" {
		t.Fatalf("draining: %q %q %v", resp.Status, body, resp.Header)
	}

	// The detail never breaks the header block, whatever the client sent.
	if h := errorHeader("a\r\nSet-Cookie: x\x00\xff" + strings.Repeat("z", 1000)); strings.Count(h, "\r\n") != 1 || len(h) > len(ErrorHeader)+maxErrorDetail+4 {
		t.Fatalf("errorHeader = %q", h)
	}
}

// TestClientAudience: a client access token opens a connection only for
// its hub's client endpoint (edgeplane's or Azure's form) and only with
// exp; a REST token, another hub's token or one without exp get 401.
func TestClientAudience(t *testing.T) {
	s := newTestServer(t, Config{AccessKey: testKey})
	for _, tc := range []struct {
		name   string
		claims map[string]any
		code   int
	}{
		{"edgeplane form", nil, 101},
		{"Azure form", map[string]any{"aud": "https://edge.example.com/client/?hub=chat"}, 101},
		{"no aud", map[string]any{"aud": nil}, 401},
		{"REST audience", map[string]any{"aud": "https://edge.example.com/api/hubs/chat/:send"}, 401},
		{"another hub", map[string]any{"aud": "https://edge.example.com/news"}, 401},
		{"another host", map[string]any{"aud": "https://evil.example.com/chat"}, 401},
		{"no exp", map[string]any{"exp": nil}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := clientToken(t, tc.claims)
			for _, via := range []string{"query", "header"} {
				req := upgradeReq("/chat?access_token="+tok, "")
				if via == "header" {
					req = upgradeReq("/chat", "Authorization: Bearer "+tok+"\r\n")
				}
				if resp, _ := exchange(t, s, req); resp.StatusCode != tc.code {
					t.Errorf("connect, token in the %s: %d, want %d", via, resp.StatusCode, tc.code)
				}
			}
			want := tc.code
			if want == 101 {
				want = 200
			}
			if resp, _ := exchange(t, s, negotiateReq("/chat/negotiate", "Authorization: Bearer "+tok+"\r\n")); resp.StatusCode != want {
				t.Errorf("negotiate: %d, want %d", resp.StatusCode, want)
			}
		})
	}
}

// TestCORS: an Origin is reflected with credentials only when
// --allowed-origins names it (or is "*"); without the flag no origin is,
// so another site's page cannot read negotiate with the user's cookies.
// Error answers to an allowed origin carry the headers too, or a browser
// could not read their status.
func TestCORS(t *testing.T) {
	preflight := "OPTIONS /chat/negotiate HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-requested-with\r\n\r\n"
	for _, tc := range []struct {
		name    string
		allowed []string
		origin  string
		want    string // reflected origin, "" for none
		code    int    // of the preflight
	}{
		{"no --allowed-origins", nil, "https://evil.example.com", "", 204},
		{"an allowed origin", []string{"https://app.example.com"}, "https://app.example.com", "https://app.example.com", 204},
		{"a pattern", []string{"https://*.example.com"}, "https://a.example.com", "https://a.example.com", 204},
		{"any, said explicitly", []string{"*"}, "https://evil.example.com", "https://evil.example.com", 204},
		{"another origin", []string{"https://app.example.com"}, "https://evil.example.com", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Config{AllowedOrigins: tc.allowed, AccessKey: testKey})
			resp, _ := exchange(t, s, fmt.Sprintf(preflight, tc.origin))
			if resp.StatusCode != tc.code || resp.Header.Get("Access-Control-Allow-Origin") != tc.want {
				t.Fatalf("preflight: %d, Allow-Origin %q, want %d %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), tc.code, tc.want)
			}
			if tc.want != "" && (resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Allow-Headers") != "x-requested-with") {
				t.Fatalf("preflight headers: %v", resp.Header)
			}
			for _, req := range []string{
				negotiateReq("/chat/negotiate", "Origin: "+tc.origin+"\r\nAuthorization: Bearer "+clientToken(t, nil)+"\r\n"),
				negotiateReq("/chat/negotiate", "Origin: "+tc.origin+"\r\n"), // 401
			} {
				resp, _ := exchange(t, s, req)
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.want {
					t.Errorf("%d answer: Allow-Origin %q, want %q", resp.StatusCode, got, tc.want)
				}
			}
			// A 503 of the accept rate (the request was read).
			limited := newTestServer(t, Config{AllowedOrigins: tc.allowed, AcceptRate: 0.001, AcceptBurst: 1})
			exchange(t, limited, negotiateReq("/chat/negotiate", ""))
			wantCode := 503
			if tc.code == 403 {
				wantCode = 403 // the origin is checked first
			}
			if resp, _ := exchange(t, limited, negotiateReq("/chat/negotiate", "Origin: "+tc.origin+"\r\n")); resp.StatusCode != wantCode || resp.Header.Get("Access-Control-Allow-Origin") != tc.want {
				t.Errorf("%d answer (want %d): Allow-Origin %q, want %q", resp.StatusCode, wantCode, resp.Header.Get("Access-Control-Allow-Origin"), tc.want)
			}
		})
	}
}

// upstreamRec records upstream events.
type upstreamRec struct {
	mu     sync.Mutex
	events []backplane.Event
}

func (u *upstreamRec) Send(e *backplane.Event) error {
	u.mu.Lock()
	u.events = append(u.events, *e)
	u.mu.Unlock()
	return nil
}

func (u *upstreamRec) connected(t *testing.T) *backplane.ConnectContext {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, e := range u.events {
		if e.Kind == backplane.EventConnected {
			return e.Context
		}
	}
	t.Fatal("no connected event")
	return nil
}

// connectHandshake upgrades with req, completes the SignalR handshake and
// returns the connection.
func connectHandshake(t *testing.T, s *Server, req string) (*Conn, *fakeConn) {
	t.Helper()
	fc := &fakeConn{}
	c := s.OnOpen(fc).(*Conn)
	c.OnData([]byte(req))
	if !bytes.HasPrefix(fc.output(), []byte("HTTP/1.1 101 ")) {
		t.Fatalf("upgrade: %q", fc.output())
	}
	c.OnData(clientFrame(0x81, []byte(`{"protocol":"json","version":1}`+"\x1e")))
	if c.state.Load() != stOpen {
		t.Fatalf("handshake did not complete: %q", fc.output())
	}
	return c, fc
}

// TestConnectContext: the connected event carries the connect request's
// headers, query string, remote address and claims, without credentials
// (Authorization, access_token, id, cookies unless configured) and within
// the configured bound; the connection keeps none of it once the event is
// sent, nor after closing before the handshake.
func TestConnectContext(t *testing.T) {
	tok := clientToken(t, map[string]any{"nameid": "alice", "role": "admin"})
	req := upgradeReq("/chat?room=42&access_token="+tok+"&Id=x&tag=a%20b",
		"User-Agent: test-agent/1.0\r\nX-Custom: one\r\nX-Custom: two\r\nCookie: session=secret\r\nSec-WebSocket-Extensions: permessage-deflate\r\nX-Forwarded-For: 203.0.113.9\r\n")

	up := &upstreamRec{}
	s := newTestServer(t, Config{AccessKey: testKey, Upstream: up})
	c, _ := connectHandshake(t, s, req)
	cc := up.connected(t)
	if cc == nil {
		t.Fatal("connected event without a context")
	}
	if cc.Query != "room=42&tag=a%20b" {
		t.Errorf("Query %q", cc.Query)
	}
	if cc.RemoteAddr != "127.0.0.1:1" {
		t.Errorf("RemoteAddr %q", cc.RemoteAddr)
	}
	var claims map[string]any
	if err := json.Unmarshal(cc.Claims, &claims); err != nil || claims["nameid"] != "alice" || claims["role"] != "admin" {
		t.Errorf("Claims %s (%v)", cc.Claims, err)
	}
	h := http.Header(cc.Headers)
	if h.Get("User-Agent") != "test-agent/1.0" || strings.Join(h.Values("X-Custom"), ",") != "one,two" || h.Get("Host") != "edge.example.com:8080" || h.Get("X-Forwarded-For") != "203.0.113.9" {
		t.Errorf("Headers %v", cc.Headers)
	}
	for _, secret := range []string{"Authorization", "Cookie", "Sec-Websocket-Key", "Sec-Websocket-Extensions", "Upgrade", "Connection"} {
		if _, ok := cc.Headers[secret]; ok {
			t.Errorf("header %s forwarded", secret)
		}
	}
	if cc.Truncated {
		t.Error("Truncated without a reason")
	}
	if c.bufs != nil {
		t.Fatalf("an open connection still holds its buffers (%+v): the context must go once the event is sent", c.bufs)
	}
	c.OnClose(nil)

	// Cookies when configured.
	up = &upstreamRec{}
	s = newTestServer(t, Config{AccessKey: testKey, Upstream: up, ContextCookies: true})
	c, _ = connectHandshake(t, s, req)
	if got := up.connected(t).Headers["Cookie"]; len(got) != 1 || got[0] != "session=secret" {
		t.Errorf("Cookie with ContextCookies: %q", got)
	}
	c.OnClose(nil)

	// The bound: big headers are left out and the event says so; the rest
	// stays within it.
	up = &upstreamRec{}
	const bound = 512
	s = newTestServer(t, Config{AccessKey: testKey, Upstream: up, ContextMaxBytes: bound})
	c, _ = connectHandshake(t, s, upgradeReq("/chat?access_token="+tok+"&q=1", "X-Big: "+strings.Repeat("b", 600)+"\r\nX-Small: s\r\n"))
	cc = up.connected(t)
	hj, _ := json.Marshal(cc.Headers)
	if !cc.Truncated || cc.Headers["X-Big"] != nil || cc.Headers["X-Small"] == nil || cc.Query != "q=1" {
		t.Errorf("bounded context: truncated %v, headers %s, query %q", cc.Truncated, hj, cc.Query)
	}
	if size := len(hj) + len(cc.Query) + len(cc.Claims) + len(cc.RemoteAddr); size > bound {
		t.Errorf("context of %d bytes over the bound of %d", size, bound)
	}
	c.OnClose(nil)

	// Off.
	up = &upstreamRec{}
	s = newTestServer(t, Config{Upstream: up, ContextMaxBytes: -1})
	c, _ = connectHandshake(t, s, upgradeReq("/chat?q=1", ""))
	if cc := up.connected(t); cc != nil {
		t.Errorf("context sent with ContextMaxBytes < 0: %+v", cc)
	}
	c.OnClose(nil)

	// A connection that closes before its handshake lets the context go.
	s = newTestServer(t, Config{Upstream: &upstreamRec{}})
	fc := &fakeConn{}
	c = s.OnOpen(fc).(*Conn)
	c.OnData([]byte(upgradeReq("/chat?q=1", "")))
	if c.bufs == nil || c.bufs.connect == nil {
		t.Fatal("context not kept between upgrade and handshake")
	}
	c.OnClose(nil)
	if c.bufs != nil {
		t.Fatal("a closed connection still holds its context")
	}
}

func TestStripCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"":                              "",
		"id=abc":                        "",
		"access_token=t&id=x":           "",
		"a=1&access_token=t&b=2":        "a=1&b=2",
		"ACCESS_TOKEN=t&ID=x&c":         "c",
		"access%5Ftoken=t&x=%26&&y":     "x=%26&y",
		"idx=1&identity=2&id":           "idx=1&identity=2",
		"room=42&tag=a%20b&room=43":     "room=42&tag=a%20b&room=43",
		"%zz=bad-escape&access_token=t": "%zz=bad-escape",
	} {
		if got := stripCredentials(in); got != want {
			t.Errorf("stripCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

type discardUpstream struct{}

func (discardUpstream) Send(*backplane.Event) error { return nil }

// BenchmarkConnect: one connection's upgrade (a browser-sized request),
// SignalR handshake and close through OnData, without an upstream, with
// one (the connect context is built and sent) and with one but the
// context off: the difference is what the context costs per connect.
func BenchmarkConnect(b *testing.B) {
	req := []byte(upgradeReq("/chat?room=42&lang=fr",
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36\r\n"+
			"Origin: https://app.example.com\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"+
			"Cache-Control: no-cache\r\nPragma: no-cache\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"+
			"Cookie: session=0123456789abcdef\r\n"))
	hs := clientFrame(0x81, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no-upstream", Config{}},
		{"context", Config{Upstream: discardUpstream{}}},
		{"context-off", Config{Upstream: discardUpstream{}, ContextMaxBytes: -1}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newTestServer(b, tc.cfg)
			b.ReportAllocs()
			for b.Loop() {
				c := s.OnOpen(&fakeConn{})
				c.OnData(req)
				c.OnData(hs)
				c.OnClose(nil)
			}
		})
	}
}
