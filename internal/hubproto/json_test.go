package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplitRecords(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     string
		want    []string
		wantErr error
	}{
		{"empty", "", nil, nil},
		{"one", `{"type":6}` + "\x1e", []string{`{"type":6}`}, nil},
		{"three", `{"type":6}` + "\x1e" + `{"type":1,"target":"a","arguments":[]}` + "\x1e" + `{"type":7}` + "\x1e",
			[]string{`{"type":6}`, `{"type":1,"target":"a","arguments":[]}`, `{"type":7}`}, nil},
		{"empty records", "\x1e\x1e", []string{"", ""}, nil},
		{"content preserved byte for byte", " {\"a\" : \"x\\u001ey\\n\"}\t\x1e", []string{" {\"a\" : \"x\\u001ey\\n\"}\t"}, nil},
		{"non-ASCII", "{\"t\":\"héllo ✓\"}\x1e", []string{"{\"t\":\"héllo ✓\"}"}, nil},
		{"no separator", `{"type":6}`, nil, ErrIncompleteRecord},
		{"trailing bytes", `{"type":6}` + "\x1e" + `{"type":`, []string{`{"type":6}`}, ErrIncompleteRecord},
		{"trailing single byte", "{}\x1e ", []string{"{}"}, ErrIncompleteRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(tc.msg)
			orig := append([]byte(nil), msg...)
			var got []string
			err := JSON.Split(msg, func(rec []byte) error {
				if bytes.IndexByte(rec, RecordSeparator) >= 0 {
					t.Fatalf("record %q contains the separator", rec)
				}
				got = append(got, string(rec))
				return nil
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("records = %q, want %q", got, tc.want)
			}
			if !bytes.Equal(msg, orig) {
				t.Fatal("Split modified its input")
			}
		})
	}
	t.Run("callback error stops", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := JSON.Split([]byte("a\x1eb\x1ec\x1e"), func(rec []byte) error {
			calls++
			if string(rec) == "b" {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 2 {
			t.Fatalf("err = %v after %d calls, want stop after 2", err, calls)
		}
	})
	if ErrIncompleteRecord.Error() != "record not terminated by 0x1e" {
		t.Fatalf("ErrIncompleteRecord text %q: it is the close reason clients see", ErrIncompleteRecord)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rec     string
		want    Message
		wantErr error
	}{
		{"ping", `{"type":6}`, Message{Type: TypePing}, nil},
		{"invocation", `{"type":1,"invocationId":"7","target":"Send","arguments":["a",{"b":[1,2]}]}`,
			Message{Type: TypeInvocation, InvocationID: "7", Target: "Send", Arguments: []byte(`["a",{"b":[1,2]}]`)}, nil},
		{"non-blocking invocation", `{"type":1,"target":"Send","arguments":[]}`,
			Message{Type: TypeInvocation, Target: "Send", Arguments: []byte(`[]`)}, nil},
		{"arguments kept as sent", `{"type":4, "arguments" : [ 1 , "<&>" ] ,"target":"S","invocationId":"9"}`,
			Message{Type: TypeStreamInvocation, InvocationID: "9", Target: "S", Arguments: []byte(`[ 1 , "<&>" ]`)}, nil},
		{"property names case-insensitive", `{"Type":1,"TARGET":"T"}`, Message{Type: TypeInvocation, Target: "T"}, nil},
		{"close", `{"type":7,"error":"bye","allowReconnect":true}`, Message{Type: TypeClose}, nil},
		{"unknown fields", `{"type":9,"sequenceId":3,"headers":{"a":"b"}}`, Message{Type: TypeSequence, SequenceID: 3}, nil},
		{"ack", `{"type":8,"sequenceId":4294967296}`, Message{Type: TypeAck, SequenceID: 1 << 32}, nil},
		{"ack without sequenceId", `{"type":8}`, Message{}, ErrInvalidMessage},
		{"sequence without sequenceId", `{"type":9,"sequenceid":null}`, Message{}, ErrInvalidMessage},
		{"sequenceId not a number", `{"type":9,"sequenceId":"1"}`, Message{}, ErrInvalidMessage},
		{"unknown type kept", `{"type":300}`, Message{Type: 300}, nil},
		{"missing type", `{"target":"Send"}`, Message{}, ErrMissingType},
		{"type 0", `{"type":0}`, Message{}, ErrMissingType},
		{"type string", `{"type":"1"}`, Message{}, ErrInvalidMessage},
		{"type fraction", `{"type":1.5}`, Message{}, ErrInvalidMessage},
		{"malformed", `{"type":1,`, Message{}, ErrInvalidMessage},
		{"empty", ``, Message{}, ErrInvalidMessage},
		{"array", `[]`, Message{}, ErrInvalidMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := []byte(tc.rec)
			got, err := JSON.Parse(rec)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "invalid hub message: ") {
					t.Fatalf("error %q lacks context", err)
				}
				return
			}
			if got.Type != tc.want.Type || got.InvocationID != tc.want.InvocationID || got.Target != tc.want.Target ||
				string(got.Arguments) != string(tc.want.Arguments) || got.SequenceID != tc.want.SequenceID {
				t.Fatalf("got %+v (args %s), want %+v (args %s)", got, got.Arguments, tc.want, tc.want.Arguments)
			}
			// Parse keeps nothing of its input.
			for i := range rec {
				rec[i] = 'X'
			}
			if string(got.Arguments) != string(tc.want.Arguments) || got.Target != tc.want.Target {
				t.Fatalf("result aliases the record: %+v", got)
			}
		})
	}
	if ErrMissingType.Error() != "invalid hub message: missing type" || !errors.Is(ErrMissingType, ErrInvalidMessage) {
		t.Fatalf("ErrMissingType = %q", ErrMissingType)
	}
}

func TestPeekTypeAndIsPing(t *testing.T) {
	for _, tc := range []struct {
		rec  string
		want MessageType
		ping bool
	}{
		{`{"type":6}`, TypePing, true},
		{`{"type":1,"target":"bench","arguments":[1,2]}`, TypeInvocation, false},
		{`{"type":7,"error":"x"}`, TypeClose, false},
		{`{"type":3,"invocationId":"1","error":"e"}`, TypeCompletion, false},
		{`{"type":12}`, 12, false},
		{`{"type": 6}`, TypePing, false}, // decoded; not the canonical ping
		{`{ "type":1}`, TypeInvocation, false},
		{`{"target":"t","type":2}`, TypeStreamItem, false},
		{`{}`, 0, false}, // the handshake response
		{`{"error":"The protocol 'x' is not supported."}`, 0, false},
		{`{"type":"6"}`, 0, false},
		{`{"type":`, 0, false},
		{`{"type":6`, 0, false},
		{``, 0, false},
		{`{"type":6}x`, TypePing, false}, // a peek: the rest is not validated
	} {
		if got := JSON.PeekType([]byte(tc.rec)); got != tc.want {
			t.Errorf("PeekType(%s) = %d, want %d", tc.rec, got, tc.want)
		}
		if got := JSON.IsPing([]byte(tc.rec)); got != tc.ping {
			t.Errorf("IsPing(%s) = %v", tc.rec, got)
		}
	}
	if !bytes.Equal(JSON.Ping(), []byte("{\"type\":6}\x1e")) {
		t.Fatalf("Ping() = %q", JSON.Ping())
	}
	if !JSON.IsPing(JSON.Ping()[:len(JSON.Ping())-1]) {
		t.Fatal("IsPing does not recognise Ping()")
	}
}

// decodeRecord checks that rec is one JSON object followed by 0x1e and
// returns its fields.
func decodeRecord(t *testing.T, rec []byte) map[string]any {
	t.Helper()
	if len(rec) == 0 || rec[len(rec)-1] != RecordSeparator {
		t.Fatalf("record %q does not end in 0x1e", rec)
	}
	body := rec[:len(rec)-1]
	if bytes.IndexByte(body, RecordSeparator) >= 0 {
		t.Fatalf("record %q holds a raw 0x1e", rec)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("record %q is not a JSON object: %v", rec, err)
	}
	return m
}

const nasty = "quote \" backslash \\ rs \x1e nl \n ✓ <tag> & \u2028 \xff \b\f\x7f"

func TestOutboundRecords(t *testing.T) {
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		rec   []byte
		exact string // "" when only the decoded form is checked
		want  map[string]any
	}{
		{"handshake ok", HandshakeOK, "{}\x1e", map[string]any{}},
		{"ping", JSON.Ping(), "{\"type\":6}\x1e", map[string]any{"type": 6.0}},
		{"handshake error", AppendHandshakeError(nil, "The protocol 'messagepack' is not supported."),
			"{\"error\":\"The protocol 'messagepack' is not supported.\"}\x1e",
			map[string]any{"error": "The protocol 'messagepack' is not supported."}},
		{"handshake error nasty", AppendHandshakeError(nil, nasty), "", map[string]any{"error": strings.ToValidUTF8(nasty, "\uFFFD")}},
		{"close plain", JSON.AppendClose(nil, "", false), "{\"type\":7}\x1e", map[string]any{"type": 7.0}},
		{"close error", JSON.AppendClose(nil, "Server timeout elapsed.", false),
			"{\"type\":7,\"error\":\"Server timeout elapsed.\"}\x1e", map[string]any{"type": 7.0, "error": "Server timeout elapsed."}},
		{"close reconnect", JSON.AppendClose(nil, "slow client", true),
			"{\"type\":7,\"error\":\"slow client\",\"allowReconnect\":true}\x1e",
			map[string]any{"type": 7.0, "error": "slow client", "allowReconnect": true}},
		{"close reconnect no error", JSON.AppendClose(nil, "", true), "{\"type\":7,\"allowReconnect\":true}\x1e",
			map[string]any{"type": 7.0, "allowReconnect": true}},
		{"completion error", JSON.AppendCompletionError(nil, "42", "no upstream"),
			"{\"type\":3,\"invocationId\":\"42\",\"error\":\"no upstream\"}\x1e",
			map[string]any{"type": 3.0, "invocationId": "42", "error": "no upstream"}},
		{"completion error nasty", JSON.AppendCompletionError(nil, nasty, nasty), "",
			map[string]any{"type": 3.0, "invocationId": strings.ToValidUTF8(nasty, "\uFFFD"), "error": strings.ToValidUTF8(nasty, "\uFFFD")}},
		{"completion error empty message", JSON.AppendCompletionError(nil, "1", ""),
			"{\"type\":3,\"invocationId\":\"1\",\"error\":\"\"}\x1e", map[string]any{"type": 3.0, "invocationId": "1", "error": ""}},
		{"completion void", must(JSON.AppendCompletion(nil, "5", nil)), "{\"type\":3,\"invocationId\":\"5\"}\x1e",
			map[string]any{"type": 3.0, "invocationId": "5"}},
		{"completion result", must(JSON.AppendCompletion(nil, "5", []byte(` {"a": [1, "<b>"]} `))),
			"{\"type\":3,\"invocationId\":\"5\",\"result\":{\"a\":[1,\"\\u003cb\\u003e\"]}}\x1e",
			map[string]any{"type": 3.0, "invocationId": "5", "result": map[string]any{"a": []any{1.0, "<b>"}}}},
		{"completion null result", must(JSON.AppendCompletion(nil, "5", []byte(`null`))),
			"{\"type\":3,\"invocationId\":\"5\",\"result\":null}\x1e", map[string]any{"type": 3.0, "invocationId": "5", "result": nil}},
		{"stream item", must(JSON.AppendStreamItem(nil, "s1", []byte(`"x"`))),
			"{\"type\":2,\"invocationId\":\"s1\",\"item\":\"x\"}\x1e", map[string]any{"type": 2.0, "invocationId": "s1", "item": "x"}},
		{"stream item empty", must(JSON.AppendStreamItem(nil, "s1", nil)),
			"{\"type\":2,\"invocationId\":\"s1\",\"item\":null}\x1e", map[string]any{"type": 2.0, "invocationId": "s1", "item": nil}},
		{"invocation with id", must(JSON.AppendInvocation(nil, "8", "Ask", []byte(`[1]`))),
			"{\"type\":1,\"invocationId\":\"8\",\"target\":\"Ask\",\"arguments\":[1]}\x1e",
			map[string]any{"type": 1.0, "invocationId": "8", "target": "Ask", "arguments": []any{1.0}}},
		{"ack", JSON.AppendAck(nil, 394), "{\"type\":8,\"sequenceId\":394}\x1e", map[string]any{"type": 8.0, "sequenceId": 394.0}},
		{"sequence", JSON.AppendSequence(nil, 1), "{\"type\":9,\"sequenceId\":1}\x1e", map[string]any{"type": 9.0, "sequenceId": 1.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.exact != "" && string(tc.rec) != tc.exact {
				t.Fatalf("record %q, want %q", tc.rec, tc.exact)
			}
			if got := decodeRecord(t, tc.rec); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("record %q decodes to %v, want %v", tc.rec, got, tc.want)
			}
		})
	}
}

// Reference encoders: the encoding/json code the appenders replaced. The
// appenders must produce the same bytes.
func refClose(errMsg string, allowReconnect bool) []byte {
	b, _ := json.Marshal(struct {
		Type           int    `json:"type"`
		Error          string `json:"error,omitempty"`
		AllowReconnect bool   `json:"allowReconnect,omitempty"`
	}{7, errMsg, allowReconnect})
	return append(b, RecordSeparator)
}

func refCompletionError(invocationID, errMsg string) []byte {
	b, _ := json.Marshal(struct {
		Type         int    `json:"type"`
		InvocationID string `json:"invocationId"`
		Error        string `json:"error"`
	}{3, invocationID, errMsg})
	return append(b, RecordSeparator)
}

func refHandshakeError(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, RecordSeparator)
}

func refInvocation(target string, arguments json.RawMessage) ([]byte, error) {
	if len(arguments) == 0 {
		arguments = json.RawMessage("[]")
	}
	b, err := json.Marshal(struct {
		Type      int             `json:"type"`
		Target    string          `json:"target"`
		Arguments json.RawMessage `json:"arguments"`
	}{1, target, arguments})
	if err != nil {
		return nil, err
	}
	return append(b, RecordSeparator), nil
}

// checkMatchesReference fails t if an appender differs from encoding/json
// for the strings s1, s2 and the raw value raw.
func checkMatchesReference(t *testing.T, s1, s2 string, raw []byte) {
	t.Helper()
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"close", JSON.AppendClose(nil, s1, false), refClose(s1, false)},
		{"close reconnect", JSON.AppendClose(nil, s2, true), refClose(s2, true)},
		{"completion error", JSON.AppendCompletionError(nil, s1, s2), refCompletionError(s1, s2)},
		{"handshake error", AppendHandshakeError(nil, s1), refHandshakeError(s1)},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Fatalf("%s(%q, %q):\n got %q\nwant %q", c.name, s1, s2, c.got, c.want)
		}
	}
	want, werr := refInvocation(s1, raw)
	got, gerr := JSON.AppendInvocation([]byte("pre"), "", s1, raw)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("invocation args %q: err %v, encoding/json says %v", raw, gerr, werr)
	}
	if gerr != nil {
		if string(got) != "pre" || !errors.Is(gerr, ErrInvalidJSON) {
			t.Fatalf("invocation args %q: on error got %q, %v", raw, got, gerr)
		}
		return
	}
	if !bytes.Equal(got[3:], want) {
		t.Fatalf("invocation(%q, %q):\n got %q\nwant %q", s1, raw, got[3:], want)
	}
}

func TestAppendersMatchEncodingJSON(t *testing.T) {
	strs := []string{"", "a", nasty, "<script>&amp;</script>", "\u2028\u2029", "\x00\x01\x1f\x7f", "\xff\xfe", "héllo ✓ 😀",
		"\xe2\x80", "\xed\xa0\x80" /* surrogate */, strings.Repeat("x", 300)}
	raws := []string{"", "[]", " [ 1 , 2 ] ", `["<&>", "\u003c", "\"", {"k" : null}]`, "[\"\u2028\"]", "[\"\xff\"]",
		"\t[\r\n]\n", `["a\\"b"]`, "[1,", "not json", `{"a":}`, "[] []", "123", `"s"`}
	for _, s1 := range strs {
		for _, s2 := range strs[:4] {
			for _, r := range raws {
				checkMatchesReference(t, s1, s2, []byte(r))
			}
		}
	}
}

func TestAppendInvocation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   string
		args     []byte
		wantArgs any
	}{
		{"nil args", "Notify", nil, []any{}},
		{"empty args", "Notify", []byte{}, []any{}},
		{"args", "Send", []byte(`["alice", 3, {"k": [true, null]}]`),
			[]any{"alice", 3.0, map[string]any{"k": []any{true, nil}}}},
		{"nasty target", "a\"b\\c\x1e✓", []byte(`[]`), []any{}},
		{"arg with escaped RS", "T", []byte(`["\u001e"]`), []any{"\x1e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := JSON.AppendInvocation(nil, "", tc.target, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"type": 1.0, "target": tc.target, "arguments": tc.wantArgs}
			if got := decodeRecord(t, rec); !reflect.DeepEqual(got, want) {
				t.Fatalf("record %q decodes to %v, want %v", rec, got, want)
			}
			// What a client would do: split, then parse as a hub message.
			var n int
			if err := JSON.Split(rec, func(r []byte) error {
				n++
				m, err := JSON.Parse(r)
				if err != nil || m.Type != TypeInvocation || m.Target != tc.target {
					t.Fatalf("re-parse: %+v %v", m, err)
				}
				return nil
			}); err != nil || n != 1 {
				t.Fatalf("Split: %v, %d records", err, n)
			}
		})
	}
	for _, bad := range []string{`[1,`, `not json`, `{"a":}`} {
		t.Run("invalid "+bad, func(t *testing.T) {
			rec, err := JSON.AppendInvocation(nil, "", "T", []byte(bad))
			if err == nil {
				t.Fatalf("no error, record %q", rec)
			}
			if !errors.Is(err, ErrInvalidJSON) || !strings.Contains(err.Error(), `"T"`) {
				t.Fatalf("error %q does not name the target or is not ErrInvalidJSON", err)
			}
		})
	}
	for _, name := range []string{"stream item", "completion"} {
		var err error
		if name == "stream item" {
			_, err = JSON.AppendStreamItem([]byte("x"), "1", []byte("{"))
		} else {
			_, err = JSON.AppendCompletion([]byte("x"), "1", []byte("{"))
		}
		if !errors.Is(err, ErrInvalidJSON) {
			t.Fatalf("%s with invalid JSON: err %v", name, err)
		}
	}
}

func TestAppendToBuffer(t *testing.T) {
	buf := make([]byte, 0, 256)
	buf = append(buf, "head"...)
	out := JSON.AppendClose(buf, "x", true)
	out = JSON.AppendCompletionError(out, "1", "e")
	out, err := JSON.AppendInvocation(out, "", "T", []byte("[1]"))
	if err != nil {
		t.Fatal(err)
	}
	want := "head{\"type\":7,\"error\":\"x\",\"allowReconnect\":true}\x1e{\"type\":3,\"invocationId\":\"1\",\"error\":\"e\"}\x1e{\"type\":1,\"target\":\"T\",\"arguments\":[1]}\x1e"
	if string(out) != want {
		t.Fatalf("got %q\nwant %q", out, want)
	}
	if &out[0] != &buf[0] {
		t.Fatal("appenders reallocated a buffer with room")
	}
}

func TestMessageTypeString(t *testing.T) {
	for ty, want := range map[MessageType]string{TypeInvocation: "Invocation", TypeSequence: "Sequence", TypePing: "Ping",
		0: "MessageType(0)", 10: "MessageType(10)", -1: "MessageType(-1)"} {
		if got := ty.String(); got != want {
			t.Errorf("%d: %q, want %q", int(ty), got, want)
		}
	}
}

// TestPeekTypeEdges: a record that starts {"type":N, or {"type":N} (N of
// up to 9 digits) is read without decoding the rest; anything else, a
// record cut after the digits included, gets the decoder's answer (0 for
// what does not decode) and never a panic.
func TestPeekTypeEdges(t *testing.T) {
	for rec, want := range map[string]MessageType{
		`{"type":12`:                  0,
		`{"type":`:                    0,
		`{"type":1`:                   0,
		`{"type":7}`:                  7,
		`{"type":1,"target":"x"}`:     1,
		`{"type":123456789}`:          123456789,
		`{"type":1234567890}`:         1234567890,
		`{"type":10,"target":"x"}`:    10,
		`{"type":9,"invocationId":1}`: 9,
		`{"target":"x","type":3}`:     3,
		`{"type":1x}`:                 0,
		// Read without decoding: what follows the type may be anything.
		`{"type":10,"tar`:     10,
		`{"type":9,`:          9,
		`{"type":123456789,`:  123456789,
		`{"type":1234567890,`: 0, // over 9 digits: decoded, and not JSON
		`{"type":1 }`:         1,
	} {
		if got := JSON.PeekType([]byte(rec)); got != want {
			t.Errorf("PeekType(%s) = %d, want %d", rec, got, want)
		}
	}
}

// TestAppendRawErrorSaysWhy: arguments that are not JSON are refused with
// encoding/json's account of what is wrong.
func TestAppendRawErrorSaysWhy(t *testing.T) {
	for raw, why := range map[string]string{
		`[1,`:   "unexpected end of JSON input",
		`[1] 2`: "invalid character '2' after top-level value",
		`[tru]`: "invalid character ']' in literal true",
	} {
		got, err := JSON.AppendInvocation([]byte("pre"), "", "T", []byte(raw))
		if string(got) != "pre" || !errors.Is(err, ErrInvalidJSON) || !strings.Contains(err.Error(), why) {
			t.Errorf("args %s: %q, %v; want dst unchanged and ErrInvalidJSON saying %q", raw, got, err, why)
		}
	}
}
