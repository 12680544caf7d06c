package testutil

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/poller"
)

// Backends lists the poller backends compiled in, sorted, narrowed by
// EDGEPLANE_TEST_POLLERS (comma-separated) when set. It fails tb if the
// list is empty or names a backend that is not compiled in.
func Backends(tb testing.TB) []string {
	tb.Helper()
	have := poller.Backends()
	slices.Sort(have)
	if v := os.Getenv("EDGEPLANE_TEST_POLLERS"); v != "" {
		want := strings.Split(v, ",")
		for _, b := range want {
			if !slices.Contains(have, b) {
				tb.Fatalf("EDGEPLANE_TEST_POLLERS names %q; compiled in: %v", b, have)
			}
		}
		have = want
	}
	if len(have) == 0 {
		tb.Fatal("no poller backend registered")
	}
	return have
}

// ForEachBackend runs fn as a subtest per backend in Backends.
func ForEachBackend(t *testing.T, fn func(t *testing.T, backend string)) {
	for _, b := range Backends(t) {
		t.Run(b, func(t *testing.T) { fn(t, b) })
	}
}
