package main

import (
	"flag"
	"testing"

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
	for _, bad := range [][]string{{"=x"}, {"a", "a=b"}, {" "}} {
		if _, err := parseHubs(bad); err == nil {
			t.Errorf("parseHubs(%q) accepted", bad)
		}
	}
}
