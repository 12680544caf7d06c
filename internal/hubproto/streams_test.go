package hubproto

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// streamCase is one record of HubProtocol.md's streaming and client
// result examples, in both encodings, and what Parse must read from it.
type streamCase struct {
	name string
	json string // without the separator
	mp   string // hex, without the length prefix
	want Message
	// wantMP is the MessagePack argument bytes (hex) where they differ
	// from the JSON text.
	wantMP string
}

var streamCases = []streamCase{
	{"stream invocation", `{"type":4,"invocationId":"123","target":"Send","arguments":[42,"Test Message"]}`,
		"95 04 80 a3 313233 a4 53656e64 92 2a ac 54657374204d657373616765",
		Message{Type: TypeStreamInvocation, InvocationID: "123", Target: "Send", Arguments: []byte(`[42,"Test Message"]`)},
		"92 2a ac 54657374204d657373616765"},
	{"invocation with streamIds", `{"type":1,"invocationId":"123","target":"Send","arguments":[42],"streamIds":["1","2"]}`,
		"96 01 80 a3 313233 a4 53656e64 91 2a 92 a1 31 a1 32",
		Message{Type: TypeInvocation, InvocationID: "123", Target: "Send", Arguments: []byte(`[42]`), StreamIDs: []string{"1", "2"}},
		"91 2a"},
	{"stream invocation with streamIds", `{"type":4,"invocationId":"5","target":"Up","arguments":[],"streamIds":["s"]}`,
		"96 04 80 a1 35 a2 5570 90 91 a1 73",
		Message{Type: TypeStreamInvocation, InvocationID: "5", Target: "Up", Arguments: []byte(`[]`), StreamIDs: []string{"s"}},
		"90"},
	{"stream item", `{"type":2,"invocationId":"123","item":42}`,
		"94 02 80 a3 313233 2a",
		Message{Type: TypeStreamItem, InvocationID: "123", Arguments: []byte(`42`)}, "2a"},
	{"completion with result", `{"type":3,"invocationId":"123","result":42}`,
		"95 03 80 a3 313233 03 2a",
		Message{Type: TypeCompletion, InvocationID: "123", Arguments: []byte(`42`)}, "2a"},
	{"completion with null result", `{"type":3,"invocationId":"123","result":null}`,
		"95 03 80 a3 313233 03 c0",
		Message{Type: TypeCompletion, InvocationID: "123", Arguments: []byte(`null`)}, "c0"},
	{"void completion", `{"type":3,"invocationId":"123"}`,
		"94 03 80 a3 313233 02",
		Message{Type: TypeCompletion, InvocationID: "123"}, ""},
	{"completion with error", `{"type":3,"invocationId":"123","error":"It didn't work!"}`,
		"95 03 80 a3 313233 01 af 4974206469646e277420776f726b21",
		Message{Type: TypeCompletion, InvocationID: "123", Error: "It didn't work!", HasError: true}, ""},
	{"cancel invocation", `{"type":5,"invocationId":"123"}`,
		"93 05 80 a3 313233",
		Message{Type: TypeCancelInvocation, InvocationID: "123"}, ""},
}

func sameMessage(a, b Message) bool {
	return a.Type == b.Type && a.InvocationID == b.InvocationID && a.Target == b.Target &&
		bytes.Equal(a.Arguments, b.Arguments) && slices.Equal(a.StreamIDs, b.StreamIDs) &&
		a.Error == b.Error && a.HasError == b.HasError
}

// TestParseStreamsAndResults: both protocols read the streaming and
// client result messages of HubProtocol.md: type, invocation id,
// streamIds, item, result, error.
func TestParseStreamsAndResults(t *testing.T) {
	for _, tc := range streamCases {
		got, err := JSON.Parse([]byte(tc.json))
		if err != nil {
			t.Errorf("%s: JSON: %v", tc.name, err)
		} else if !sameMessage(got, tc.want) {
			t.Errorf("%s: JSON: %+v (args %s), want %+v", tc.name, got, got.Arguments, tc.want)
		}
		want := tc.want
		want.Arguments = nil
		if tc.wantMP != "" {
			want.Arguments = unhexT(t, tc.wantMP)
		}
		got, err = MessagePack.Parse(unhexT(t, tc.mp))
		if err != nil {
			t.Errorf("%s: MessagePack: %v", tc.name, err)
		} else if !sameMessage(got, want) {
			t.Errorf("%s: MessagePack: %+v (args % x), want %+v", tc.name, got, got.Arguments, want)
		}
	}
}

// TestStreamRecordsRoundTrip: what the server writes for a stream
// (StreamItem, Completion with a result, void, error) is byte for byte
// the form HubProtocol.md gives, and parses back to the same message.
func TestStreamRecordsRoundTrip(t *testing.T) {
	for _, tc := range streamCases {
		if tc.want.Type != TypeStreamItem && tc.want.Type != TypeCompletion {
			continue
		}
		for _, p := range []Protocol{JSON, MessagePack} {
			arg := tc.want.Arguments
			want := []byte(tc.json + "\x1e")
			if p == Protocol(MessagePack) {
				arg = nil
				if tc.wantMP != "" {
					arg = unhexT(t, tc.wantMP)
				}
				body := unhexT(t, tc.mp)
				want = append([]byte{byte(len(body))}, body...)
			}
			var rec []byte
			var err error
			switch {
			case tc.want.Type == TypeStreamItem:
				rec, err = p.AppendStreamItem(nil, tc.want.InvocationID, arg)
			case tc.want.HasError:
				rec = p.AppendCompletionError(nil, tc.want.InvocationID, tc.want.Error)
			default:
				if tc.want.Arguments != nil && string(tc.want.Arguments) == "null" && p == Protocol(JSON) {
					continue // AppendCompletion writes no result for an empty one only
				}
				rec, err = p.AppendCompletion(nil, tc.want.InvocationID, arg)
			}
			if err != nil {
				t.Fatalf("%s, %s: %v", tc.name, p.Name(), err)
			}
			if !bytes.Equal(rec, want) {
				t.Errorf("%s, %s: %q, want %q", tc.name, p.Name(), rec, want)
			}
			var back Message
			if err := p.Split(rec, func(r []byte) error { back, err = p.Parse(r); return err }); err != nil {
				t.Fatalf("%s, %s: parse back: %v", tc.name, p.Name(), err)
			}
			if back.Type != tc.want.Type || back.InvocationID != tc.want.InvocationID || back.Error != tc.want.Error || !bytes.Equal(back.Arguments, arg) {
				t.Errorf("%s, %s: parsed back %+v", tc.name, p.Name(), back)
			}
		}
	}
}

// TestParseRejectsBadStreamMessages: what ASP.NET Core's readers refuse
// is ErrInvalidMessage saying why.
func TestParseRejectsBadStreamMessages(t *testing.T) {
	for _, tc := range []struct{ name, rec, says string }{
		{"stream invocation without id", `{"type":4,"target":"S","arguments":[]}`, "invocation ID"},
		{"stream item without id", `{"type":2,"item":1}`, "invocation ID"},
		{"completion without id", `{"type":3,"result":1}`, "invocation ID"},
		{"cancel without id", `{"type":5}`, "invocation ID"},
		{"stream item without item", `{"type":2,"invocationId":"1"}`, "'item'"},
		{"result and error", `{"type":3,"invocationId":"1","result":1,"error":"x"}`, "mutually exclusive"},
		{"empty stream id", `{"type":1,"target":"S","arguments":[],"streamIds":[""]}`, "streamIds"},
		{"stream id not a string", `{"type":1,"target":"S","arguments":[],"streamIds":[1]}`, "invalid hub message"},
	} {
		_, err := JSON.Parse([]byte(tc.rec))
		if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrInvalidMessage saying %q", tc.name, err, tc.says)
		}
	}
	for _, tc := range []struct{ name, rec, says string }{
		{"streamIds not an array", "96 01 80 c0 a1 54 90 01", "streamIds"},
		{"stream id not a string", "96 01 80 c0 a1 54 90 91 01", "streamIds"},
		{"streamIds count beyond the record", "96 01 80 c0 a1 54 90 dd 7fffffff", "streamIds"},
		{"error not a string", "95 03 80 a1 31 01 2a", "error"},
	} {
		_, err := MessagePack.Parse(unhexT(t, tc.rec))
		if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want ErrInvalidMessage saying %q", tc.name, err, tc.says)
		}
	}
}

// TestAppendCallerStreamMessages: StreamInvocation and CancelInvocation,
// byte for byte as HubProtocol.md writes them, and parsed back.
func TestAppendCallerStreamMessages(t *testing.T) {
	js, err := JSON.AppendStreamInvocation(nil, "123", "Send", []byte(`[42, "Test Message"]`), nil)
	if err != nil || string(js) != `{"type":4,"invocationId":"123","target":"Send","arguments":[42,"Test Message"]}`+"\x1e" {
		t.Errorf("JSON stream invocation %q, %v", js, err)
	}
	js, _ = JSON.AppendStreamInvocation(nil, "5", "Up", nil, []string{"s", "t"})
	if string(js) != `{"type":4,"invocationId":"5","target":"Up","arguments":[],"streamIds":["s","t"]}`+"\x1e" {
		t.Errorf("JSON stream invocation with streamIds %q", js)
	}
	if m, err := JSON.Parse(js[:len(js)-1]); err != nil || !slices.Equal(m.StreamIDs, []string{"s", "t"}) {
		t.Errorf("parsed back %+v, %v", m, err)
	}
	if c := JSON.AppendCancelInvocation(nil, "123"); string(c) != `{"type":5,"invocationId":"123"}`+"\x1e" {
		t.Errorf("JSON cancel %q", c)
	}
	if _, err := JSON.AppendStreamInvocation(nil, "1", "S", []byte("[1,"), nil); !errors.Is(err, ErrInvalidJSON) {
		t.Errorf("bad arguments: %v", err)
	}
	mp, err := MessagePack.AppendStreamInvocation(nil, "5", "Up", unhexT(t, "90"), []string{"s"})
	if want := unhexT(t, "0c 96 04 80 a1 35 a2 5570 90 91 a1 73"); err != nil || !bytes.Equal(mp, want) {
		t.Errorf("MessagePack stream invocation % x, %v, want % x", mp, err, want)
	}
	if m, err := MessagePack.Parse(mp[1:]); err != nil || m.Type != TypeStreamInvocation || !slices.Equal(m.StreamIDs, []string{"s"}) {
		t.Errorf("parsed back %+v, %v", m, err)
	}
	if c := MessagePack.AppendCancelInvocation(nil, "123"); !bytes.Equal(c, unhexT(t, "07 93 05 80 a3 313233")) {
		t.Errorf("MessagePack cancel % x", c)
	}
	if _, err := MessagePack.AppendStreamInvocation(nil, "1", "S", unhexT(t, "01"), nil); !errors.Is(err, ErrInvalidMsgpack) {
		t.Errorf("arguments not an array: %v", err)
	}
}
