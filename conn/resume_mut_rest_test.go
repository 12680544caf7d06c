package conn

import (
	"testing"

	"github.com/edgeplane/edgeplane/backplane"
)

// TestResumeUpstreamEvent: a resume tells the upstream (reconnected);
// one the upstream refuses is counted as an upstream error, one it takes
// is not.
func TestResumeUpstreamEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		up   backplane.Upstream
		errs uint64
	}{{"accepted", &upstreamRec{}, 0}, {"refused", &failingUpstream{}, 1}} {
		s := newTestServer(t, Config{Upstream: tc.up})
		sc := openStateful(t, s, "")
		sc.drop()
		before := s.M.upstreamErr.Get()
		if r := sc.reconnect(""); r == nil || r.StatusCode != 101 {
			t.Fatalf("%s: reconnect %v", tc.name, r)
		}
		if s.M.resume.resumed.Get() != 1 {
			t.Fatalf("%s: not resumed", tc.name)
		}
		if got := s.M.upstreamErr.Get() - before; got != tc.errs {
			t.Errorf("%s: upstream errors at the resume %d, want %d", tc.name, got, tc.errs)
		}
		if rec, ok := tc.up.(*upstreamRec); ok && len(eventsOf(rec, backplane.EventReconnected)) != 1 {
			t.Errorf("%s: reconnected events %v", tc.name, rec.events)
		}
	}
}

// TestTakeoverRefusedWhenClosed: a reconnect waiting for the old socket
// to close is refused (409, the client negotiates again) when the node
// closes the connection meanwhile, rather than left unanswered.
func TestTakeoverRefusedWhenClosed(t *testing.T) {
	s := newTestServer(t, Config{})
	sc := openStateful(t, s, "")
	broadcast(s, "m1")
	old := sc.sess
	if r := sc.reconnect(""); r != nil {
		t.Fatalf("answered before the old socket closed: %d", r.StatusCode)
	}
	sc.c.closeWith(causeServerClose)
	old.OnClose(nil)
	if r := sc.response(); r == nil || r.StatusCode != 409 {
		t.Fatalf("waiting reconnect after the node closed the connection: %v %q", r, sc.fc.output())
	}
	if s.M.resume.resumed.Get() != 0 {
		t.Fatal("a connection the node closed was resumed")
	}
}
