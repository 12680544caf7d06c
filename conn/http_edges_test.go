package conn

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// padTo returns a negotiate request whose head is exactly n bytes (a
// padding header fills it) with body as its body.
func padTo(t *testing.T, n int, body string) string {
	t.Helper()
	head := fmt.Sprintf("POST /chat/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nX-Pad: \r\n\r\n", len(body))
	if len(head) > n {
		t.Fatalf("head of %d bytes cannot be padded to %d", len(head), n)
	}
	return strings.Replace(head, "X-Pad: ", "X-Pad: "+strings.Repeat("p", n-len(head)), 1) + body
}

// TestRequestLimits: a request head of exactly MaxHeaderBytes is read, one
// byte more is 431, whether the head is complete or still coming; a body
// of exactly 4 KiB is read, one byte more is 413.
func TestRequestLimits(t *testing.T) {
	const max = 1024
	s := newTestServer(t, Config{MaxHeaderBytes: max})
	if resp, _ := exchange(t, s, padTo(t, max, "")); resp.StatusCode != 200 {
		t.Fatalf("head of exactly %d bytes: %d, want 200", max, resp.StatusCode)
	}
	if resp, _ := exchange(t, s, padTo(t, max+1, "")); resp.StatusCode != 431 {
		t.Fatalf("head of %d bytes: %d, want 431", max+1, resp.StatusCode)
	}
	// Incomplete: the head so far, without its blank line.
	partial := func(n int) (answered bool) {
		fc := &fakeConn{}
		sess := s.OnOpen(fc)
		defer sess.OnClose(nil)
		sess.OnData([]byte("GET /chat HTTP/1.1\r\nX-Pad: " + strings.Repeat("p", n-len("GET /chat HTTP/1.1\r\nX-Pad: "))))
		return len(fc.output()) > 0
	}
	if partial(max) {
		t.Fatalf("an incomplete head of %d bytes was answered; want to wait for the rest", max)
	}
	if !partial(max + 1) {
		t.Fatalf("an incomplete head of %d bytes is still awaited; want 431", max+1)
	}
	body := strings.Repeat("b", maxBodyBytes)
	if resp, _ := exchange(t, s, padTo(t, 200, body)); resp.StatusCode != 200 {
		t.Fatalf("body of exactly %d bytes: %d, want 200", maxBodyBytes, resp.StatusCode)
	}
	if resp, _ := exchange(t, s, padTo(t, 200, body+"b")); resp.StatusCode != 413 {
		t.Fatalf("body of %d bytes: %d, want 413", maxBodyBytes+1, resp.StatusCode)
	}
}

// TestNegotiateVersionsConnect: negotiateVersion 1 answers a connection id and a
// separate connection token; version 0 (or none) answers the token as the
// connection id, which is what those clients connect with. Both connect.
func TestNegotiateVersionsConnect(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, v := range []string{"", "?negotiateVersion=0", "?negotiateVersion=1", "?negotiateVersion=2"} {
		resp, body := exchange(t, s, negotiateReq("/chat/negotiate"+v, ""))
		var n map[string]any
		if err := json.Unmarshal([]byte(body), &n); err != nil || resp.StatusCode != 200 {
			t.Fatalf("negotiate%s: %d %q", v, resp.StatusCode, body)
		}
		id, _ := n["connectionId"].(string)
		tok, hasTok := n["connectionToken"].(string)
		connectWith := id
		if v == "?negotiateVersion=1" || v == "?negotiateVersion=2" {
			if !hasTok || n["negotiateVersion"] != 1.0 || tok == id || len(id) != 22 {
				t.Fatalf("negotiate%s: %s, want negotiateVersion 1, a 22-character connectionId and a connectionToken", v, body)
			}
			connectWith = tok
		} else if hasTok || n["negotiateVersion"] != 0.0 || len(id) == 22 {
			t.Fatalf("negotiate%s: %s, want version 0: the token as connectionId, no connectionToken", v, body)
		}
		if resp, _ := exchange(t, s, upgradeReq("/chat?id="+connectWith, "")); resp.StatusCode != 101 {
			t.Fatalf("negotiate%s, then connect: %d", v, resp.StatusCode)
		}
	}
}

// TestHTTPAnswersCounted: every answer is counted by route and code, and
// the connection it closes as http_done (success) or http_error.
func TestHTTPAnswersCounted(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, tc := range []struct {
		req, route string
		code       int
		cause      *cause
	}{
		{negotiateReq("/chat/negotiate", ""), "negotiate", 200, causeHTTPDone},
		{"OPTIONS /chat/negotiate HTTP/1.1\r\nHost: x\r\n\r\n", "negotiate", 204, causeHTTPDone},
		{negotiateReq("/nope/negotiate", ""), "negotiate", 404, causeHTTPError},
		{"GET /chat/negotiate HTTP/1.1\r\nHost: x\r\n\r\n", "negotiate", 405, causeHTTPError},
		{"GET /x/y/z HTTP/1.1\r\nHost: x\r\n\r\n", "other", 404, causeHTTPError},
		{"BAD\r\n\r\n", "malformed", 400, causeHTTPError},
	} {
		reqs, closed := s.M.httpReqs(tc.route, tc.code).Get(), s.M.closed[tc.cause.idx].Get()
		if resp, _ := exchange(t, s, tc.req); resp.StatusCode != tc.code {
			t.Fatalf("%q: %d, want %d", tc.req, resp.StatusCode, tc.code)
		}
		if got := s.M.httpReqs(tc.route, tc.code).Get(); got != reqs+1 {
			t.Errorf("%q: edgeplane_http_requests_total{route=%q,code=\"%d\"} went %d → %d", tc.req, tc.route, tc.code, reqs, got)
		}
		if got := s.M.closed[tc.cause.idx].Get(); got != closed+1 {
			t.Errorf("%q: edgeplane_closed_total{reason=%q} went %d → %d", tc.req, tc.cause.label, closed, got)
		}
	}
}

// TestErrorHeaderBounds: the detail is cut at maxErrorDetail bytes, and
// only printable ASCII (space to ~) passes; anything else becomes '?'.
func TestErrorHeaderBounds(t *testing.T) {
	if errorHeader("") != "" {
		t.Fatal("an empty detail makes a header line")
	}
	exact := strings.Repeat("d", maxErrorDetail)
	if got := errorHeader(exact); got != ErrorHeader+": "+exact+"\r\n" {
		t.Fatalf("a detail of exactly %d bytes: %q", maxErrorDetail, got)
	}
	if got := errorHeader(exact + "XYZ"); got != ErrorHeader+": "+exact+"\r\n" {
		t.Fatalf("a detail of %d bytes: %q, want the first %d", maxErrorDetail+3, got, maxErrorDetail)
	}
	if got := errorHeader("a\x1f\x20\x7e\x7f\x00\xffz"); got != ErrorHeader+": a? ~???z\r\n" {
		t.Fatalf("errorHeader of control and non-ASCII bytes: %q", got)
	}
}

// TestInvocationWithoutUpstream: with no upstream, an invocation that
// expects an answer (an invocationId) gets a Completion with the error;
// one without gets nothing; both are counted as dropped.
func TestInvocationWithoutUpstream(t *testing.T) {
	s, c, fc := openConn(t)
	c.OnData(clientFrame(0x81, []byte(`{"type":1,"target":"send","arguments":[]}`+"\x1e")))
	if out := fc.output(); len(out) != 0 {
		t.Fatalf("a non-blocking invocation was answered: %q", out)
	}
	c.OnData(clientFrame(0x81, []byte(`{"type":1,"invocationId":"7","target":"send","arguments":[]}`+"\x1e")))
	f := readServerFrames(t, fc.output())
	if len(f) != 1 || f[0].payload != `{"type":3,"invocationId":"7","error":"no upstream is configured"}`+"\x1e" {
		t.Fatalf("answer to invocation 7: %q, want a Completion with the error", f)
	}
	if got := s.M.dropped.Get(); got != 2 {
		t.Fatalf("edgeplane_invocations_dropped_total = %d, want 2", got)
	}
	if fc.isShutdown() {
		t.Fatal("the connection was closed")
	}
}

// TestUsedTokensSwept: a departed connection's id stays refused until its
// token expires, then the periodic sweep forgets it; ids whose token is
// still valid stay.
func TestUsedTokensSwept(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	live, expiring, expired := newConnID(), newConnID(), newConnID()
	now := time.Now().Unix()
	s.markUsed(live, now+3600)
	s.markUsed(expiring, now+1)
	s.markUsed(expired, now-1)
	if !s.wasUsed(live) || !s.wasUsed(expiring) {
		t.Fatal("departed ids with valid tokens not recorded")
	}
	if s.wasUsed(expired) {
		t.Fatal("an id whose token has expired was recorded")
	}
	testutil.WaitUntil(t, 20*time.Second, "the sweep to forget the expired id", func() bool { return !s.wasUsed(expiring) })
	if !s.wasUsed(live) {
		t.Fatal("the sweep forgot an id whose token is valid for another hour")
	}
}

// TestDisconnectReasonEveryCause: the reason given upstream is the cause's
// label for every cause the node chooses, "" for a client's own close,
// peer_gone for no cause or one out of range.
func TestDisconnectReasonEveryCause(t *testing.T) {
	for _, k := range causes {
		want := k.label
		if k == causeClientClose {
			want = ""
		}
		if got := disconnectReason(k.idx, nil); got != want {
			t.Errorf("cause %q (idx %d): reason %q, want %q", k.label, k.idx, got, want)
		}
	}
	for _, idx := range []uint32{0, uint32(len(causes) + 1), 255} {
		if got := disconnectReason(idx, nil); got != "peer_gone" {
			t.Errorf("idx %d: reason %q, want peer_gone", idx, got)
		}
	}
}

// TestRequestReadWhole: a negotiate is answered only once its body is
// complete, as application/json; an error answer has no Content-Type; a
// request that is only a blank line is malformed (400), not awaited.
func TestRequestReadWhole(t *testing.T) {
	s := newTestServer(t, Config{})
	req := negotiateReq("/chat/negotiate?negotiateVersion=1", "")
	req = strings.Replace(req, "Content-Length: 0", "Content-Length: 2", 1)
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	defer sess.OnClose(nil)
	sess.OnData([]byte(req + "{"))
	if out := fc.output(); len(out) != 0 {
		t.Fatalf("answered before the body was complete: %q", out)
	}
	sess.OnData([]byte("}"))
	if out := string(fc.output()); !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.Contains(out, "\r\nContent-Type: application/json\r\n") {
		t.Fatalf("answer %q, want 200 application/json", out)
	}
	resp, _ := exchange(t, s, negotiateReq("/nope/negotiate", ""))
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Fatalf("a 404 with Content-Type %q", ct)
	}
	if resp, _ := exchange(t, s, "\r\n\r\n"); resp.StatusCode != 400 {
		t.Fatalf("a blank request: %d, want 400", resp.StatusCode)
	}
}
