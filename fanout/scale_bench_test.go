//go:build unix

package fanout

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
)

// Scale benchmarks: the hub's per-connection structures at 2^16 entries
// and, with EDGEPLANE_BENCH_MILLION=1 (make bench-million), at 2^18 and
// 2^20. An operation's ns/op (or ns per entry for the whole-hub walks)
// must not grow with the size as an O(log n) or O(n) structure's would
// (16x from 2^16 to 2^20): O(1) per connection, nothing that breaks past
// a million. What does grow is the cost of cache misses once the
// structures outgrow the caches; docs/OPERATING.md has the ratios.

// scaleSizes are the entry counts of the scale benchmarks.
func scaleSizes() []int {
	if os.Getenv("EDGEPLANE_BENCH_MILLION") != "" {
		return []int{1 << 16, 1 << 18, 1 << 20}
	}
	return []int{1 << 16}
}

// cpuNs is this process's CPU time (user+system, every thread, the GC's
// included) in nanoseconds.
func cpuNs() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// reportCPU reports the CPU time since cpu0 per operation (ops: how many
// were done, an entry each for the per-entry figures). On a shared
// machine other processes' load inflates wall time (ns/op) but not CPU
// time, so the cpu-ns figures are the ones to compare across sizes.
func reportCPU(b *testing.B, cpu0 int64, ops float64, unit string) {
	b.ReportMetric(float64(cpuNs()-cpu0)/ops, "cpu-ns/"+unit)
}

// scaleIDs makes n connection ids shaped like the node's (16 bytes,
// base64url, 22 characters).
func scaleIDs(n int) []string {
	ids := make([]string, n)
	var b [16]byte
	for i := range ids {
		binary.LittleEndian.PutUint64(b[:], uint64(i)*0x9E3779B97F4A7C15)
		binary.LittleEndian.PutUint64(b[8:], uint64(i))
		ids[i] = base64.RawURLEncoding.EncodeToString(b[:])
	}
	return ids
}

// next is a cheap pseudo-random walk over [0, n): a lookup's target
// without rand in the timed loop (an LCG; n a power of two).
func next(x uint64) uint64 { return x*6364136223846793005 + 1442695040888963407 }

// scaleHub fills hub chat with n members, every one in group g.
func scaleHub(b *testing.B, n int, group bool) (*Router, *Hub, []string, []*Entry) {
	b.Helper()
	r := NewRouter([]string{"chat"}, nil)
	h := r.Hub("chat")
	ids := scaleIDs(n)
	es := make([]*Entry, n)
	for i, id := range ids {
		e, ok := h.Add(nopMember{}, id, "")
		if !ok {
			b.Fatalf("add %s", id)
		}
		es[i] = e
		if group {
			h.AddToGroup(id, "g")
		}
	}
	return r, h, ids, es
}

// BenchmarkScaleIndex: the hub index (64 shards of a dense list and an
// open-addressing table) at n connections: a lookup by id, and churn (one
// connection leaves, one arrives, the size stays n).
func BenchmarkScaleIndex(b *testing.B) {
	for _, n := range scaleSizes() {
		_, h, ids, es := scaleHub(b, n, false)
		mask := uint64(n - 1)
		b.Run(fmt.Sprintf("lookup/entries=%d", n), func(b *testing.B) {
			x := uint64(1)
			cpu0 := cpuNs()
			for b.Loop() {
				x = next(x)
				if !h.Lookup(ids[(x>>20)&mask]) {
					b.Fatal("missing")
				}
			}
			reportCPU(b, cpu0, float64(b.N), "op")
		})
		b.Run(fmt.Sprintf("churn/entries=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			x := uint64(7)
			cpu0 := cpuNs()
			for b.Loop() {
				x = next(x)
				i := (x >> 20) & mask
				h.Remove(es[i])
				e, ok := h.Add(nopMember{}, ids[i], "")
				if !ok {
					b.Fatal("re-add")
				}
				es[i] = e
			}
			reportCPU(b, cpu0, float64(b.N), "op")
			if h.Len() != n {
				b.Fatalf("len %d, want %d", h.Len(), n)
			}
		})
	}
}

// BenchmarkScaleGroup: a group of n members (a dense list and a position
// map): one member leaves the group and joins it again.
func BenchmarkScaleGroup(b *testing.B) {
	for _, n := range scaleSizes() {
		_, h, ids, _ := scaleHub(b, n, true)
		mask := uint64(n - 1)
		b.Run(fmt.Sprintf("leave+join/members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			x := uint64(3)
			cpu0 := cpuNs()
			for b.Loop() {
				x = next(x)
				id := ids[(x>>20)&mask]
				h.RemoveFromGroup(id, "g")
				h.AddToGroup(id, "g")
			}
			reportCPU(b, cpu0, float64(b.N), "op")
			if h.GroupLen("g") != n {
				b.Fatalf("group len %d, want %d", h.GroupLen("g"), n)
			}
		})
	}
}

// BenchmarkScaleDeliver: one broadcast to all n connections and to a
// group of n, queued to members that take the frame and return; ns/recipient
// is the figure to compare across sizes.
func BenchmarkScaleDeliver(b *testing.B) {
	rec := make([]byte, 64)
	for i := range rec {
		rec[i] = 'x'
	}
	rec[63] = 0x1e
	frame := NewFrames(rec, nil)
	for _, n := range scaleSizes() {
		_, h, _, _ := scaleHub(b, n, true)
		for _, tc := range []struct {
			name string
			kind backplane.Kind
		}{{"all", backplane.All}, {"group", backplane.Group}} {
			b.Run(fmt.Sprintf("%s/recipients=%d", tc.name, n), func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuNs()
				for b.Loop() {
					if got := h.Deliver(tc.kind, "g", nil, frame); got != n {
						b.Fatalf("%d recipients, want %d", got, n)
					}
				}
				reportCPU(b, cpu0, float64(b.N)*float64(n), "recipient")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/recipient")
			})
		}
	}
}

// BenchmarkScaleEach: a walk over every connection (what a drain and the
// queue-bytes gauge do): ns/entry.
func BenchmarkScaleEach(b *testing.B) {
	for _, n := range scaleSizes() {
		_, h, _, _ := scaleHub(b, n, false)
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuNs()
			for b.Loop() {
				k := 0
				h.Each(func(*Entry) { k++ })
				if k != n {
					b.Fatalf("walked %d, want %d", k, n)
				}
			}
			reportCPU(b, cpu0, float64(b.N)*float64(n), "entry")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
		})
	}
}
