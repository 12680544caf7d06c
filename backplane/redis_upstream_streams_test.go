package backplane

import (
	"fmt"
	"testing"
)

// TestStreamEntryFields: the upstream entries of streams carry what the
// app needs, in the documented order: the invocation's messageType and
// streamIds, a stream item's item, a completion's result or error, a
// cancel's id, the disconnected entry's abandoned streams.
func TestStreamEntryFields(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{Kind: EventInvocation, Hub: "h", ConnID: "c", InvocationID: "1", Target: "T", Arguments: []byte("[1]")},
			"[type invocation hub h connectionId c invocationId 1 target T arguments [1] server s]"},
		{Event{Kind: EventInvocation, Hub: "h", ConnID: "c", InvocationID: "1", Target: "T", Stream: true, StreamIDs: []string{"a", "b"}},
			"[type invocation hub h connectionId c invocationId 1 target T arguments [] messageType streamInvocation streamIds [\"a\",\"b\"] server s]"},
		{Event{Kind: EventStreamItem, Hub: "h", ConnID: "c", UserID: "u", InvocationID: "a", Arguments: []byte(`{"x":1}`)},
			"[type streamItem hub h connectionId c userId u invocationId a item {\"x\":1} server s]"},
		{Event{Kind: EventCompletion, Hub: "h", ConnID: "c", InvocationID: "a"},
			"[type completion hub h connectionId c invocationId a server s]"},
		{Event{Kind: EventCompletion, Hub: "h", ConnID: "c", InvocationID: "a", Arguments: []byte("5")},
			"[type completion hub h connectionId c invocationId a result 5 server s]"},
		{Event{Kind: EventCompletion, Hub: "h", ConnID: "c", InvocationID: "a", Error: "no", HasError: true},
			"[type completion hub h connectionId c invocationId a error no server s]"},
		{Event{Kind: EventCancelInvocation, Hub: "h", ConnID: "c", InvocationID: "1"},
			"[type cancelInvocation hub h connectionId c invocationId 1 server s]"},
		{Event{Kind: EventDisconnected, Hub: "h", ConnID: "c", Abandoned: []string{"1"}},
			"[type disconnected hub h connectionId c reason  abandoned [\"1\"] server s]"},
	} {
		var got []string
		for _, f := range eventFields(&tc.e, "s") {
			got = append(got, fmt.Sprintf("%s", f))
		}
		if s := fmt.Sprint(got); s != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.e.Kind, s, tc.want)
		}
	}
}
