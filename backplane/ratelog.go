package backplane

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// rateLog logs at most one warning per interval and reports how many were
// suppressed in between.
type rateLog struct {
	every      time.Duration
	last       atomic.Int64
	suppressed atomic.Int64
}

func (l *rateLog) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(l.every) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	if n := l.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
