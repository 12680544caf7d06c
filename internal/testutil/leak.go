package testutil

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// leakGrace is how long Main waits for goroutines that are still winding
// down (a closed listener's accept loop, a timer's last tick) to end.
const leakGrace = 5 * time.Second

// ignoredFrames are goroutines that belong to the runtime, the testing
// package or a library's process-wide workers, not to any one test.
var ignoredFrames = []string{
	"testing.(*M).",
	"testing.(*T).Run",
	"testing.(*F).",
	"testing.runFuzzing",
	"testing.tRunner",
	"runtime.goexit",
	"os/signal.signal_recv",
	"os/signal.loop",
	"runtime.ensureSigM",
	"created by runtime.gc",
	"runtime.MHeap_Scavenger",
	"runtime/trace.",
}

// Main runs the package's tests, then fails the run if goroutines started
// during it are still alive after a grace period: a leak check for
// TestMain. Goroutines already running before the tests (package init,
// library workers) are not counted; frames containing any of ignore are
// library workers to skip too (e.g. "cloudwego/netpoll" for its pollers).
func Main(m *testing.M, ignore ...string) {
	before := goroutineIDs()
	code := m.Run()
	if code == 0 {
		if leaked := WaitLeaks(before, ignore...); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "testutil: %d goroutine(s) leaked by the tests:\n\n%s\n",
				len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// Leaks reports the goroutines, other than those in before, that are not
// ignorable: exported so a test can check a single scenario.
func Leaks(before map[string]bool, ignore ...string) []string {
	var out []string
	for id, stack := range goroutines() {
		if before[id] || ignorable(stack, ignore) {
			continue
		}
		out = append(out, stack)
	}
	return out
}

// Snapshot records the goroutines alive now, for Leaks.
func Snapshot() map[string]bool { return goroutineIDs() }

// WaitLeaks is Leaks after giving goroutines that are ending (a Close
// returns once they signalled it, not once they are gone) a moment to go.
func WaitLeaks(before map[string]bool, ignore ...string) []string {
	deadline := time.Now().Add(leakGrace)
	for {
		leaked := Leaks(before, ignore...)
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ignorable(stack string, ignore []string) bool {
	// The first line is "goroutine N [state]:", the second the top frame.
	lines := strings.SplitN(stack, "\n", 3)
	if len(lines) < 2 {
		return true
	}
	top := lines[1]
	for _, f := range ignoredFrames {
		if strings.Contains(top, f) {
			return true
		}
	}
	for _, s := range ignore {
		if strings.Contains(stack, s) {
			return true
		}
	}
	// The goroutine running Main itself (and the test binary's main).
	return strings.Contains(stack, "testutil.goroutines(") || strings.Contains(stack, "main.main()")
}

func goroutineIDs() map[string]bool {
	ids := make(map[string]bool)
	for id := range goroutines() {
		ids[id] = true
	}
	return ids
}

// goroutines maps each live goroutine's id to its stack.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for _, g := range strings.Split(string(buf), "\n\n") {
		g = strings.TrimSpace(g)
		if !strings.HasPrefix(g, "goroutine ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		out[id] = g
	}
	return out
}
