package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bar is a progress bar on a terminal line (stderr), redrawn at most four
// times a second. A nil *Bar is a no-op.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
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
	return &Bar{w: w, label: label, total: total, start: time.Now()}
}

// Update redraws the bar at n of total with extra text.
func (b *Bar) Update(n int, extra string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.last) < 250*time.Millisecond {
		return
	}
	b.last = time.Now()
	b.draw(n, extra)
}

func (b *Bar) draw(n int, extra string) {
	const width = 30
	fill := 0
	if b.total > 0 {
		fill = min(width, n*width/b.total)
	}
	fmt.Fprintf(b.w, "\r%-28s [%s%s] %6d/%-6d %5.1fs %s\x1b[K", b.label,
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), n, b.total,
		time.Since(b.start).Seconds(), extra)
}

// Done draws the final state and ends the line.
func (b *Bar) Done(n int, extra string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.draw(n, extra)
	fmt.Fprintln(b.w)
}
