package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestHistBucketsCoverValues(t *testing.T) {
	prevHi := uint64(0)
	for idx := 0; idx < 900; idx++ {
		lo, hi := histBounds(idx)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", idx, lo, prevHi)
		}
		if histBucket(lo) != idx || histBucket(hi-1) != idx {
			t.Fatalf("bucket %d [%d,%d): bucketOf(lo)=%d bucketOf(hi-1)=%d", idx, lo, hi, histBucket(lo), histBucket(hi-1))
		}
		if lo >= 64 && float64(hi-lo)/float64(lo) > 1.0/32+1e-9 {
			t.Fatalf("bucket %d [%d,%d) wider than 1/32", idx, lo, hi)
		}
		prevHi = hi
	}
}

func TestHistPercentiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var a, b Hist
	var vals []float64
	for i := 0; i < 100000; i++ {
		v := uint64(r.ExpFloat64()*5000) + 1 // µs, long tail
		vals = append(vals, float64(v))
		if i%2 == 0 {
			a.RecordUS(v)
		} else {
			b.RecordUS(v)
		}
	}
	a.Merge(&b)
	sort.Float64s(vals)
	if a.N != uint64(len(vals)) || a.MaxUS != uint64(vals[len(vals)-1]) || a.MinUS != uint64(vals[0]) {
		t.Fatalf("n %d max %d min %d", a.N, a.MaxUS, a.MinUS)
	}
	for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
		exact := vals[int(math.Ceil(p/100*float64(len(vals))))-1]
		got := a.Percentile(p)
		if math.Abs(got-exact) > exact*0.035+1 {
			t.Errorf("p%v = %v, exact %v", p, got, exact)
		}
	}
	var sum float64
	for _, v := range vals {
		sum += v
	}
	if math.Abs(a.Mean()-sum/float64(len(vals))) > 1e-6*sum {
		t.Errorf("mean %v, want %v", a.Mean(), sum/float64(len(vals)))
	}
	var empty Hist
	if empty.Percentile(99) != 0 || empty.Summary().N != 0 {
		t.Error("empty histogram not zero")
	}
}
