package conn

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/poller"
)

// acceptBucket is a token bucket over accepted connections: after a node
// restart every client returns at once (the official JS client retries
// after 0, 2, 10, 30 s with no jitter); the excess is answered 503 with a
// jittered Retry-After so retries spread out, and established connections
// keep their CPU.
type acceptBucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; 0 disables
	burst  float64
	tokens float64
	last   time.Time
}

func (b *acceptBucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// perIP counts open connections per remote address.
type perIP struct {
	mu    sync.Mutex
	limit int // 0 disables
	n     map[netip.Addr]int32
}

func (p *perIP) acquire(a netip.Addr) bool {
	if p.limit <= 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(p.n[a]) >= p.limit {
		return false
	}
	p.n[a]++
	return true
}

func (p *perIP) release(a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v := p.n[a] - 1; v > 0 {
		p.n[a] = v
	} else {
		delete(p.n, a)
	}
}

func addrOf(a net.Addr) netip.Addr {
	return poller.AddrPortOf(a).Addr()
}

// jitteredRetryAfter spreads retries over [base, 2*base] seconds.
func jitteredRetryAfter(base int) int {
	if base < 1 {
		base = 1
	}
	return base + rand.IntN(base+1)
}

// serviceUnavailable is a complete 503 response: empty body, as ASP.NET
// Core's rate limiter answers (clients show the status text), msg in
// ErrorHeader for operators; extra are more header lines (CORS).
func serviceUnavailable(retryAfter int, msg, extra string) []byte {
	return []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: " + strconv.Itoa(retryAfter) +
		"\r\nContent-Length: 0\r\nConnection: close\r\n" + errorHeader(msg) + extra + "\r\n")
}

// originAllowed reports whether a browser Origin may connect: an empty
// allow-list or an absent Origin (non-browser clients) allows; entries are
// exact origins ("https://app.example.com") or patterns with * matched by
// path.Match against the origin ("https://*.example.com").
func originAllowed(allowed []string, origin string) bool {
	if len(allowed) == 0 || origin == "" {
		return true
	}
	o := strings.ToLower(origin)
	if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" {
		return false
	}
	for _, a := range allowed {
		a = strings.ToLower(a)
		if a == "*" || a == o {
			return true
		}
		if strings.Contains(a, "*") {
			if ok, _ := path.Match(a, o); ok {
				return true
			}
		}
	}
	return false
}

// rateWindow is a fixed one-second window counting a connection's inbound
// records (6 bytes of per-connection state).
type rateWindow struct {
	sec   int32
	count uint16
}

// allow counts one record in second now; false when over limit.
func (w *rateWindow) allow(now int32, limit int) bool {
	if limit <= 0 {
		return true
	}
	if w.sec != now {
		w.sec, w.count = now, 0
	}
	if int(w.count) >= limit {
		return false
	}
	w.count++
	return true
}
