package poller_test

import (
	"testing"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestMain fails the run if a test leaves a goroutine behind. Ignored:
// netpoll's poller goroutines ("cloudwego/netpoll"), which netpoll starts
// once per process on first use and never stops; they belong to no
// Poller, and a Poller's own goroutines (acceptor, writers, watchdog) do
// not run netpoll code at rest.
func TestMain(m *testing.M) { testutil.Main(m, "cloudwego/netpoll") }
