package node_test

import (
	"testing"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind
// (netpoll's pollers are process-wide and never stop).
func TestMain(m *testing.M) { testutil.Main(m, "cloudwego/netpoll") }
