package bench

import (
	"math"
	"math/bits"
	"time"
)

// Hist is a log-linear latency histogram in microseconds: exact below 64 µs,
// then 32 buckets per power of two (relative error under 3.2%). The zero
// value is ready to use. It is not safe for concurrent use.
type Hist struct {
	Counts []uint64 `json:"counts"` // bucket counts, trimmed of trailing zeros
	N      uint64   `json:"n"`
	SumUS  float64  `json:"sum_us"`
	MaxUS  uint64   `json:"max_us"`
	MinUS  uint64   `json:"min_us"`
}

const histSubBits = 6

func histBucket(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits
	return e<<(histSubBits-1) + int(v>>uint(e))
}

// histBounds returns the bucket's [low, high) range in microseconds.
func histBounds(idx int) (lo, hi uint64) {
	if idx < 1<<histSubBits {
		return uint64(idx), uint64(idx) + 1
	}
	e := idx>>(histSubBits-1) - 1
	m := uint64(idx - e<<(histSubBits-1))
	return m << uint(e), (m + 1) << uint(e)
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d / time.Microsecond)
	}
	h.RecordUS(v)
}

// RecordUS adds one latency in microseconds.
func (h *Hist) RecordUS(v uint64) {
	b := histBucket(v)
	if b >= len(h.Counts) {
		n := make([]uint64, b+1)
		copy(n, h.Counts)
		h.Counts = n
	}
	h.Counts[b]++
	if h.N == 0 || v < h.MinUS {
		h.MinUS = v
	}
	h.N++
	h.SumUS += float64(v)
	if v > h.MaxUS {
		h.MaxUS = v
	}
}

// Merge adds o into h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.N == 0 {
		return
	}
	if len(o.Counts) > len(h.Counts) {
		n := make([]uint64, len(o.Counts))
		copy(n, h.Counts)
		h.Counts = n
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	if h.N == 0 || o.MinUS < h.MinUS {
		h.MinUS = o.MinUS
	}
	h.N += o.N
	h.SumUS += o.SumUS
	if o.MaxUS > h.MaxUS {
		h.MaxUS = o.MaxUS
	}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) in microseconds: the
// midpoint of the bucket holding the rank ⌈p·N/100⌉, clamped to [min, max].
func (h *Hist) Percentile(p float64) float64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.N)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			lo, hi := histBounds(i)
			v := float64(lo)
			if hi-lo > 1 {
				v = (float64(lo) + float64(hi-1)) / 2
			}
			return math.Min(math.Max(v, float64(h.MinUS)), float64(h.MaxUS))
		}
	}
	return float64(h.MaxUS)
}

// Mean returns the mean in microseconds.
func (h *Hist) Mean() float64 {
	if h.N == 0 {
		return 0
	}
	return h.SumUS / float64(h.N)
}

// Summary is the digest of a histogram that reports print, in milliseconds.
type Summary struct {
	N      uint64  `json:"n"`
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

// Summary digests h.
func (h *Hist) Summary() Summary {
	return Summary{
		N:      h.N,
		P50ms:  h.Percentile(50) / 1000,
		P90ms:  h.Percentile(90) / 1000,
		P99ms:  h.Percentile(99) / 1000,
		P999ms: h.Percentile(99.9) / 1000,
		MaxMs:  float64(h.MaxUS) / 1000,
		MeanMs: h.Mean() / 1000,
	}
}
