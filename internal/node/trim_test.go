package node

import (
	"testing"
	"time"
)

func TestTrimmerDecide(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const conns = 19000
	const mb = 1 << 20
	heap := func(objects, live, gcs uint64) heapStats {
		return heapStats{objects: objects, live: live, autoGCs: gcs}
	}

	var tr trimmer
	// A burst: accepts keep coming and the GC runs; no trim while they do.
	if got := tr.decide(at(5), 5000, 5000, heap(50*mb, 20*mb, 10)); got != noTrim {
		t.Fatalf("during a burst: %v, want noTrim", got)
	}
	if got := tr.decide(at(10), 19000, conns, heap(90*mb, 70*mb, 30)); got != noTrim {
		t.Fatalf("during a burst: %v, want noTrim", got)
	}
	// Quiet after the burst: trim, even though the GC ran just before.
	if got := tr.decide(at(15), 19000, conns, heap(90*mb, 70*mb, 30)); got != trimAfterBurst {
		t.Fatalf("quiet after 19000 accepts: %v, want trimAfterBurst", got)
	}
	tr.trimmed(at(15))
	// Garbage over the threshold, but the GC ran by itself less than
	// trimIdleAfterGC ago (at 10 s): left to the GC.
	if got := tr.decide(at(40), 19000, conns, heap(70*mb, 66*mb, 30)); got != noTrim {
		t.Fatalf("4 MB of garbage 30 s after an automatic GC: %v, want noTrim", got)
	}
	// A minute without an automatic GC, garbage below the threshold (2% of
	// 66 MB is 1.32 MB): no trim.
	if got := tr.decide(at(75), 19000, conns, heap(67*mb, 66*mb, 30)); got != noTrim {
		t.Fatalf("1 MB of idle garbage: %v, want noTrim", got)
	}
	// Over it: trim.
	if got := tr.decide(at(80), 19000, conns, heap(68*mb, 66*mb, 30)); got != trimIdleGarbage {
		t.Fatalf("2 MB of idle garbage, idle for 70 s: %v, want trimIdleGarbage", got)
	}
	tr.trimmed(at(80))
	// Over it again, but too soon after the last trim: no trim.
	if got := tr.decide(at(85), 19000, conns, heap(69*mb, 66*mb, 30)); got != noTrim {
		t.Fatalf("5 s after a trim: %v, want noTrim", got)
	}
	// A busy node (the GC ran on its own in the last interval) is left to
	// the GC, however much garbage it has.
	if got := tr.decide(at(95), 19000, conns, heap(80*mb, 66*mb, 31)); got != noTrim {
		t.Fatalf("automatic GC in the last interval: %v, want noTrim", got)
	}
	// The baseline is what the last GC left live, automatic or ours: a
	// minute after that automatic GC, 1 MB over its 70 MB is under the
	// threshold (2% is 1.4 MB) and 2 MB is over it.
	if got := tr.decide(at(160), 19000, conns, heap(71*mb, 70*mb, 31)); got != noTrim {
		t.Fatalf("1 MB over the last GC's 70 MB: %v, want noTrim", got)
	}
	if got := tr.decide(at(165), 19000, conns, heap(72*mb, 70*mb, 31)); got != trimIdleGarbage {
		t.Fatalf("2 MB over the last GC's 70 MB, idle 70 s: %v, want trimIdleGarbage", got)
	}
	// Churn (more than 1% of the connections per interval) holds it off.
	busy := trimmer{lastAccepted: 19000, lastTrim: at(0), autoGCs: 5, lastAutoGC: at(0)}
	if got := busy.decide(at(200), 19400, conns, heap(80*mb, 66*mb, 5)); got != noTrim {
		t.Fatalf("400 accepts in an interval: %v, want noTrim", got)
	}
	// A fresh node: nothing until its GC has been quiet for a minute.
	var fresh trimmer
	if got := fresh.decide(at(5), 10, 10, heap(500*mb, 4*mb, 0)); got != noTrim {
		t.Fatalf("fresh node: %v, want noTrim", got)
	}
	// Small nodes: the 1 MB floor, not 2% of a tiny heap.
	small := trimmer{lastAccepted: 5, lastTrim: at(0), lastAutoGC: at(0)}
	if got := small.decide(at(60), 5, 5, heap(4*mb+600<<10, 4*mb, 0)); got != noTrim {
		t.Fatalf("600 KB over a 4 MB heap: %v, want noTrim (floor 1 MB)", got)
	}
	if got := small.decide(at(65), 5, 5, heap(5*mb+100, 4*mb, 0)); got != trimIdleGarbage {
		t.Fatalf("1 MB over a 4 MB heap: %v, want trimIdleGarbage", got)
	}
	if trimAfterBurst.String() != "connection burst" || trimIdleGarbage.String() != "idle garbage" {
		t.Fatalf("reason names: %q, %q", trimAfterBurst, trimIdleGarbage)
	}
}
