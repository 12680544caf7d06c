package webhook

import (
	"errors"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestWebhookRefusesStreams: webhooks carry no streams, as Azure
// SignalR's upstream: a stream invocation, or one with upload streams, is
// refused (the client gets an error Completion) and nothing is posted;
// the client's stream items, completions and cancels post nothing either.
// A plain invocation after them is posted as before.
func TestWebhookRefusesStreams(t *testing.T) {
	rc := newReceiver(t, testKey, nil)
	u := newUpstream(t, Config{
		Settings:   []Setting{{URLTemplate: rc.srv.URL + "/{event}"}},
		AccessKeys: []string{testKey},
	})
	for _, e := range []backplane.Event{
		{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c1", Target: "Counter", InvocationID: "1", Stream: true},
		{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c1", Target: "Sum", InvocationID: "2", StreamIDs: []string{"a"}},
	} {
		if err := u.Send(&e); !errors.Is(err, ErrStreamsUnsupported) {
			t.Errorf("%s: %v, want ErrStreamsUnsupported", e.Target, err)
		}
	}
	for _, e := range []backplane.Event{
		{Kind: backplane.EventStreamItem, Hub: "chat", ConnID: "c1", InvocationID: "a", Arguments: []byte("1")},
		{Kind: backplane.EventCompletion, Hub: "chat", ConnID: "c1", InvocationID: "a"},
		{Kind: backplane.EventCancelInvocation, Hub: "chat", ConnID: "c1", InvocationID: "1"},
		{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c1", Target: "note", Arguments: []byte("[]")},
	} {
		if err := u.Send(&e); err != nil {
			t.Errorf("%s: %v", e.Kind, err)
		}
	}
	testutil.WaitUntil(t, 5*time.Second, "the plain invocation posted", func() bool { return len(rc.list()) >= 1 })
	if got := rc.list(); len(got) != 1 || got[0].path != "/note" {
		t.Fatalf("posted %+v, want only the plain invocation", got)
	}
}
