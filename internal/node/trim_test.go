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
	// A burst: accepts keep coming, no trim while they do.
	if got := tr.decide(at(5), 5000, 5000, 50*mb); got != noTrim {
		t.Fatalf("during a burst: %v, want noTrim", got)
	}
	if got := tr.decide(at(10), 19000, conns, 90*mb); got != noTrim {
		t.Fatalf("during a burst: %v, want noTrim", got)
	}
	// Quiet after the burst: trim.
	if got := tr.decide(at(15), 19000, conns, 90*mb); got != trimAfterBurst {
		t.Fatalf("quiet after 19000 accepts: %v, want trimAfterBurst", got)
	}
	tr.trimmed(at(15), 66*mb)
	// Idle garbage below the threshold (2% of 66 MB is 1.32 MB): no trim.
	if got := tr.decide(at(30), 19000, conns, 67*mb); got != noTrim {
		t.Fatalf("1 MB of idle garbage: %v, want noTrim", got)
	}
	// Over it, but too soon after the last trim: no trim.
	tr2 := tr
	if got := tr2.decide(at(20), 19000, conns, 70*mb); got != noTrim {
		t.Fatalf("5 s after a trim: %v, want noTrim", got)
	}
	// Over it and the gap passed: trim.
	if got := tr.decide(at(35), 19000, conns, 68*mb); got != trimIdleGarbage {
		t.Fatalf("2 MB of idle garbage 20 s after a trim: %v, want trimIdleGarbage", got)
	}
	tr.trimmed(at(35), 66*mb)
	// Churn (more than 1% of the connections per interval) holds it off:
	// the GC goal is doing its job while connections come and go.
	if got := tr.decide(at(50), 19400, conns, 80*mb); got != noTrim {
		t.Fatalf("400 accepts in an interval: %v, want noTrim", got)
	}
	// A node that never trimmed has no idle baseline: only bursts count.
	var fresh trimmer
	if got := fresh.decide(at(5), 10, 10, 500*mb); got != noTrim {
		t.Fatalf("fresh node with 10 accepts: %v, want noTrim", got)
	}
	// Small nodes: the 1 MB floor, not 2% of a tiny heap.
	small := trimmer{lastAccepted: 5, liveAtTrim: 4 * mb, lastTrim: at(0)}
	if got := small.decide(at(60), 5, 5, 4*mb+600<<10); got != noTrim {
		t.Fatalf("600 KB over a 4 MB heap: %v, want noTrim (floor 1 MB)", got)
	}
	if got := small.decide(at(65), 5, 5, 5*mb+100); got != trimIdleGarbage {
		t.Fatalf("1 MB over a 4 MB heap: %v, want trimIdleGarbage", got)
	}
}
