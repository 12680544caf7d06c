package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

func TestLeaksSeesANewGoroutineUntilItEnds(t *testing.T) {
	before := Snapshot()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		parkedForLeakTest(stop)
	}()
	WaitUntil(t, 5*time.Second, "the goroutine to be reported", func() bool {
		for _, s := range Leaks(before) {
			if strings.Contains(s, "parkedForLeakTest") {
				return true
			}
		}
		return false
	})
	if got := Leaks(before, "parkedForLeakTest"); len(got) != 0 {
		t.Fatalf("ignore list did not apply: %v", got)
	}
	close(stop)
	<-done
	WaitUntil(t, 5*time.Second, "the goroutine to be gone", func() bool { return len(Leaks(before)) == 0 })
}

func parkedForLeakTest(stop chan struct{}) { <-stop }

func TestWaitHelpersFail(t *testing.T) {
	for name, fn := range map[string]func(tb testing.TB){
		"WaitUntil":   func(tb testing.TB) { WaitUntil(tb, 10*time.Millisecond, "never", func() bool { return false }) },
		"WaitNoError": func(tb testing.TB) { WaitNoError(tb, 10*time.Millisecond, func() error { return errNever }) },
	} {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() { defer close(done); fn(r) }() // Fatalf ends the goroutine via Goexit
		<-done
		if !r.failed || !strings.Contains(r.msg, "never") {
			t.Errorf("%s: failed=%v msg=%q, want a failure naming the condition", name, r.failed, r.msg)
		}
	}
}

type neverErr struct{}

func (neverErr) Error() string { return "never" }

var errNever error = neverErr{}

// recorder captures a Fatalf without failing the real test.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
