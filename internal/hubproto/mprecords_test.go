package hubproto

import (
	"errors"
	"testing"
)

// TestMessagePackRecordsToJSON: an app's MessagePack invocations (with and
// without an invocation id, several in one payload) become the JSON
// records ASP.NET Core writes for the same messages; what is not an
// invocation, or not MessagePack, is an error and leaves dst as it was.
func TestMessagePackRecordsToJSON(t *testing.T) {
	mp := func(js string) []byte {
		b, err := JSONToMessagePack(nil, []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, _ := MessagePack.AppendInvocation(nil, "", "news", mp(`["hi",3,{"k":[true,null]}]`))
	b, _ := MessagePack.AppendInvocation(nil, "7", "ask", mp(`[]`))
	got, err := MessagePackRecordsToJSON([]byte("x"), append(a, b...))
	want := `x{"type":1,"target":"news","arguments":["hi",3,{"k":[true,null]}]}` + "\x1e" +
		`{"type":1,"invocationId":"7","target":"ask","arguments":[]}` + "\x1e"
	if err != nil || string(got) != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	// The conversion and its inverse agree.
	back, err := JSONRecordsToMessagePack(nil, got[1:])
	if err != nil || string(back) != string(append(a, b...)) {
		t.Fatalf("round trip: %x, %v", back, err)
	}

	for name, tc := range map[string]struct {
		src  []byte
		want error
	}{
		"completion":  {MessagePack.AppendCompletionError(nil, "1", "no"), ErrInvalidMessage},
		"ping":        {MessagePack.Ping(), ErrInvalidMessage},
		"truncated":   {a[:len(a)-1], ErrIncompleteRecord},
		"not msgpack": {[]byte{2, 0xc1, 0xc1}, nil},
	} {
		got, err := MessagePackRecordsToJSON([]byte("x"), tc.src)
		if err == nil || string(got) != "x" || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %q, %v; want dst unchanged and %v", name, got, err, tc.want)
		}
	}
}
