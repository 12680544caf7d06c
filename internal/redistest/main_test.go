package redistest

import (
	"testing"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestMain fails the package's run if a test leaves a goroutine behind.
func TestMain(m *testing.M) { testutil.Main(m) }
