package conn

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

const upgradeFmt = "GET /chat?id=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// claimNode is a Server whose token claims go to a real Redis backplane,
// as in a fleet: every claimNode on one Redis is another node.
func claimNode(t *testing.T, srv *redistest.Server, key string) (*Server, *backplane.Redis) {
	t.Helper()
	rb, err := backplane.NewRedis(backplane.RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": ""}, HealthInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	router := fanout.NewRouter([]string{"chat"}, rb)
	if err := rb.Start(router); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	if !rb.Ready() {
		t.Fatal("backplane not ready after Start")
	}
	return newTestServer(t, Config{TokenKey: key, TokenClaims: rb}), rb
}

// upgradeWith sends an upgrade with token on a fresh connection of s and
// waits for the answer (the claim answers asynchronously).
func upgradeWith(t *testing.T, s *Server, token string) (*fakeConn, *http.Response) {
	t.Helper()
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	t.Cleanup(func() { sess.OnClose(nil) })
	sess.OnData([]byte(fmt.Sprintf(upgradeFmt, token)))
	var resp *http.Response
	testutil.WaitUntil(t, 5*time.Second, "upgrade answered", func() bool {
		r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
		resp = r
		return err == nil
	})
	return fc, resp
}

func claimCount(t *testing.T, s *Server, result string) float64 {
	t.Helper()
	var b bytes.Buffer
	s.M.set.WritePrometheus(&b)
	name := `edgeplane_token_claims_total{result="` + result + `"} `
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestTokenReuseFleetWide: a token connects once on the whole fleet. Its
// second upgrade on another node (live or gone) gets 409, as it does on
// the same node.
func TestTokenReuseFleetWide(t *testing.T) {
	srv := redistest.Start(t)
	const key = "fleet-token-key"
	a, _ := claimNode(t, srv, key)
	b, _ := claimNode(t, srv, key)
	tok := a.signer.issue("chat", newConnID(), time.Now())

	if _, resp := upgradeWith(t, a, tok); resp.StatusCode != 101 {
		t.Fatalf("first upgrade on a: %d, want 101", resp.StatusCode)
	}
	_, resp := upgradeWith(t, b, tok)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("same token on b: %d, want 409", resp.StatusCode)
	}
	// As ASP.NET answers: an empty body; the detail for operators is in
	// the error header.
	if body, _ := io.ReadAll(resp.Body); len(body) != 0 || !strings.Contains(resp.Header.Get(ErrorHeader), ErrTokenReused.Error()) {
		t.Fatalf("409 body %q, %s %q; want no body and %q", body, ErrorHeader, resp.Header.Get(ErrorHeader), ErrTokenReused)
	}
	if _, resp := upgradeWith(t, a, tok); resp.StatusCode != http.StatusConflict {
		t.Fatalf("same token on a again: %d, want 409", resp.StatusCode)
	}
	if f, r := claimCount(t, a, "fresh"), claimCount(t, b, "reused"); f != 1 || r != 1 {
		t.Fatalf("claims: a fresh %v, b reused %v; want 1 and 1", f, r)
	}
	// Two nodes racing with one fresh token: exactly one wins.
	tok2 := a.signer.issue("chat", newConnID(), time.Now())
	codes := make(chan int, 2)
	for _, s := range []*Server{a, b} {
		go func() {
			fc := &fakeConn{}
			sess := s.OnOpen(fc)
			defer sess.OnClose(nil)
			sess.OnData([]byte(fmt.Sprintf(upgradeFmt, tok2)))
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil); err == nil {
					codes <- r.StatusCode
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			codes <- 0
		}()
	}
	if c1, c2 := <-codes, <-codes; c1+c2 != 101+409 {
		t.Fatalf("racing upgrades answered %d and %d, want one 101 and one 409", c1, c2)
	}
}

// TestTokenClaimRedisDown: fail open, counted. Redis paused: the upgrade
// waits for the claim's time-out, then connects unchecked; Redis gone (the
// node knows): it connects at once, unchecked. Bytes sent before the 101
// while the claim is pending close the connection with 400.
func TestTokenClaimRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, rb := claimNode(t, srv, "fleet-token-key")

	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Signal(syscall.SIGCONT) })
	// A client that does not wait for the 101.
	fc := &fakeConn{}
	sess := a.OnOpen(fc)
	sess.OnData([]byte(fmt.Sprintf(upgradeFmt, a.signer.issue("chat", newConnID(), time.Now())) + "{\"protocol\":\"json\",\"version\":1}\x1e"))
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
	if err != nil || r.StatusCode != http.StatusBadRequest {
		t.Fatalf("bytes before the 101: %v %v, want 400 at once", r, err)
	}
	sess.OnClose(nil)

	if _, resp := upgradeWith(t, a, a.signer.issue("chat", newConnID(), time.Now())); resp.StatusCode != 101 {
		t.Fatalf("upgrade with Redis paused: %d, want 101 (fail open)", resp.StatusCode)
	}
	if n := claimCount(t, a, "unchecked"); n != 2 { // the 400's claim too
		t.Fatalf("unchecked claims %v, want 2", n)
	}

	_ = srv.Signal(syscall.SIGCONT)
	srv.Kill()
	testutil.WaitUntil(t, 5*time.Second, "backplane not ready", func() bool { return !rb.Ready() })
	before := claimCount(t, a, "unchecked")
	if _, resp := upgradeWith(t, a, a.signer.issue("chat", newConnID(), time.Now())); resp.StatusCode != 101 {
		t.Fatalf("upgrade with Redis down: %d, want 101 (fail open)", resp.StatusCode)
	}
	if n := claimCount(t, a, "unchecked"); n != before+1 {
		t.Fatalf("unchecked claims %v, want %v", n, before+1)
	}
	// The local check still holds: the same token again on this node,
	// after the first connection left.
	tok := a.signer.issue("chat", newConnID(), time.Now())
	fc = &fakeConn{}
	sess = a.OnOpen(fc)
	sess.OnData([]byte(fmt.Sprintf(upgradeFmt, tok)))
	testutil.WaitUntil(t, 5*time.Second, "101", func() bool {
		r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
		return err == nil && r.StatusCode == 101
	})
	sess.OnClose(nil)
	if _, resp := upgradeWith(t, a, tok); resp.StatusCode != http.StatusConflict {
		t.Fatalf("reuse on the same node with Redis down: %d, want 409", resp.StatusCode)
	}
}

// TestTokenKeyRotation: a Server adopting the fleet's key signs with it at
// once and still accepts tokens it signed before, until they expire.
func TestTokenKeyRotation(t *testing.T) {
	s := newTestServer(t, Config{TokenKey: "my-own-random-key", TokenTTL: time.Minute})
	old := s.signer.issue("chat", newConnID(), time.Now())
	if s.SetTokenKey("my-own-random-key") {
		t.Fatal("SetTokenKey with the same key reported a change")
	}
	if !s.SetTokenKey("the-fleet-key") {
		t.Fatal("SetTokenKey with a new key reported no change")
	}
	other := &tokenSigner{key: []byte("the-fleet-key"), ttl: time.Minute}
	now := time.Now()
	if _, _, err := other.verify("chat", s.signer.issue("chat", newConnID(), now), now); err != nil {
		t.Fatalf("a new token does not verify with the fleet key: %v", err)
	}
	if _, _, err := s.signer.verify("chat", old, now); err != nil {
		t.Fatalf("a token signed before the change no longer verifies: %v", err)
	}
	if _, _, err := s.signer.verify("chat", old, now.Add(time.Minute+2*time.Second)); err == nil {
		t.Fatal("the previous key is still accepted after a token lifetime")
	}
	if _, _, err := s.signer.verify("chat", other.issue("chat", newConnID(), now), now); err != nil {
		t.Fatalf("a fleet token does not verify after the change: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
