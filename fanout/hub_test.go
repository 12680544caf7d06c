package fanout

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
)

type recMember struct {
	mu     sync.Mutex
	proto  hubproto.ID // the protocol it speaks (JSON by default)
	frames [][]byte
}

func (m *recMember) Deliver(f *Frames) int {
	fr := f.Frame(m.proto)
	if fr == nil {
		return 0
	}
	m.mu.Lock()
	m.frames = append(m.frames, fr)
	m.mu.Unlock()
	return len(fr)
}

func (m *recMember) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.frames)
}

type recSub struct {
	mu  sync.Mutex
	ops []string
}

func (s *recSub) Subscribe(hub string, k backplane.Kind, name string) {
	s.mu.Lock()
	s.ops = append(s.ops, fmt.Sprintf("+%s:%s:%s", hub, k, name))
	s.mu.Unlock()
}

func (s *recSub) Unsubscribe(hub string, k backplane.Kind, name string) {
	s.mu.Lock()
	s.ops = append(s.ops, fmt.Sprintf("-%s:%s:%s", hub, k, name))
	s.mu.Unlock()
}

func TestTargeting(t *testing.T) {
	sub := &recSub{}
	r := NewRouter([]string{"chat", "news"}, sub)
	var delivered atomic.Int64
	r.Stats.OnDeliver = func(n, _ int, _ time.Duration) { delivered.Add(int64(n)) }
	h := r.Hub("chat")
	a, b, c, d := &recMember{}, &recMember{}, &recMember{}, &recMember{}
	h.Add(a, "a", "alice")
	h.Add(b, "b", "bob")
	h.Add(c, "c", "alice")
	r.Hub("news").Add(d, "d", "")
	if _, ok := h.Add(&recMember{}, "a", ""); ok {
		t.Fatal("duplicate id accepted")
	}
	h.AddToGroup("a", "g1")
	h.AddToGroup("b", "g1")
	h.AddToGroup("b", "g1") // idempotent
	if h.AddToGroup("zz", "g1") {
		t.Fatal("unknown connection added to group")
	}
	if got := h.GroupLen("g1"); got != 2 {
		t.Fatalf("GroupLen = %d", got)
	}

	cases := []struct {
		name     string
		kind     backplane.Kind
		target   string
		excluded []string
		want     map[*recMember]int
	}{
		{"all", backplane.All, "", nil, map[*recMember]int{a: 1, b: 1, c: 1}},
		{"all-except", backplane.All, "", []string{"b"}, map[*recMember]int{a: 1, c: 1}},
		{"group", backplane.Group, "g1", nil, map[*recMember]int{a: 1, b: 1}},
		{"group-except", backplane.Group, "g1", []string{"a"}, map[*recMember]int{b: 1}},
		{"missing group", backplane.Group, "nope", nil, map[*recMember]int{}},
		{"user", backplane.User, "alice", nil, map[*recMember]int{a: 1, c: 1}},
		{"connection", backplane.Connection, "b", nil, map[*recMember]int{b: 1}},
		{"connection excluded", backplane.Connection, "b", []string{"b"}, map[*recMember]int{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := map[*recMember]int{a: a.count(), b: b.count(), c: c.count(), d: d.count()}
			payload := []byte(`{"type":1,"target":"t","arguments":[]}` + "\x1e")
			r.Deliver(&backplane.Message{Hub: "chat", Kind: tc.kind, Name: tc.target, Excluded: tc.excluded, Payload: payload})
			var frame []byte
			for _, m := range []*recMember{a, b, c, d} {
				got := m.count() - before[m]
				if got != tc.want[m] {
					t.Errorf("member %p got %d, want %d", m, got, tc.want[m])
				}
				if got == 1 {
					f := m.frames[len(m.frames)-1]
					if frame != nil && &frame[0] != &f[0] {
						t.Error("recipients got different frame slices: not encoded once")
					}
					frame = f
				}
			}
			if frame != nil && string(frame[2:]) != string(payload) {
				t.Errorf("frame payload %q", frame[2:])
			}
		})
	}

	// Removal cleans up groups, users and subscriptions.
	ea, _ := h.Add(&recMember{}, "e", "eve")
	h.AddToGroup("e", "g2")
	h.Remove(ea)
	h.Remove(ea) // twice is harmless
	if h.GroupLen("g2") != 0 || h.UserLen("eve") != 0 || h.Lookup("e") {
		t.Fatal("removed member still registered")
	}
	want := []string{"+chat:connection:e", "+chat:user:eve", "+chat:group:g2", "-chat:connection:e", "-chat:group:g2", "-chat:user:eve"}
	got := sub.ops[len(sub.ops)-len(want):]
	if !slices.Equal(got, want) {
		t.Fatalf("subscription ops %v, want %v", got, want)
	}
	if !h.RemoveFromGroup("a", "g1") || h.GroupLen("g1") != 1 {
		t.Fatal("RemoveFromGroup")
	}
	if !r.ApplyGroup("chat", backplane.GroupAdd, "g3", "b") || h.GroupLen("g3") != 1 {
		t.Fatal("ApplyGroup add")
	}
	if r.ApplyGroup("chat", backplane.GroupAdd, "g3", "nobody") {
		t.Fatal("ApplyGroup for unknown connection reported success")
	}
	if delivered.Load() == 0 {
		t.Fatal("deliveries not reported to OnDeliver")
	}
}

func TestConcurrentChurnAndDelivery(t *testing.T) {
	r := NewRouter([]string{"chat"}, nil)
	h := r.Hub("chat")
	var messages atomic.Int64
	r.Stats.OnDeliver = func(int, int, time.Duration) { messages.Add(1) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		p := NewFrames([]byte("x\x1e"), nil)
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.Deliver(backplane.All, "", nil, p)
			h.Deliver(backplane.Group, "g", nil, p)
		}
	}()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				id := fmt.Sprintf("%d-%d", w, i)
				e, ok := h.Add(&recMember{}, id, "u")
				if !ok {
					t.Error("add failed")
					return
				}
				h.AddToGroup(id, "g")
				h.Remove(e)
			}
		}(w)
	}
	// Let the churners finish while deliveries run, then stop the deliverer.
	for h.Len() > 0 || messages.Load() < 10 {
		runtime.Gosched()
	}
	close(stop)
	wg.Wait()
	if h.Len() != 0 || h.GroupLen("g") != 0 || h.UserLen("u") != 0 {
		t.Fatalf("leftovers: len=%d group=%d user=%d", h.Len(), h.GroupLen("g"), h.UserLen("u"))
	}
}

type nopMember struct{}

func (nopMember) Deliver(f *Frames) int { return len(f.Frame(hubproto.IDJSON)) }

func BenchmarkBroadcast(b *testing.B) {
	benchDeliver(b, &backplane.Message{Hub: "chat", Kind: backplane.All, Payload: make([]byte, 64)})
}

func BenchmarkGroupSend(b *testing.B) {
	benchDeliver(b, &backplane.Message{Hub: "chat", Kind: backplane.Group, Name: "g", Payload: make([]byte, 64)})
}

// benchDeliver delivers msg to 1, 100 and 10,000 members of hub chat, all
// in group g.
func benchDeliver(b *testing.B, msg *backplane.Message) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			r := NewRouter([]string{"chat"}, nil)
			h := r.Hub("chat")
			for i := 0; i < n; i++ {
				id := fmt.Sprint(i)
				h.Add(nopMember{}, id, "")
				h.AddToGroup(id, "g")
			}
			b.ReportAllocs()
			b.SetBytes(int64(n * (len(msg.Payload) + 2)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.Deliver(msg)
			}
		})
	}
}

// concMember counts its deliveries and takes part in the detection of
// concurrent delivery: the first delivery of a message waits (up to a
// deadline) until another member is being delivered to at the same time.
type concMember struct {
	got   atomic.Int32
	probe *concProbe
}

type concProbe struct {
	inFlight, maxInFlight atomic.Int32
	waited                atomic.Bool
}

func (m *concMember) Deliver(f *Frames) int {
	p := m.probe
	cur := p.inFlight.Add(1)
	for {
		mx := p.maxInFlight.Load()
		if cur <= mx || p.maxInFlight.CompareAndSwap(mx, cur) {
			break
		}
	}
	if p.waited.CompareAndSwap(false, true) {
		deadline := time.Now().Add(5 * time.Second)
		for p.maxInFlight.Load() < 2 && time.Now().Before(deadline) {
			runtime.Gosched()
		}
	}
	m.got.Add(1)
	p.inFlight.Add(-1)
	return len(f.Frame(hubproto.IDJSON))
}

// TestDeliverSplitsLargeAudience: a message to thousands of recipients is
// delivered by several goroutines at once (as the floor splits its write
// loop over one thread per core), each recipient exactly once, and
// Deliver returns only when all have it; a small audience stays on the
// caller's goroutine.
func TestDeliverSplitsLargeAudience(t *testing.T) {
	defer runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0)))
	rec := []byte(`{"type":1,"target":"t","arguments":[]}` + "\x1e")
	frameLen := len(NewFrames(rec, nil).Frame(hubproto.IDJSON))
	for _, tc := range []struct {
		name     string
		members  int
		kind     backplane.Kind
		parallel bool
	}{
		{"all", 4 * parallelMin, backplane.All, true},
		{"group", 4 * parallelMin, backplane.Group, true},
		{"small group", parallelMin, backplane.Group, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRouter([]string{"chat"}, nil)
			h := r.Hub("chat")
			probe := &concProbe{}
			ms := make([]*concMember, tc.members)
			for i := range ms {
				ms[i] = &concMember{probe: probe}
				id := fmt.Sprint(i)
				h.Add(ms[i], id, "")
				h.AddToGroup(id, "g")
			}
			excluded := []string{"0", "7"}
			var n, bytes int
			r.Stats.OnDeliver = func(k, b int, _ time.Duration) { n, bytes = k, b }
			probe.waited.Store(!tc.parallel) // a small audience: nobody waits
			r.Deliver(&backplane.Message{Hub: "chat", Kind: tc.kind, Name: "g", Excluded: excluded, Payload: rec})
			want := tc.members - len(excluded)
			if n != want || bytes != want*frameLen {
				t.Fatalf("OnDeliver(%d, %d bytes), want %d and %d", n, bytes, want, want*frameLen)
			}
			for i, m := range ms {
				wantGot := int32(1)
				if i == 0 || i == 7 {
					wantGot = 0
				}
				if got := m.got.Load(); got != wantGot {
					t.Fatalf("member %d delivered %d times, want %d", i, got, wantGot)
				}
			}
			if got := probe.maxInFlight.Load() >= 2; got != tc.parallel {
				t.Fatalf("concurrent deliveries: %v, want %v", got, tc.parallel)
			}
		})
	}
}
