package conn

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/fanout"
)

// TestHubPaths: hubs answer at their paths as ASP.NET Core's MapHub maps
// them: several segments, case-insensitive, a trailing slash ignored; a
// hub given a path of its own no longer answers at /{name}; the token a
// path's negotiate issued connects at that path in any case.
func TestHubPaths(t *testing.T) {
	router := fanout.NewRouter([]string{"chat", "news"}, nil)
	s, err := New(Config{AcceptRate: -1, HubPaths: map[string]string{"chat": "/hubs/chat"}}, router)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, tc := range []struct {
		req  string
		code int
	}{
		{negotiateReq("/hubs/chat/negotiate?negotiateVersion=1", ""), 200},
		{negotiateReq("/HUBS/Chat/NEGOTIATE?negotiateVersion=1", ""), 200},
		{negotiateReq("/hubs/chat/negotiate/?negotiateVersion=1", ""), 200},
		{negotiateReq("/News/negotiate?negotiateVersion=1", ""), 200},
		{negotiateReq("/chat/negotiate?negotiateVersion=1", ""), 404}, // chat lives at /hubs/chat
		{negotiateReq("/hubs/negotiate?negotiateVersion=1", ""), 404},
		{negotiateReq("/hubs/chat/x/negotiate?negotiateVersion=1", ""), 404},
		{upgradeReq("/Hubs/Chat", ""), 101},
		{upgradeReq("/hubs/chat/", ""), 101},
		{upgradeReq("/NEWS", ""), 101},
		{upgradeReq("/chat", ""), 404},
		{upgradeReq("/hubs", ""), 404},
		{upgradeReq("/hubs/chat/more", ""), 404},
	} {
		if resp, body := exchange(t, s, tc.req); resp.StatusCode != tc.code {
			t.Errorf("%s: %d %q, want %d", strings.SplitN(tc.req, "\r\n", 2)[0], resp.StatusCode, body, tc.code)
		}
	}
	_, body := exchange(t, s, negotiateReq("/hubs/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	defer sess.OnClose(nil)
	sess.OnData([]byte(upgradeReq("/HUBS/CHAT?id="+n.ConnectionToken, "")))
	sess.OnData(clientFrame(0x81, testHandshake))
	if router.Hub("chat").Len() != 1 || router.Hub("news").Len() != 0 {
		t.Fatalf("the negotiated connection is not in hub chat: chat %d, news %d (%q)", router.Hub("chat").Len(), router.Hub("news").Len(), fc.output())
	}
}

// TestHubPathAudience: with an access key, a client token for the hub's
// path (https://host/hubs/chat) is accepted, as one for its name is; one
// for another path is not.
func TestHubPathAudience(t *testing.T) {
	router := fanout.NewRouter([]string{"chat"}, nil)
	s, err := New(Config{AcceptRate: -1, AccessKey: testKey, HubPaths: map[string]string{"chat": "/hubs/chat"}}, router)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for aud, code := range map[string]int{
		"https://edge.example.com/hubs/chat":  200,
		"https://edge.example.com/HUBS/Chat/": 200,
		"https://edge.example.com/chat":       200,
		"https://edge.example.com/hubs/news":  401,
	} {
		tok := clientToken(t, map[string]any{"aud": aud})
		if resp, _ := exchange(t, s, negotiateReq("/hubs/chat/negotiate?negotiateVersion=1", "Authorization: Bearer "+tok+"\r\n")); resp.StatusCode != code {
			t.Errorf("aud %s: %d, want %d", aud, resp.StatusCode, code)
		}
	}
}

func TestHubPathsConfig(t *testing.T) {
	router := fanout.NewRouter([]string{"chat", "news"}, nil)
	for _, paths := range []map[string]string{
		{"chat": "/x", "news": "/X/"}, // the same path, case aside
		{"chat": "news"},              // no leading slash
		{"chat": "/"},                 // no segment
		{"chat": "/a//b"},
		{"chat": "/a?b"},
		{"other": "/other"}, // not a hub
		{"chat": "/news"},   // news's default path
	} {
		if s, err := New(Config{HubPaths: paths}, router); err == nil {
			s.Close()
			t.Errorf("paths %v accepted", paths)
		}
	}
}
