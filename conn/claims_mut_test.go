package conn

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClientTokenHandshakeClaimEnds: asrs.s.cht takes both ends of the
// SDK's range, 1 and 30 seconds (30 longer than the node's 10).
func TestClientTokenHandshakeClaimEnds(t *testing.T) {
	for _, tc := range []struct {
		cht      string
		deadline int64 // seconds after opening
	}{{"1", 1}, {"30", 30}} {
		s := clockServer(t, Config{AccessKey: testKey, HandshakeTimeout: 10 * time.Second, KeepAliveInterval: time.Hour, ClientTimeout: time.Hour}, 100)
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		c.OnData([]byte(upgradeReq("/chat?access_token="+clientToken(t, map[string]any{"asrs.s.cht": tc.cht}), "")))
		if c.state.Load() != stHandshake {
			t.Fatalf("cht %s: upgrade %q", tc.cht, fc.output())
		}
		if tc.deadline > 1 {
			if next := tickAt(s, c, 100+tc.deadline-1); fc.isShutdown() || next != 100+tc.deadline {
				t.Errorf("cht %s: a second before the deadline: closed %v, next %d", tc.cht, fc.isShutdown(), next)
			}
		}
		if tickAt(s, c, 100+tc.deadline); !fc.isShutdown() {
			t.Errorf("cht %s: open at its %d s deadline", tc.cht, tc.deadline)
		}
		c.OnClose(nil)
	}
}

// TestClientTokenExpiryRefused: with asrs.s.coae, an asrs.s.aeo of 0 is
// not a time (401, not "never"), and one of this very second has expired
// (401).
func TestClientTokenExpiryRefused(t *testing.T) {
	s := serverlessServer(t, Config{AccessKey: testKey})
	for _, tc := range []struct{ aeo, header string }{
		{"0", "asrs.s.aeo"},
		{strconv.FormatInt(time.Now().Unix(), 10), "authentication expired"},
	} {
		tok := clientToken(t, map[string]any{"aud": "https://edge.example.com/client/?hub=chat", "asrs.s.coae": "true", "asrs.s.aeo": tc.aeo})
		for _, req := range []string{negotiateReq("/client/negotiate?hub=chat", "Authorization: Bearer "+tok+"\r\n"), upgradeReq("/client/?hub=chat&access_token="+tok, "")} {
			if resp, _ := exchange(t, s, req); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get(ErrorHeader), tc.header) {
				t.Errorf("aeo %s: %d %q, want 401 with %q", tc.aeo, resp.StatusCode, resp.Header.Get(ErrorHeader), tc.header)
			}
		}
	}
}

// TestClientTokenHandshakeClaimKeepsPing: a token's handshake time-out
// shorter than the node's but longer than the keep-alive interval does
// not delay the wheel's first look past the keep-alive interval, so the
// first Ping after the handshake is on time.
func TestClientTokenHandshakeClaimKeepsPing(t *testing.T) {
	s := clockServer(t, Config{AccessKey: testKey, HandshakeTimeout: 10 * time.Second, KeepAliveInterval: 3 * time.Second, ClientTimeout: time.Hour}, 100)
	c, fc := connectHandshake(t, s, upgradeReq("/chat?access_token="+clientToken(t, map[string]any{"asrs.s.cht": "8"}), ""))
	defer c.OnClose(nil)
	if c.wslot != 103%wheelSlots+1 {
		t.Fatalf("scheduled in slot %d, want second 103's (the keep-alive interval)", c.wslot-1)
	}
	before := len(readServerFrames(t, afterHTTP(t, fc.output())))
	if tickAt(s, c, 103); len(readServerFrames(t, afterHTTP(t, fc.output()))) != before+1 {
		t.Fatalf("no Ping at second 103: %q", fc.output())
	}
}
