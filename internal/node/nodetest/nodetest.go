// Package nodetest starts edgeplane nodes inside a test process, on free
// loopback ports, for integration tests that need no separate binary:
//
//	n := nodetest.Start(t, node.Config{})
//	resp, err := http.Post("http://"+n.AdminAddr().String()+"/api/hubs/chat/:send", ...)
//
// The node logs through t.Log and is closed when the test ends.
package nodetest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/edgeplane/edgeplane/internal/node"
)

// Start starts a node with cfg, on 127.0.0.1:0 for any address cfg leaves
// empty, without the memory trimmer (unless cfg says otherwise, nothing in
// a test wants process-wide GCs), logging to tb. It fails tb on error.
func Start(tb testing.TB, cfg node.Config) *node.Node {
	tb.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Admin == "" {
		cfg.Admin = "127.0.0.1:0"
	}
	cfg.NoTrim = true
	w := &tbWriter{tb: tb}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	n, err := node.Start(cfg)
	if err != nil {
		tb.Fatalf("start node: %v", err)
	}
	tb.Cleanup(func() {
		n.Close()
		w.stop()
	})
	return n
}

// tbWriter sends log lines to the test's log until the test ends (testing
// panics on a Log after that).
type tbWriter struct {
	mu      sync.Mutex
	tb      testing.TB
	stopped bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
