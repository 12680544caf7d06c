package conn

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestAcceptBucket: the bucket starts full (burst), refills at rate per
// second up to burst, and refuses below one token; rate 0 or less admits
// everything.
func TestAcceptBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := acceptBucket{rate: 10, burst: 3}
	for i := range 3 {
		if !b.allow(t0) {
			t.Fatalf("call %d of a full bucket of 3 refused", i+1)
		}
	}
	if b.allow(t0) {
		t.Fatal("fourth call in the same instant admitted (burst 3)")
	}
	// 10/s: one token after 100 ms, none after 50 ms more.
	if !b.allow(t0.Add(100 * time.Millisecond)) {
		t.Fatal("refused after 100 ms at 10/s (one token refilled)")
	}
	if b.allow(t0.Add(150 * time.Millisecond)) {
		t.Fatal("admitted 50 ms after the last token was spent (half a token)")
	}
	// Refilled to the burst, not beyond, after a long pause.
	later := t0.Add(time.Hour)
	n := 0
	for b.allow(later) {
		n++
	}
	if n != 3 {
		t.Fatalf("after an hour: %d admitted at once, want the burst, 3", n)
	}
	one := acceptBucket{rate: 0.001, burst: 1}
	if !one.allow(t0) || one.allow(t0) {
		t.Fatal("a bucket of one: want the first admitted and the second refused")
	}
	for _, rate := range []float64{0, -1} {
		off := acceptBucket{rate: rate}
		for i := range 10 {
			if !off.allow(t0) {
				t.Fatalf("rate %v (disabled): call %d refused", rate, i+1)
			}
		}
	}
}

// TestPerIP: at most limit open connections per address, counted per
// address; a release makes room, and an address with none left is
// forgotten. A limit of 0 or less admits everything.
func TestPerIP(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	p := perIP{limit: 2, n: make(map[netip.Addr]int32)}
	if !p.acquire(a) || !p.acquire(a) {
		t.Fatal("two connections from one address refused (limit 2)")
	}
	if p.acquire(a) {
		t.Fatal("a third connection from one address admitted (limit 2)")
	}
	if !p.acquire(b) {
		t.Fatal("another address refused")
	}
	p.release(a)
	if !p.acquire(a) {
		t.Fatal("refused after a release")
	}
	p.release(a)
	p.release(a)
	p.release(b)
	if len(p.n) != 0 {
		t.Fatalf("addresses with no connection left still counted: %v", p.n)
	}
	for _, limit := range []int{0, -1} {
		off := perIP{limit: limit, n: make(map[netip.Addr]int32)}
		for i := range 5 {
			if !off.acquire(a) {
				t.Fatalf("limit %d (off): connection %d refused", limit, i+1)
			}
		}
	}
}

// TestMaxConnsPerIP: through the server, the connection over the limit is
// answered 503 with a Retry-After at once and counted as rejected; closing
// one makes room.
func TestMaxConnsPerIP(t *testing.T) {
	s := newTestServer(t, Config{MaxConnsPerIP: 2, RetryAfter: 3})
	a, b := &fakeConn{}, &fakeConn{}
	sa, sb := s.OnOpen(a), s.OnOpen(b)
	defer sb.OnClose(nil)
	if a.isShutdown() || b.isShutdown() {
		t.Fatal("connections within the limit refused")
	}
	over := &fakeConn{}
	so := s.OnOpen(over)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(over.output())), nil)
	if err != nil || resp.StatusCode != 503 || !over.isShutdown() {
		t.Fatalf("third connection from one address: %q (%v), want 503", over.output(), err)
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 3 || ra > 6 {
		t.Fatalf("Retry-After %q, want 3..6", resp.Header.Get("Retry-After"))
	}
	if got := s.M.rejected("per_ip").Get(); got != 1 {
		t.Fatalf("edgeplane_rejected_total{reason=\"per_ip\"} = %d, want 1", got)
	}
	so.OnClose(nil) // a refused connection was never counted: releases nothing
	sa.OnClose(nil)
	again := &fakeConn{}
	s.OnOpen(again).OnClose(nil)
	if again.isShutdown() {
		t.Fatalf("refused after a connection closed: %q", again.output())
	}
	if got := s.perIP.n[addrOf(again.RemoteAddr())]; got != 1 {
		t.Fatalf("per-IP count %d with one connection open, want 1", got)
	}
}

// TestJitteredRetryAfter: spread over [base, 2*base], both ends reached; a
// base below 1 is 1.
func TestJitteredRetryAfter(t *testing.T) {
	for _, base := range []int{-3, 0, 1, 2, 5} {
		lo, hi := max(base, 1), 2*max(base, 1)
		seen := map[int]bool{}
		for range 2000 {
			v := jitteredRetryAfter(base)
			if v < lo || v > hi {
				t.Fatalf("jitteredRetryAfter(%d) = %d, want %d..%d", base, v, lo, hi)
			}
			seen[v] = true
		}
		if !seen[lo] || !seen[hi] {
			t.Fatalf("jitteredRetryAfter(%d) over 2000 draws: %v, want both %d and %d", base, seen, lo, hi)
		}
	}
}

// TestOriginAllowed: no allow-list or no Origin allows; otherwise exact
// origins (case-insensitive), "*" and path.Match patterns; an Origin that
// is not a scheme://host URL never matches.
func TestOriginAllowed(t *testing.T) {
	for _, tc := range []struct {
		allowed []string
		origin  string
		want    bool
	}{
		{nil, "https://evil.example.com", true},
		{[]string{"https://app.example.com"}, "", true},
		{[]string{"https://app.example.com"}, "https://app.example.com", true},
		{[]string{"https://App.Example.com"}, "HTTPS://APP.EXAMPLE.COM", true},
		{[]string{"https://app.example.com"}, "https://app.example.com.evil.net", false},
		{[]string{"https://app.example.com"}, "http://app.example.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com", true},
		{[]string{"https://*.example.com"}, "https://example.com", false},
		{[]string{"https://*.example.com"}, "https://a.b.example.com", true},
		{[]string{"*"}, "https://anything.example", true},
		{[]string{"*"}, "null", false},
		{[]string{"*"}, "https://", false},
		{[]string{"*"}, "app.example.com", false},
		{[]string{"https://a.example.com", "https://b.example.com"}, "https://b.example.com", true},
	} {
		if got := originAllowed(tc.allowed, tc.origin); got != tc.want {
			t.Errorf("originAllowed(%q, %q) = %v, want %v", tc.allowed, tc.origin, got, tc.want)
		}
	}
}

// TestRateWindow: at most limit records in one second, the count starting
// over in the next; limit 0 or less is no limit.
func TestRateWindow(t *testing.T) {
	var w rateWindow
	for i := range 3 {
		if !w.allow(5, 3) {
			t.Fatalf("record %d of 3 in second 5 refused", i+1)
		}
	}
	if w.allow(5, 3) {
		t.Fatal("fourth record in second 5 admitted (limit 3)")
	}
	if !w.allow(6, 3) {
		t.Fatal("first record of second 6 refused")
	}
	if !w.allow(6, 3) || !w.allow(6, 3) || w.allow(6, 3) {
		t.Fatal("second 6: want 3 admitted, then refused")
	}
	var off rateWindow
	for i := range 100 {
		if !off.allow(1, 0) || !off.allow(1, -1) {
			t.Fatalf("no limit: record %d refused", i+1)
		}
	}
}
