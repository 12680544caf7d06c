package fanout

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// sample reads one series of the router's metrics ("absent" if missing).
func sample(t *testing.T, r *Router, series string) string {
	t.Helper()
	var b bytes.Buffer
	r.Metrics().WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return "absent"
}

// encodes is edgeplane_fanout_encodes_total{protocol}.
func encodes(t *testing.T, r *Router, p hubproto.Protocol) string {
	t.Helper()
	return sample(t, r, `edgeplane_fanout_encodes_total{protocol="`+p.Name()+`"}`)
}

// mixedHub is a router whose hub chat has n members, every other one
// speaking MessagePack.
func mixedHub(n int) (*Router, []*recMember) {
	r := NewRouter([]string{"chat"}, nil)
	ms := make([]*recMember, n)
	for i := range ms {
		ms[i] = &recMember{}
		if i%2 == 1 {
			ms[i].proto = hubproto.IDMessagePack
		}
		r.Hub("chat").Add(ms[i], fmt.Sprint(i), "")
	}
	return r, ms
}

// TestEncodeOncePerProtocol: a message to N recipients, half of them on
// MessagePack, is framed once per protocol (the counter says so), every
// recipient of a protocol gets the very same bytes, and a protocol no
// recipient speaks is never encoded; also when the audience is large
// enough for the delivery to be split over several goroutines, which then
// ask for the frames concurrently.
func TestEncodeOncePerProtocol(t *testing.T) {
	for _, n := range []int{1000, 4 * parallelMin} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { testEncodeOnce(t, n) })
	}
}

func testEncodeOnce(t *testing.T, n int) {
	r, ms := mixedHub(n)
	var recipients, bytesOut int
	r.Metrics()
	prev := r.Stats.OnDeliver
	r.Stats.OnDeliver = func(n, b int, took time.Duration) { recipients, bytesOut = n, b; prev(n, b, took) }
	rec := []byte(`{"type":1,"target":"t","arguments":["hi",7,{"a":[1.5,null]}]}` + "\x1e")
	wantJSON := wsframe.TextFrame(rec)
	mp, err := hubproto.JSONRecordsToMessagePack(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	wantMP := wsframe.BinaryFrame(mp)

	for msg := 1; msg <= 3; msg++ {
		r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
		if got := encodes(t, r, hubproto.JSON); got != fmt.Sprint(msg) {
			t.Fatalf("after %d messages: %s JSON encodes, want %d", msg, got, msg)
		}
		if got := encodes(t, r, hubproto.MessagePack); got != fmt.Sprint(msg) {
			t.Fatalf("after %d messages: %s MessagePack encodes, want %d", msg, got, msg)
		}
		if got := sample(t, r, "edgeplane_fanout_transcoded_total"); got != fmt.Sprint(msg) {
			t.Fatalf("after %d messages: %s transcoded, want %d", msg, got, msg)
		}
		first := map[hubproto.ID][]byte{}
		for i, m := range ms {
			f := m.frames[msg-1]
			want := wantJSON
			if m.proto == hubproto.IDMessagePack {
				want = wantMP
			}
			if !bytes.Equal(f, want) {
				t.Fatalf("member %d (%s) got % x, want % x", i, m.proto, f, want)
			}
			if p, ok := first[m.proto]; !ok {
				first[m.proto] = f
			} else if &p[0] != &f[0] {
				t.Fatalf("member %d (%s) got its own copy, not the shared frame", i, m.proto)
			}
		}
		if recipients != n || bytesOut != n/2*(len(wantJSON)+len(wantMP)) {
			t.Fatalf("OnDeliver(%d recipients, %d bytes), want %d and %d", recipients, bytesOut, n, n/2*(len(wantJSON)+len(wantMP)))
		}
	}

	// To the JSON members only (a group of them): no MessagePack encode.
	for i := 0; i < n; i += 2 {
		r.Hub("chat").AddToGroup(fmt.Sprint(i), "evens")
	}
	r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.Group, Name: "evens", Payload: rec})
	if j, m := encodes(t, r, hubproto.JSON), encodes(t, r, hubproto.MessagePack); j != "4" || m != "3" {
		t.Fatalf("a message for JSON members only: %s JSON and %s MessagePack encodes, want 4 and 3", j, m)
	}
	// To one MessagePack member: no JSON encode.
	r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: "1", Payload: rec})
	if j, m := encodes(t, r, hubproto.JSON), encodes(t, r, hubproto.MessagePack); j != "4" || m != "4" {
		t.Fatalf("a message for one MessagePack member: %s JSON and %s MessagePack encodes, want 4 and 4", j, m)
	}
}

// TestBackplaneMessagePackUsedAsIs: when the backplane message carried a
// messagepack entry (an ASP.NET Core server with MessagePack writes one),
// MessagePack members get exactly those bytes and nothing is converted;
// an entry that does not frame as MessagePack records is replaced by the
// conversion of the JSON.
func TestBackplaneMessagePackUsedAsIs(t *testing.T) {
	r, ms := mixedHub(4)
	rec := []byte(`{"type":1,"target":"t","arguments":[1]}` + "\x1e")
	// What .NET writes may differ from our conversion (here: 5 items,
	// an int written as uint8): it must arrive untouched.
	dotnet := []byte{0x09, 0x95, 0x01, 0x80, 0xc0, 0xa1, 't', 0x91, 0xcc, 0x01}
	r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec, MessagePack: dotnet})
	if got := ms[1].frames[0]; !bytes.Equal(got, wsframe.BinaryFrame(dotnet)) {
		t.Fatalf("MessagePack member got % x, want the backplane's bytes % x", got, dotnet)
	}
	if got := sample(t, r, "edgeplane_fanout_transcoded_total"); got != "0" {
		t.Fatalf("%s conversions with a messagepack entry at hand", got)
	}
	if got := ms[0].frames[0]; !bytes.Equal(got, wsframe.TextFrame(rec)) {
		t.Fatalf("JSON member got %q", got)
	}
	// A truncated entry: converted from the JSON instead.
	r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec, MessagePack: dotnet[:5]})
	conv, _ := hubproto.JSONRecordsToMessagePack(nil, rec)
	if got := ms[3].frames[1]; !bytes.Equal(got, wsframe.BinaryFrame(conv)) {
		t.Fatalf("with a broken messagepack entry: % x, want the conversion % x", got, conv)
	}
	if got := sample(t, r, "edgeplane_fanout_transcoded_total"); got != "1" {
		t.Fatalf("%s conversions, want 1", got)
	}
}

// TestUnsendableInOneProtocol: a message that cannot be sent in
// MessagePack (its JSON does not convert, or its MessagePack frame is
// larger than a connection's queue) reaches the JSON members only, and
// the drop is counted once, not per recipient.
func TestUnsendableInOneProtocol(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		rec          string
		limit        bool
	}{
		{"does not convert", "transcode", `{"type":4,"invocationId":"1","target":"t","arguments":[]}`, false},
		{"MessagePack frame too large", "too_large", `{"type":1,"target":"t","arguments":[` + strings.TrimSuffix(strings.Repeat("0.5,", 40), ",") + `]}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ms := mixedHub(10)
			rec := []byte(tc.rec + "\x1e")
			if tc.limit {
				r.MaxFrameBytes = len(wsframe.TextFrame(rec)) // JSON fits, MessagePack (9 B a float) does not
			}
			r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec})
			for i, m := range ms {
				if got, want := m.count(), map[bool]int{true: 1, false: 0}[m.proto == hubproto.IDJSON]; got != want {
					t.Errorf("member %d (%s): %d frames, want %d", i, m.proto, got, want)
				}
			}
			if got := droppedSample(t, r, tc.reason); got != "1" {
				t.Errorf(`edgeplane_fanout_dropped_total{reason=%q} = %s, want 1`, tc.reason, got)
			}
			if got := encodes(t, r, hubproto.MessagePack); got != "0" {
				t.Errorf("%s MessagePack encodes counted for a frame never sent", got)
			}
		})
	}
}

func TestNewFrames(t *testing.T) {
	f := NewFrames([]byte("{\"type\":6}\x1e"), nil)
	if got := f.Frame(hubproto.IDJSON); !bytes.Equal(got, wsframe.TextFrame([]byte("{\"type\":6}\x1e"))) {
		t.Fatalf("JSON frame % x", got)
	}
	if got := f.Frame(hubproto.IDMessagePack); !bytes.Equal(got, wsframe.BinaryFrame(hubproto.MessagePack.Ping())) {
		t.Fatalf("MessagePack frame % x", got)
	}
}

// BenchmarkBroadcastMixed is BenchmarkBroadcast with every other
// recipient on MessagePack: one conversion per message, then the same
// per-recipient work.
func BenchmarkBroadcastMixed(b *testing.B) {
	rec := []byte(`{"type":1,"target":"news","arguments":["` + strings.Repeat("x", 20) + `"]}` + "\x1e")
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("recipients=%d", n), func(b *testing.B) {
			r, _ := mixedHub(n)
			h := r.Hub("chat")
			h.Each(func(e *Entry) {
				m := e.Member().(*recMember)
				proto := m.proto
				h.Remove(e)
				h.Add(nopProtoMember(proto), e.ID(), "")
			})
			msg := &backplane.Message{Hub: "chat", Kind: backplane.All, Payload: rec}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.Deliver(msg)
			}
		})
	}
}

// nopProtoMember takes its protocol's frame and keeps nothing.
type nopProtoMember hubproto.ID

func (m nopProtoMember) Deliver(f *Frames) int { return len(f.Frame(hubproto.ID(m))) }

func TestFramesSSEBuiltOnce(t *testing.T) {
	f := NewFrames([]byte("{\"type\":1,\"target\":\"m\",\"arguments\":[]}\x1e"), nil)
	a := f.SSE()
	if string(a) != "data: {\"type\":1,\"target\":\"m\",\"arguments\":[]}\x1e\r\n\r\n" {
		t.Fatalf("SSE() = %q", a)
	}
	if b := f.SSE(); &a[0] != &b[0] {
		t.Fatal("SSE() built the event twice")
	}
}

// TestFramesSSEConcurrent: a delivery split over several goroutines asks
// for the SSE event from each; it is built once and every caller gets
// the same bytes (run with -race).
func TestFramesSSEConcurrent(t *testing.T) {
	f := NewFrames([]byte("{\"type\":1,\"target\":\"m\",\"arguments\":[]}\x1e"), nil)
	const n = 8
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = f.SSE()
		}()
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if len(got[i]) == 0 || &got[i][0] != &got[0][0] {
			t.Fatalf("caller %d got %q at a different address than caller 0", i, got[i])
		}
	}
}
