package main

import (
	"bytes"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind.
func TestMain(m *testing.M) { testutil.Main(m) }

func TestApplyEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	maxConns := fs.Int("max-conns", 0, "")
	var hubs listFlag
	fs.Var(&hubs, "hub", "")
	t.Setenv("EDGEPLANE_MAX_CONNS", "19000")
	t.Setenv("EDGEPLANE_HUB", "chat, news=My.App.NewsHub")
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if *maxConns != 19000 || len(hubs) != 2 || hubs[1] != "news=My.App.NewsHub" {
		t.Fatalf("env not applied: %d %v", *maxConns, hubs)
	}
	// Flags parsed afterwards win.
	if err := fs.Parse([]string{"--max-conns", "5"}); err != nil || *maxConns != 5 {
		t.Fatalf("flag did not override env: %v %d", err, *maxConns)
	}
	t.Setenv("EDGEPLANE_MAX_CONNS", "lots")
	if err := applyEnv(fs); err == nil {
		t.Fatal("bad env value accepted")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--log-level", "loud"},
		{"--redis", "redis://x:1", "--redis-cluster", "a:1"},
		{"--redis", "redis://x:1", "--redis-health-interval", "0s"},
		{"--redis", "redis://x:1", "--redis-health-interval", "soon"},
		{"--hub", "=prefix"},
		{"--no-such-flag"},
		{"--upstream-redis", "redis://x:1"}, // without a backplane
		{"--upstream-max-bytes", "0"},
		{"--upstream-max-age", "-1s"},
		{"--reconnect-window", "0s"},
		{"--reconnect-buffer-bytes", "0"},
		{"--reconnect-buffer-bytes", "2000000"}, // over --max-queue-bytes
		{"--max-queue-bytes", "50000", "--reconnect-buffer-bytes", "50001"},
		{"--protocols", "json,xml"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	if code := run([]string{"--help"}); code != 0 {
		t.Errorf("--help exit %d", code)
	}
}

func TestParseHubs(t *testing.T) {
	got, err := parseHubs([]string{"chat=MyApp.Hubs.ChatHub", " news "})
	if err != nil || len(got) != 2 || got[0].Name != "chat" || got[0].Prefix != "MyApp.Hubs.ChatHub" || got[1].Name != "news" || got[1].Prefix != "" {
		t.Fatalf("parseHubs = %+v, %v", got, err)
	}
	got, err = parseHubs([]string{"chat=/hubs/chat", "news=/Hubs/News=MyApp.NewsHub", "x=X.Hub=/x/y", "y="})
	want := []node.Hub{{Name: "chat", Path: "/hubs/chat"}, {Name: "news", Path: "/Hubs/News", Prefix: "MyApp.NewsHub"}, {Name: "x", Path: "/x/y", Prefix: "X.Hub"}, {Name: "y"}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("parseHubs with paths = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range [][]string{{"=x"}, {"a", "a=b"}, {" "}, {"a=/p=/q"}, {"a=P=Q"}, {"a=/p=P=x"}} {
		if _, err := parseHubs(bad); err == nil {
			t.Errorf("parseHubs(%q) accepted", bad)
		}
	}
}

// TestRunRefusesWeakSecurity: keys under 32 bytes, the example placeholder
// key, and cookie forwarding without --allowed-origins stop the node with
// exit code 2 before it listens.
func TestRunRefusesWeakSecurity(t *testing.T) {
	long := strings.Repeat("k", 32)
	for _, args := range [][]string{
		{"--access-key", "short-key"},
		{"--access-key", strings.Repeat("k", 31)},
		{"--access-key", "change-me-to-a-long-random-secret"},
		{"--access-key", long, "--token-key", "short"},
		{"--upstream-cookies"},
		{"--access-key", long, "--upstream-cookies"},
		{"--access-key", long, "--secondary-access-key", "short"},
		{"--secondary-access-key", long},
	} {
		if code := run(append([]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, args...)); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	t.Setenv("EDGEPLANE_ACCESS_KEY", "change-me-to-a-long-random-secret")
	if code := run([]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}); code != 2 {
		t.Errorf("placeholder key from the environment: exit %d, want 2", code)
	}
}

// TestTokenCommand: `edgeplane token` prints a token the node accepts for
// the URL given, and refuses a weak key or a relative URL.
func TestTokenCommand(t *testing.T) {
	key := strings.Repeat("k", 32)
	var out bytes.Buffer
	if code := runToken([]string{"--access-key", key, "--url", "http://node:9090/api/hubs/chat/:send", "--user", "ops", "--ttl", "5m"}, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	c, err := auth.Verify(strings.TrimSpace(out.String()), []byte(key), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckREST("node:9090", "/api/hubs/chat/:send"); err != nil || c.UserID() != "ops" || *c.Exp > time.Now().Add(6*time.Minute).Unix() {
		t.Fatalf("token claims %+v: %v", c, err)
	}
	for _, args := range [][]string{
		{"--access-key", "short", "--url", "http://node/x"},
		{"--access-key", key, "--url", "/relative"},
		{"--access-key", key},
		{"--access-key", key, "--url", "http://node/x", "--ttl", "-1s"},
	} {
		if code := runToken(args, io.Discard); code != 2 {
			t.Errorf("runToken(%q) = %d, want 2", args, code)
		}
	}
}
