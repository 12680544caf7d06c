package fanout

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// droppedSample reads edgeplane_fanout_dropped_total{reason} from the
// router's metrics (-1 if absent).
func droppedSample(t *testing.T, r *Router, reason string) string {
	t.Helper()
	var b bytes.Buffer
	r.Metrics().WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, `edgeplane_fanout_dropped_total{reason="`+reason+`"} `); ok {
			return v
		}
	}
	return "absent"
}

// TestDeliverDropsWhatNoClientCanTake: a backplane message that is not
// valid UTF-8, or whose frame is larger than a connection's queue, is
// dropped and counted by reason; it reaches no recipient (so it breaks or
// closes none), and the next message is delivered as usual. (Issue 12
// items 6 and 7: the first used to break every recipient's connection,
// the second to close every recipient as a slow client.)
func TestDeliverDropsWhatNoClientCanTake(t *testing.T) {
	r := NewRouter([]string{"chat"}, nil)
	fits := []byte(`{"type":1,"target":"t","arguments":["` + strings.Repeat("x", 900) + `"]}` + "\x1e")
	r.MaxFrameBytes = len(wsframe.TextFrame(fits)) // exactly fits
	m := &recMember{}
	r.Hub("chat").Add(m, "a", "")
	for _, reason := range []string{"invalid_utf8", "too_large"} {
		if got := droppedSample(t, r, reason); got != "0" {
			t.Fatalf("edgeplane_fanout_dropped_total{reason=%q} = %s before any drop, want 0", reason, got)
		}
	}
	for _, tc := range []struct {
		name, reason string
		payload      []byte
		err          error
	}{
		{"invalid UTF-8", "invalid_utf8", []byte("{\"type\":1,\"target\":\"t\",\"arguments\":[\"\xff\"]}\x1e"), ErrInvalidUTF8},
		{"truncated rune", "invalid_utf8", []byte("{\"type\":1,\"target\":\"t\",\"arguments\":[\"\xe2\x82\"]}\x1e"), ErrInvalidUTF8},
		{"one byte over the queue", "too_large", append([]byte(`{"type":1,"target":"t","arguments":["x`), fits[len(`{"type":1,"target":"t","arguments":["`):]...), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.Check(tc.payload); !errors.Is(err, tc.err) {
				t.Fatalf("Check = %v, want %v", err, tc.err)
			}
			before := m.count()
			r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: tc.payload})
			r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: "a", Payload: tc.payload})
			if got := m.count(); got != before {
				t.Fatalf("the dropped message reached the recipient (%d frames, had %d)", got, before)
			}
			r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: fits})
			if got := m.count(); got != before+1 {
				t.Fatalf("a message that fits exactly: %d frames, want %d", got, before+1)
			}
		})
	}
	if got := droppedSample(t, r, "invalid_utf8"); got != "4" {
		t.Errorf(`edgeplane_fanout_dropped_total{reason="invalid_utf8"} = %s, want 4`, got)
	}
	if got := droppedSample(t, r, "too_large"); got != "2" {
		t.Errorf(`edgeplane_fanout_dropped_total{reason="too_large"} = %s, want 2`, got)
	}
}

func TestFrameSize(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 20} {
		if got, want := FrameSize(n), len(wsframe.TextFrame(make([]byte, n))); got != want {
			t.Errorf("FrameSize(%d) = %d, want %d", n, got, want)
		}
	}
}

// BenchmarkRouterCheck is what Deliver adds per message (not per
// recipient) to refuse what no client can take: a size comparison and a
// UTF-8 scan of the record.
func BenchmarkRouterCheck(b *testing.B) {
	r := NewRouter([]string{"chat"}, nil)
	r.MaxFrameBytes = 1 << 20
	for _, n := range []int{100, 32 << 10} {
		rec := []byte(`{"type":1,"target":"t","arguments":["` + strings.Repeat("é", (n-40)/2) + `"]}` + "\x1e")
		b.Run(fmt.Sprintf("bytes=%d", len(rec)), func(b *testing.B) {
			b.SetBytes(int64(len(rec)))
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Check(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
