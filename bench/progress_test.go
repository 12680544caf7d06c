package bench

import (
	"bytes"
	"strings"
	"testing"
)

// On a non-terminal the bar prints plain lines (at most one per
// LineEvery, and one at the end), never carriage returns or escapes.
func TestBarOnNonTerminalPrintsLines(t *testing.T) {
	var buf bytes.Buffer
	b := NewBar(&buf, "edgeplane-epoll connect", 100)
	for i := 0; i < 1000; i++ {
		b.Update(i%100, "fail 0")
	}
	if buf.Len() != 0 {
		t.Fatalf("updates within %s printed %q", LineEvery, buf.String())
	}
	b.last = b.last.Add(-LineEvery)
	b.Update(50, "fail 1")
	b.Done(100, "fail 2")
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if strings.ContainsAny(out, "\r\x1b") || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "edgeplane-epoll connect: 50/100 ") || !strings.HasSuffix(lines[0], "fail 1") ||
		!strings.HasPrefix(lines[1], "edgeplane-epoll connect: 100/100 ") {
		t.Fatalf("output %q", out)
	}
	var nilBar *Bar
	nilBar.Update(1, "")
	nilBar.Done(1, "")
}
