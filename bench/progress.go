package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// LineEvery is how often a Bar on a non-terminal (a log file, a pipe, CI)
// prints a progress line.
const LineEvery = 5 * time.Second

// Bar shows progress on w. On a terminal it is a bar redrawn in place at
// most four times a second; elsewhere it prints one plain line every
// LineEvery (and at the end), so that logs get lines rather than a stream
// of carriage returns. A nil *Bar is a no-op.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	label string
	total int
	last  time.Time
	start time.Time
}

// NewBar starts a bar; w nil gives a nil bar.
func NewBar(w io.Writer, label string, total int) *Bar {
	if w == nil {
		return nil
	}
	now := time.Now()
	return &Bar{w: w, tty: isTerminal(w), label: label, total: total, start: now, last: now}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Update shows n of total with extra text.
func (b *Bar) Update(n int, extra string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	every := 250 * time.Millisecond
	if !b.tty {
		every = LineEvery
	}
	if time.Since(b.last) < every {
		return
	}
	b.last = time.Now()
	b.draw(n, extra)
	if !b.tty {
		fmt.Fprintln(b.w)
	}
}

func (b *Bar) draw(n int, extra string) {
	if !b.tty {
		fmt.Fprintf(b.w, "%s: %d/%d %.1fs %s", b.label, n, b.total, time.Since(b.start).Seconds(), strings.TrimSpace(extra))
		return
	}
	const width = 30
	fill := 0
	if b.total > 0 {
		fill = max(0, min(width, n*width/b.total))
	}
	fmt.Fprintf(b.w, "\r%-28s [%s%s] %6d/%-6d %5.1fs %s\x1b[K", b.label,
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), n, b.total,
		time.Since(b.start).Seconds(), extra)
}

// Done shows the final state and ends the line.
func (b *Bar) Done(n int, extra string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(n, extra)
	fmt.Fprintln(b.w)
}
