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

	var tr trimmer
	// A burst: accepts keep coming and the GC runs; no trim while they do.
	if got := tr.decide(at(5), 5000, 5000, 50*mb, 10); got != noTrim {
		t.Fatalf("during a burst: %v, want noTrim", got)
	}
	if got := tr.decide(at(10), 19000, conns, 90*mb, 30); got != noTrim {
		t.Fatalf("during a burst: %v, want noTrim", got)
	}
	// Quiet after the burst: trim, even though the GC ran just before.
	if got := tr.decide(at(15), 19000, conns, 90*mb, 30); got != trimAfterBurst {
		t.Fatalf("quiet after 19000 accepts: %v, want trimAfterBurst", got)
	}
	tr.trimmed(at(15), 66*mb)
	// Idle garbage over the threshold, but the GC ran by itself less than
	// trimIdleAfterGC ago (at 10 s): left to the GC.
	if got := tr.decide(at(40), 19000, conns, 70*mb, 30); got != noTrim {
		t.Fatalf("4 MB of garbage 30 s after an automatic GC: %v, want noTrim", got)
	}
	// A minute without an automatic GC, garbage below the threshold (2% of
	// 66 MB is 1.32 MB): no trim.
	if got := tr.decide(at(75), 19000, conns, 67*mb, 30); got != noTrim {
		t.Fatalf("1 MB of idle garbage: %v, want noTrim", got)
	}
	// Over it: trim.
	if got := tr.decide(at(80), 19000, conns, 68*mb, 30); got != trimIdleGarbage {
		t.Fatalf("2 MB of idle garbage, idle for 70 s: %v, want trimIdleGarbage", got)
	}
	tr.trimmed(at(80), 66*mb)
	// Over it again, but too soon after the last trim: no trim.
	if got := tr.decide(at(85), 19000, conns, 69*mb, 30); got != noTrim {
		t.Fatalf("5 s after a trim: %v, want noTrim", got)
	}
	// A busy node (the GC ran on its own in the last interval) is left to
	// the GC, however much garbage it has.
	if got := tr.decide(at(95), 19000, conns, 80*mb, 31); got != noTrim {
		t.Fatalf("automatic GC in the last interval: %v, want noTrim", got)
	}
	// Churn (more than 1% of the connections per interval) holds it off.
	busy := trimmer{lastAccepted: 19000, liveAtTrim: 66 * mb, lastTrim: at(0), autoGCs: 5, lastAutoGC: at(0)}
	if got := busy.decide(at(200), 19400, conns, 80*mb, 5); got != noTrim {
		t.Fatalf("400 accepts in an interval: %v, want noTrim", got)
	}
	// A node that never trimmed has no idle baseline: only bursts count.
	var fresh trimmer
	if got := fresh.decide(at(5), 10, 10, 500*mb, 0); got != noTrim {
		t.Fatalf("fresh node with 10 accepts: %v, want noTrim", got)
	}
	// Small nodes: the 1 MB floor, not 2% of a tiny heap.
	small := trimmer{lastAccepted: 5, liveAtTrim: 4 * mb, lastTrim: at(0), lastAutoGC: at(0)}
	if got := small.decide(at(60), 5, 5, 4*mb+600<<10, 0); got != noTrim {
		t.Fatalf("600 KB over a 4 MB heap: %v, want noTrim (floor 1 MB)", got)
	}
	if got := small.decide(at(65), 5, 5, 5*mb+100, 0); got != trimIdleGarbage {
		t.Fatalf("1 MB over a 4 MB heap: %v, want trimIdleGarbage", got)
	}
}
