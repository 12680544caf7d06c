package conn

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestStreamMessagesReachUpstreamInOrder: a stream invocation keeps its
// type, an invocation its streamIds, and the client's stream items,
// completions and cancels follow as entries of their own, in the order
// sent; the disconnected event lists the streams the client left open
// (not the cancelled one, not the completed upload).
func TestStreamMessagesReachUpstreamInOrder(t *testing.T) {
	up := &upstreamRecorder{}
	_, c, fc := openConnWith(t, Config{Upstream: up})
	recs := []string{
		`{"type":4,"invocationId":"s1","target":"Counter","arguments":[3]}`,
		`{"type":1,"invocationId":"u1","target":"Sum","arguments":[],"streamIds":["a"]}`,
		`{"type":2,"invocationId":"a","item":1}`,
		`{"type":2,"invocationId":"a","item":{"x":2}}`,
		`{"type":3,"invocationId":"a"}`,
		`{"type":5,"invocationId":"s1"}`,
		`{"type":4,"invocationId":"s2","target":"Counter","arguments":[]}`,
		`{"type":1,"invocationId":"u2","target":"Sum","arguments":[],"streamIds":["b"]}`,
		`{"type":3,"invocationId":"b","error":"gave up"}`,
	}
	for _, r := range recs {
		c.OnData(clientFrame(0x81, []byte(r+"\x1e")))
	}
	if fc.isShutdown() {
		t.Fatalf("connection closed: %q", fc.output())
	}
	c.OnClose(nil)
	up.mu.Lock()
	defer up.mu.Unlock()
	type ev struct {
		kind      backplane.EventKind
		id, args  string
		stream    bool
		streamIDs []string
		err       string
		hasErr    bool
		abandoned []string
	}
	var got []ev
	for _, e := range up.events {
		if e.Kind == backplane.EventConnected {
			continue
		}
		got = append(got, ev{e.Kind, e.InvocationID, string(e.Arguments), e.Stream, e.StreamIDs, e.Error, e.HasError, e.Abandoned})
	}
	want := []ev{
		{kind: backplane.EventInvocation, id: "s1", args: "[3]", stream: true},
		{kind: backplane.EventInvocation, id: "u1", args: "[]", streamIDs: []string{"a"}},
		{kind: backplane.EventStreamItem, id: "a", args: "1"},
		{kind: backplane.EventStreamItem, id: "a", args: `{"x":2}`},
		{kind: backplane.EventCompletion, id: "a"},
		{kind: backplane.EventCancelInvocation, id: "s1"},
		{kind: backplane.EventInvocation, id: "s2", args: "[]", stream: true},
		{kind: backplane.EventInvocation, id: "u2", args: "[]", streamIDs: []string{"b"}},
		{kind: backplane.EventCompletion, id: "b", err: "gave up", hasErr: true},
		{kind: backplane.EventDisconnected, abandoned: []string{"s2"}},
	}
	if len(got) != len(want) {
		t.Fatalf("upstream got %d events %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.kind != w.kind || g.id != w.id || g.args != w.args || g.stream != w.stream || !slices.Equal(g.streamIDs, w.streamIDs) ||
			g.err != w.err || g.hasErr != w.hasErr || !slices.Equal(g.abandoned, w.abandoned) {
			t.Errorf("event %d: %+v, want %+v", i, g, w)
		}
	}
}

// TestOpenStreamsAreBounded: a connection that opens more streams than
// maxOpenStreams keeps the newest; one that streams nothing keeps
// nothing.
func TestOpenStreamsAreBounded(t *testing.T) {
	up := &upstreamRecorder{}
	s, c, _ := openConnWith(t, Config{Upstream: up, MaxMessageRate: -1})
	if c.has(flStreams) || len(s.streams.ids) != 0 {
		t.Fatal("a connection that never streamed holds stream state")
	}
	for i := 0; i < maxOpenStreams+5; i++ {
		c.OnData(clientFrame(0x81, []byte(`{"type":4,"invocationId":"s`+strconv.Itoa(i)+`","target":"C","arguments":[]}`+"\x1e")))
	}
	c.OnClose(nil)
	up.mu.Lock()
	last := up.events[len(up.events)-1]
	up.mu.Unlock()
	if last.Kind != backplane.EventDisconnected || len(last.Abandoned) != maxOpenStreams || last.Abandoned[0] != "s5" {
		t.Fatalf("disconnected event %+v: want the newest %d streams", last, maxOpenStreams)
	}
	if len(s.streams.ids) != 0 {
		t.Fatal("stream state kept after the connection ended")
	}
}

// returnRecorder records the completions a server returns.
type returnRecorder struct {
	mu   sync.Mutex
	sent []string // channel|protocol|completion
}

func (r *returnRecorder) ReturnChannel(hub string) string { return hub + ":ret" }
func (r *returnRecorder) Return(_ context.Context, channel, protocol string, completion []byte) error {
	r.mu.Lock()
	r.sent = append(r.sent, channel+"|"+protocol+"|"+string(completion))
	r.mu.Unlock()
	return nil
}
func (r *returnRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// TestClientResults: a connection message asking for a result is
// answered with the client's Completion on its return channel, not
// upstream; a pending one gets "Connection disconnected." when the
// client goes, or "Client result timed out." after ResultTimeout; past
// MaxPendingResults the invocation is refused at once. Each outcome is
// counted.
func TestClientResults(t *testing.T) {
	up := &upstreamRecorder{}
	ret := &returnRecorder{}
	s, c, _ := openConnWith(t, Config{Upstream: up, Returner: ret, MaxPendingResults: 2, ResultTimeout: time.Minute})
	id := c.entry.ID()
	expect := func(inv, ch string) {
		s.ExpectResult(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: id, InvocationID: inv, ReturnChannel: ch})
	}
	expect("r1", "ch1")
	expect("r2", "ch2")
	expect("r3", "ch3") // over MaxPendingResults
	s.ExpectResult(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: "elsewhere", InvocationID: "r4", ReturnChannel: "ch4"})
	c.OnData(clientFrame(0x81, []byte(`{"type":3,"invocationId":"r1","result":{"v":5}}`+"\x1e")))
	c.OnData(clientFrame(0x81, []byte(`{"type":3,"invocationId":"zz","result":1}`+"\x1e")))
	want := []string{
		"ch3|json|{\"type\":3,\"invocationId\":\"r3\",\"error\":\"" + errTextTooMany + "\"}\x1e",
		"ch1|json|{\"type\":3,\"invocationId\":\"r1\",\"result\":{\"v\":5}}\x1e",
	}
	testutil.WaitUntil(t, 5*time.Second, "two returns", func() bool { return len(ret.list()) >= 2 })
	if got := ret.list(); !slices.Equal(got, want) {
		t.Fatalf("returned %q, want %q", got, want)
	}
	up.mu.Lock()
	var completions []string
	for _, e := range up.events {
		if e.Kind == backplane.EventCompletion {
			completions = append(completions, e.InvocationID)
		}
	}
	up.mu.Unlock()
	if !slices.Equal(completions, []string{"zz"}) {
		t.Fatalf("completions upstream %q, want only the one no one asked for (zz)", completions)
	}
	c.OnClose(nil)
	want = append(want, "ch2|json|{\"type\":3,\"invocationId\":\"r2\",\"error\":\""+errTextDisconnected+"\"}\x1e")
	testutil.WaitUntil(t, 5*time.Second, "the disconnected return", func() bool { return len(ret.list()) >= 3 })
	if got := ret.list(); !slices.Equal(got, want) {
		t.Fatalf("returned %q, want %q", got, want)
	}

	// Time-out, swept.
	_, c2, _ := openConnWith(t, Config{Returner: ret, ResultTimeout: time.Second})
	s2 := c2.srv
	s2.ExpectResult(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: c2.entry.ID(), InvocationID: "t1", ReturnChannel: "cht"})
	s2.sweepResults(time.Now())
	if s2.results.n.Load() != 1 {
		t.Fatal("a fresh result was swept")
	}
	s2.sweepResults(time.Now().Add(2 * time.Second))
	testutil.WaitUntil(t, 5*time.Second, "the time-out return", func() bool { return len(ret.list()) >= 4 })
	if got := ret.list()[3]; got != "cht|json|{\"type\":3,\"invocationId\":\"t1\",\"error\":\""+errTextTimedOut+"\"}\x1e" {
		t.Fatalf("timed-out return %q", got)
	}
	for _, m := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"expected", s.results.expected.Get(), 2}, {"returned", s.results.returned.Get(), 1},
		{"refused", s.results.refused.Get(), 1}, {"disconnected", s.results.abandoned.Get(), 1},
		{"timeout", s2.results.timedOut.Get(), 1}, {"pending", uint64(s.results.n.Load() + s2.results.n.Load()), 0},
	} {
		if m.got != m.want {
			t.Errorf("%s = %d, want %d", m.name, m.got, m.want)
		}
	}
}
