package poller_test

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/poller"
)

func TestAdmissionMaxConns(t *testing.T) {
	var rejected []poller.RejectReason
	a := poller.NewAdmission(poller.Config{MaxConns: 2, FDReserve: -1,
		OnReject: func(r poller.RejectReason) { rejected = append(rejected, r) }}.WithDefaults())
	for i, want := range []poller.RejectReason{"", "", poller.RejectMaxConns, poller.RejectMaxConns} {
		if got := a.Admit(); got != want {
			t.Fatalf("Admit #%d = %q, want %q", i, got, want)
		}
	}
	if a.Conns() != 2 {
		t.Fatalf("Conns() = %d, want 2 (rejections are not counted)", a.Conns())
	}
	a.Closed()
	if got := a.Admit(); got != "" {
		t.Fatalf("Admit after Closed = %q, want admitted", got)
	}
	if len(rejected) != 2 || rejected[0] != poller.RejectMaxConns {
		t.Fatalf("OnReject got %v", rejected)
	}
	a.Rejected(poller.RejectAcceptRate)
	if rejected[len(rejected)-1] != poller.RejectAcceptRate {
		t.Fatalf("Rejected did not reach OnReject: %v", rejected)
	}
}

func TestAdmissionFDReserve(t *testing.T) {
	a := poller.NewAdmission(poller.Config{FDReserve: 1 << 30}.WithDefaults())
	if got := a.Admit(); got != poller.RejectFDReserve {
		t.Fatalf("Admit with a huge reserve = %q, want %q", got, poller.RejectFDReserve)
	}
	if a.Conns() != 0 {
		t.Fatalf("Conns() = %d after a rejection", a.Conns())
	}
	off := poller.NewAdmission(poller.Config{FDReserve: -1}.WithDefaults())
	if got := off.Admit(); got != "" {
		t.Fatalf("Admit with the reserve disabled = %q", got)
	}
}

// TestAdmissionFDReserveThreshold: a connection is admitted while it
// leaves at least FDReserve descriptors under the limit, and not one more:
// with 100 free and a reserve of 64, exactly 36 connections stay.
func TestAdmissionFDReserveThreshold(t *testing.T) {
	for _, tc := range []struct {
		limit, open   int64
		reserve, want int
		pre           int // connections admitted before: among the open descriptors
	}{
		{limit: 1000, open: 900, reserve: 64, want: 36},
		{limit: 1000, open: 900, reserve: 64, want: 36, pre: 10},
		{limit: 1000, open: 935, reserve: 64, want: 1},
		{limit: 1000, open: 936, reserve: 64, want: 0},
		{limit: 1000, open: 990, reserve: 64, want: 0},
		{limit: 10, open: 5, reserve: 0, want: 5}, // a reserve of 0 still stops at the limit
	} {
		var rejects []poller.RejectReason
		a := poller.NewAdmission(poller.Config{FDReserve: tc.reserve, OnReject: func(r poller.RejectReason) { rejects = append(rejects, r) }})
		for range tc.pre {
			if r := a.Admit(); r != "" {
				t.Fatalf("Admit before the limit is set: %q", r)
			}
		}
		a.SetFDs(tc.limit, tc.open)
		if h := a.Headroom(); h != tc.limit-tc.open {
			t.Fatalf("%+v: Headroom() = %d, want %d", tc, h, tc.limit-tc.open)
		}
		admitted := 0
		for a.Admit() == "" && admitted <= 2*int(tc.limit) {
			admitted++
		}
		if admitted != tc.want || a.Conns() != tc.pre+tc.want {
			t.Errorf("limit %d, open %d, reserve %d: admitted %d (Conns %d), want %d", tc.limit, tc.open, tc.reserve, admitted, a.Conns(), tc.want)
		}
		if len(rejects) != 1 || rejects[0] != poller.RejectFDReserve {
			t.Errorf("limit %d, open %d, reserve %d: OnReject got %v, want one fd_reserve", tc.limit, tc.open, tc.reserve, rejects)
		}
		if h := a.Headroom(); h != tc.limit-tc.open-int64(tc.want) {
			t.Errorf("limit %d, open %d: Headroom() = %d after %d admitted, want %d", tc.limit, tc.open, h, tc.want, tc.limit-tc.open-int64(tc.want))
		}
		if tc.want > 0 {
			// A connection that closes frees its descriptor for the next.
			a.Closed()
			if r := a.Admit(); r != "" {
				t.Errorf("limit %d, open %d: Admit after Closed = %q", tc.limit, tc.open, r)
			}
		}
	}
}

func TestAdmissionHeadroom(t *testing.T) {
	a := poller.NewAdmission(poller.Config{}.WithDefaults())
	h0 := a.Headroom()
	if h0 <= 0 {
		t.Fatalf("Headroom() = %d", h0)
	}
	// Admitted connections count against the headroom between refreshes.
	for range 10 {
		a.Admit()
	}
	if h := a.Headroom(); h > h0-10 {
		t.Fatalf("Headroom() = %d after 10 admits, was %d", h, h0)
	}
}

// TestCountOpenFDs: exact enough to see 3,000 more descriptors (more than
// one getdents buffer). Its allocations are BenchmarkCountOpenFDs's.
func TestCountOpenFDs(t *testing.T) {
	n0 := poller.CountOpenFDs()
	if n0 < 3 {
		t.Fatalf("CountOpenFDs() = %d", n0)
	}
	const more = 3000
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for range more {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	n1 := poller.CountOpenFDs()
	if n1-n0 < more || n1-n0 > more+50 {
		t.Fatalf("CountOpenFDs() went from %d to %d after opening %d files", n0, n1, more)
	}
	// Exact: the entries of /proc/self/fd but "." and "..", less the one
	// the listing itself opens (os.ReadDir lists its own too). Other
	// tests' descriptors may come and go: it must agree once.
	testutil.WaitUntil(t, 5*time.Second, "CountOpenFDs() = entries of /proc/self/fd", func() bool {
		n := poller.CountOpenFDs()
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return n == len(ents)-1
	})
}

func TestConfigWithDefaults(t *testing.T) {
	want := poller.Config{FDReserve: poller.DefaultFDReserve, MaxQueueBytes: poller.DefaultMaxQueueBytes,
		ShutdownTimeout: poller.DefaultShutdownTimeout, RetryAfter: poller.DefaultRetryAfter}
	if got := (poller.Config{}).WithDefaults(); got.FDReserve != want.FDReserve || got.MaxQueueBytes != want.MaxQueueBytes ||
		got.ShutdownTimeout != want.ShutdownTimeout || got.RetryAfter != want.RetryAfter || got.MaxConns != 0 || got.Loops != 0 {
		t.Errorf("zero Config with defaults = %+v, want %+v", got, want)
	}
	// Negative values are defaulted too, except FDReserve (negative: no reserve).
	neg := poller.Config{FDReserve: -1, MaxQueueBytes: -1, ShutdownTimeout: -1, RetryAfter: -1}.WithDefaults()
	if neg.FDReserve != -1 || neg.MaxQueueBytes != want.MaxQueueBytes || neg.ShutdownTimeout != want.ShutdownTimeout || neg.RetryAfter != want.RetryAfter {
		t.Errorf("negative Config with defaults = %+v", neg)
	}
	set := poller.Config{MaxConns: 3, FDReserve: 1, MaxQueueBytes: 2, ShutdownTimeout: time.Second, RetryAfter: 1, Loops: 4}
	if got := set.WithDefaults(); got.MaxConns != 3 || got.FDReserve != 1 || got.MaxQueueBytes != 2 || got.ShutdownTimeout != time.Second || got.RetryAfter != 1 || got.Loops != 4 {
		t.Errorf("set Config with defaults = %+v, want %+v", got, set)
	}
}

// BenchmarkCountOpenFDs: the cost of counting 3,000 open descriptors; it
// allocates nothing per descriptor (allocs/op stays at 0-2 whatever the
// count).
func BenchmarkCountOpenFDs(b *testing.B) {
	for range 3000 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
	}
	b.ReportAllocs()
	for b.Loop() {
		poller.CountOpenFDs()
	}
}

func TestRejectResponse(t *testing.T) {
	raw := poller.RejectResponse(9, poller.RejectMaxConns)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(raw))), nil)
	if err != nil {
		t.Fatalf("not a valid HTTP response: %v\n%s", err, raw)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "9" || !resp.Close {
		t.Fatalf("status %d, Retry-After %q, close %v", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Close)
	}
	// An empty body, as ASP.NET answers (clients then show "Service
	// Unavailable"); the reason is for operators, in a header.
	if len(body) != 0 || resp.ContentLength != 0 || !strings.Contains(resp.Header.Get("X-Edgeplane-Error"), "max_conns") {
		t.Fatalf("body %q, Content-Length %d, X-Edgeplane-Error %q", body, resp.ContentLength, resp.Header.Get("X-Edgeplane-Error"))
	}
}

func TestAcceptBackoff(t *testing.T) {
	var b poller.AcceptBackoff
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		if got := b.Failed(); got != w*time.Millisecond {
			t.Fatalf("Failed #%d = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Succeeded()
	if got := b.Failed(); got != 5*time.Millisecond {
		t.Fatalf("Failed after Succeeded = %v, want 5ms", got)
	}
}
