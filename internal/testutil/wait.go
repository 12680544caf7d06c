package testutil

import (
	"net"
	"testing"
	"time"
)

// WaitUntil and WaitNoError re-check their condition after 1 ms, then
// back off to every 25 ms: quick for in-process events, light on a 2-core
// box when the condition is an HTTP request to another process.
const (
	pollFirst = time.Millisecond
	pollMax   = 25 * time.Millisecond
)

func nextPoll(d time.Duration) time.Duration { return min(2*d, pollMax) }

// WaitUntil polls cond until it holds, failing tb if d passes first; what
// names the awaited event in the failure.
func WaitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for wait := pollFirst; !cond(); wait = nextPoll(wait) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(wait)
	}
}

// WaitNoError polls cond until it returns nil, failing tb with the last
// error if d passes first.
func WaitNoError(tb testing.TB, d time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for wait := pollFirst; ; wait = nextPoll(wait) {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %v: %v", d, err)
		}
		time.Sleep(wait)
	}
}

// Dial opens a TCP connection to addr (5 s timeout) that is closed when the
// test ends.
func Dial(tb testing.TB, addr string) *net.TCPConn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
