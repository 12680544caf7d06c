package poller

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logRecorder is a slog.Handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.msgs = append(h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.msgs
	h.msgs = nil
	return m
}

// TestAcceptorFailures: each accept that can be neither completed nor shed
// counts an accept_error and pauses on the back-off schedule; the first of
// a run is logged; the next accept logs the recovery once and restarts the
// schedule. An accept without failures before it logs nothing.
func TestAcceptorFailures(t *testing.T) {
	var rejects []RejectReason
	cfg := Config{OnReject: func(r RejectReason) { rejects = append(rejects, r) }}.WithDefaults()
	var a acceptor
	a.init("test", cfg, NewAdmission(cfg), nil)
	logs := &logRecorder{}
	a.log = slog.New(logs)

	a.accepted()
	if got := logs.take(); len(got) != 0 {
		t.Fatalf("accept with no failure before it logged %q", got)
	}
	for i, want := range []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond} {
		if !a.failed(unix.ENOBUFS) || a.pause != want || a.failures != i+1 {
			t.Fatalf("failure %d: pause %v, failures %d; want %v, %d", i+1, a.pause, a.failures, want, i+1)
		}
	}
	if got, want := logs.take(), []string{"poller: accept failed; backing off"}; !slices.Equal(got, want) {
		t.Fatalf("three failures logged %q, want %q", got, want)
	}
	if want := []RejectReason{RejectAcceptError, RejectAcceptError, RejectAcceptError}; !slices.Equal(rejects, want) {
		t.Fatalf("OnReject got %v, want %v", rejects, want)
	}
	a.accepted()
	a.accepted()
	if got, want := logs.take(), []string{"poller: accepting again"}; !slices.Equal(got, want) || a.failures != 0 {
		t.Fatalf("recovery logged %q (failures %d), want %q once", got, a.failures, want)
	}
	if a.failed(unix.ENOMEM); a.pause != 5*time.Millisecond || a.failures != 1 {
		t.Fatalf("failure after recovery: pause %v, failures %d; want 5ms, 1", a.pause, a.failures)
	}
	if got := logs.take(); len(got) != 1 {
		t.Fatalf("first failure of a new run logged %q", got)
	}
}
