package conn

import (
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
)

// TestUploadStreamLeftOpenIsAbandoned: an upload stream the client opened
// (an invocation's streamIds) and never completed is listed as abandoned
// in the disconnected event; a connection that only invokes (no streams)
// keeps no stream state.
func TestUploadStreamLeftOpenIsAbandoned(t *testing.T) {
	up := &upstreamRecorder{}
	s, c, _ := openConnWith(t, Config{Upstream: up})
	c.OnData(clientFrame(0x81, []byte(`{"type":1,"invocationId":"i0","target":"Echo","arguments":[]}`+"\x1e")))
	if c.has(flStreams) || len(s.streams.ids) != 0 {
		t.Fatal("a connection that only invoked holds stream state")
	}
	c.OnData(clientFrame(0x81, []byte(`{"type":1,"invocationId":"u1","target":"Sum","arguments":[],"streamIds":["up1"]}`+"\x1e")))
	c.OnClose(nil)
	up.mu.Lock()
	defer up.mu.Unlock()
	last := up.events[len(up.events)-1]
	if last.Kind != backplane.EventDisconnected || len(last.Abandoned) != 1 || last.Abandoned[0] != "up1" {
		t.Fatalf("disconnected event %+v, want up1 abandoned", last)
	}
}

// TestMessagePackVoidCompletionUpstream: a MessagePack client's
// Completion without a result (void) reaches the upstream as a plain
// Completion, not as one failed to transcode.
func TestMessagePackVoidCompletionUpstream(t *testing.T) {
	up := &upstreamRecorder{}
	s := newTestServer(t, Config{Upstream: up})
	fc := &fakeConn{}
	c := s.OnOpen(fc).(*Conn)
	defer c.OnClose(nil)
	c.OnData([]byte(testUpgrade))
	c.OnData(clientFrame(0x82, []byte(`{"protocol":"messagepack","version":1}`+"\x1e")))
	if c.state.Load() != stOpen {
		t.Fatalf("MessagePack handshake: %q", fc.output())
	}
	// [3, {}, "a", 2]: Completion of stream "a", no result.
	c.OnData(clientFrame(0x82, []byte("\x06\x94\x03\x80\xa1a\x02")))
	if fc.isShutdown() {
		t.Fatalf("closed: %q", fc.output())
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	last := up.events[len(up.events)-1]
	if last.Kind != backplane.EventCompletion || last.InvocationID != "a" || last.HasError || last.Error != "" || len(last.Arguments) != 0 {
		t.Fatalf("upstream got %+v, want a plain Completion of a", last)
	}
	if s.M.dropped.Get() != 0 {
		t.Fatalf("dropped %d", s.M.dropped.Get())
	}
}

// TestStreamItemUpstreamRefusedCounted: a stream item the upstream
// refuses is counted (upstream error, dropped); one it takes is not.
func TestStreamItemUpstreamRefusedCounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   backplane.Upstream
		errs uint64
	}{{"accepted", &upstreamRec{}, 0}, {"refused", &failingUpstream{}, 1}} {
		s, c, _ := openConnWith(t, Config{Upstream: tc.up})
		errs, dropped := s.M.upstreamErr.Get(), s.M.dropped.Get()
		c.OnData(clientFrame(0x81, []byte(`{"type":2,"invocationId":"a","item":1}`+"\x1e")))
		if e, d := s.M.upstreamErr.Get()-errs, s.M.dropped.Get()-dropped; e != tc.errs || d != tc.errs {
			t.Errorf("%s: upstream errors %d, dropped %d; want %d", tc.name, e, d, tc.errs)
		}
	}
}
