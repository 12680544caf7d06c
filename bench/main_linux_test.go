package bench

import (
	"context"
	"os"
	"testing"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestMain lets the test binary stand in for edgebench: experiments re-exec
// their own binary as the baseline server and as load-client children.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case ChildCommand:
			if err := ChildMain(os.Args[2:]); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		case FloorCommand:
			if err := FloorMain(context.Background(), os.Args[2:]); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		case "baseline":
			if err := BaselineMain(context.Background(), os.Args[2:]); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	testutil.Main(m)
}
