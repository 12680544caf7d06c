package poller

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// Scale benchmarks of the epoll backend's descriptor table (the slab) at
// 2^16 descriptors and, with EDGEPLANE_BENCH_MILLION=1 (make
// bench-million), 2^18 and 2^20: ns/op must not grow with the table as an
// O(log n) or O(n) one would (16x from 2^16 to 2^20), only by the cache
// misses of a table that outgrew the caches (docs/OPERATING.md has the
// ratios).

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

func nextLCG(x uint64) uint64 { return x*6364136223846793005 + 1442695040888963407 }

// BenchmarkScaleSlab: installing a connection's state at a descriptor
// (the page allocated on first use) and the lookup every Send, Shutdown
// and Close does (page table, slot, lock, generation check), at random
// descriptors below n.
func BenchmarkScaleSlab(b *testing.B) {
	for _, n := range scaleSizes() {
		b.Run(fmt.Sprintf("install/fds=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuNs()
			for b.Loop() {
				s := newSlab(maxFD)
				for fd := 0; fd < n; fd++ {
					if !s.ensure(fd) {
						b.Fatal("ensure")
					}
					sl, _ := s.get(fd)
					sl.mu.Lock()
					sl.gen = uint32(fd)
					sl.flags.Store(fOpen)
					sl.mu.Unlock()
				}
			}
			reportCPU(b, cpu0, float64(b.N)*float64(n), "fd")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/fd")
		})
		s := newSlab(maxFD)
		for fd := 0; fd < n; fd++ {
			s.ensure(fd)
			sl, _ := s.get(fd)
			sl.gen = uint32(fd)
			sl.flags.Store(fOpen)
		}
		mask := uint64(n - 1)
		b.Run(fmt.Sprintf("lookup/fds=%d", n), func(b *testing.B) {
			x := uint64(1)
			cpu0 := cpuNs()
			for b.Loop() {
				x = nextLCG(x)
				fd := int((x >> 20) & mask)
				sl, rf := s.get(fd)
				sl.mu.Lock()
				ok := sl.gen == uint32(fd) && sl.flags.Load()&fOpen != 0 && rf.q == nil
				sl.mu.Unlock()
				if !ok {
					b.Fatal("stale slot")
				}
			}
			reportCPU(b, cpu0, float64(b.N), "op")
		})
	}
}

// BenchmarkScaleCountOpenFDs: what counting /proc/self/fd costs per open
// descriptor. Admission recounts at most once a second while connections
// arrive, and every metrics scrape counts once: O(open descriptors) each,
// so at a million descriptors ns/fd × 2^20 is the cost of one count. (The
// process limit here is 20,000, so 16,384 is the largest size measured.)
func BenchmarkScaleCountOpenFDs(b *testing.B) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, n := range []int{1 << 10, 1 << 12, 1 << 14} {
		for k := CountOpenFDs(); k < n; k++ {
			f, err := os.Open(os.DevNull)
			if err != nil {
				b.Skipf("open: %v", err)
			}
			files = append(files, f)
		}
		b.Run(fmt.Sprintf("fds=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			k := 0
			cpu0 := cpuNs()
			for b.Loop() {
				k = CountOpenFDs()
			}
			reportCPU(b, cpu0, float64(b.N)*float64(k), "fd")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(k), "ns/fd")
		})
	}
}
