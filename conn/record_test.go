package conn

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
		{"no separator", `{"type":6}`, nil, errIncompleteRecord},
		{"trailing bytes", `{"type":6}` + "\x1e" + `{"type":`, []string{`{"type":6}`}, errIncompleteRecord},
		{"trailing single byte", "{}\x1e ", []string{"{}"}, errIncompleteRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(tc.msg)
			orig := append([]byte(nil), msg...)
			var got []string
			err := splitRecords(msg, func(rec []byte) error {
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
				t.Fatal("splitRecords modified its input")
			}
		})
	}
	t.Run("callback error stops", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := splitRecords([]byte("a\x1eb\x1ec\x1e"), func(rec []byte) error {
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
}

func TestParseHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, rec string
		want      string // "" accepted; a prefix for JSON errors
		prefix    bool
	}{
		{"ok", `{"protocol":"json","version":1}`, "", false},
		{"ok reordered, whitespace", ` { "version" : 1 , "protocol" : "json" } `, "", false},
		{"ok extra fields", `{"protocol":"json","version":1,"x":[1,2]}`, "", false},
		{"messagepack", `{"protocol":"messagepack","version":1}`, "The protocol 'messagepack' is not supported.", false},
		{"empty protocol", `{"protocol":"","version":1}`, "The protocol '' is not supported.", false},
		{"JSON uppercase", `{"protocol":"JSON","version":1}`, "The protocol 'JSON' is not supported.", false},
		{"version 2", `{"protocol":"json","version":2}`, "The server does not support version 2 of the 'json' protocol.", false},
		{"version 0", `{"protocol":"json","version":0}`, "The server does not support version 0 of the 'json' protocol.", false},
		{"version -1", `{"protocol":"json","version":-1}`, "The server does not support version -1 of the 'json' protocol.", false},
		{"missing version", `{"protocol":"json"}`, "Handshake request is missing protocol or version.", false},
		{"missing protocol", `{"version":1}`, "Handshake request is missing protocol or version.", false},
		{"empty object", `{}`, "Handshake request is missing protocol or version.", false},
		{"null fields", `{"protocol":null,"version":null}`, "Handshake request is missing protocol or version.", false},
		{"null", `null`, "Handshake request is missing protocol or version.", false},
		{"empty", ``, "Error parsing handshake request: ", true},
		{"truncated", `{"protocol":"json","vers`, "Error parsing handshake request: ", true},
		{"not an object", `[1,2]`, "Error parsing handshake request: ", true},
		{"version string", `{"protocol":"json","version":"1"}`, "Error parsing handshake request: ", true},
		{"version fraction", `{"protocol":"json","version":1.5}`, "Error parsing handshake request: ", true},
		{"protocol number", `{"protocol":1,"version":1}`, "Error parsing handshake request: ", true},
		{"trailing garbage", `{"protocol":"json","version":1}x`, "Error parsing handshake request: ", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseHandshake([]byte(tc.rec))
			if tc.prefix {
				if !strings.HasPrefix(got, tc.want) || len(got) == len(tc.want) {
					t.Fatalf("got %q, want %q + detail", got, tc.want)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseHubMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rec     string
		want    hubMessage
		wantErr bool
	}{
		{"ping", `{"type":6}`, hubMessage{Type: msgPing}, false},
		{"invocation", `{"type":1,"invocationId":"7","target":"Send","arguments":["a",{"b":[1,2]}]}`,
			hubMessage{Type: msgInvocation, InvocationID: "7", Target: "Send", Arguments: json.RawMessage(`["a",{"b":[1,2]}]`)}, false},
		{"non-blocking invocation", `{"type":1,"target":"Send","arguments":[]}`,
			hubMessage{Type: msgInvocation, Target: "Send", Arguments: json.RawMessage(`[]`)}, false},
		{"close", `{"type":7,"error":"bye","allowReconnect":true}`, hubMessage{Type: msgClose}, false},
		{"unknown fields", `{"type":9,"sequenceId":3,"headers":{"a":"b"}}`, hubMessage{Type: msgSequence}, false},
		{"missing type", `{"target":"Send"}`, hubMessage{}, true},
		{"type 0", `{"type":0}`, hubMessage{}, true},
		{"type string", `{"type":"1"}`, hubMessage{}, true},
		{"malformed", `{"type":1,`, hubMessage{}, true},
		{"empty", ``, hubMessage{}, true},
		{"array", `[]`, hubMessage{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHubMessage([]byte(tc.rec))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "invalid hub message") {
					t.Fatalf("error %q lacks context", err)
				}
				return
			}
			if got.Type != tc.want.Type || got.InvocationID != tc.want.InvocationID || got.Target != tc.want.Target ||
				string(got.Arguments) != string(tc.want.Arguments) {
				t.Fatalf("got %+v (args %s), want %+v (args %s)", got, got.Arguments, tc.want, tc.want.Arguments)
			}
		})
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

func TestOutboundRecords(t *testing.T) {
	nasty := "quote \" backslash \\ rs \x1e nl \n ✓ <tag>"
	for _, tc := range []struct {
		name string
		rec  []byte
		want map[string]any
	}{
		{"handshake ok", handshakeOK, map[string]any{}},
		{"ping", pingRecord, map[string]any{"type": 6.0}},
		{"handshake error", handshakeErrorRecord("The protocol 'messagepack' is not supported."),
			map[string]any{"error": "The protocol 'messagepack' is not supported."}},
		{"handshake error nasty", handshakeErrorRecord(nasty), map[string]any{"error": nasty}},
		{"close plain", closeRecord("", false), map[string]any{"type": 7.0}},
		{"close error", closeRecord("Server timeout elapsed.", false), map[string]any{"type": 7.0, "error": "Server timeout elapsed."}},
		{"close reconnect", closeRecord("slow client", true), map[string]any{"type": 7.0, "error": "slow client", "allowReconnect": true}},
		{"close reconnect no error", closeRecord("", true), map[string]any{"type": 7.0, "allowReconnect": true}},
		{"completion error", completionErrorRecord("42", "no upstream"),
			map[string]any{"type": 3.0, "invocationId": "42", "error": "no upstream"}},
		{"completion error nasty", completionErrorRecord(nasty, nasty),
			map[string]any{"type": 3.0, "invocationId": nasty, "error": nasty}},
		{"completion error empty message", completionErrorRecord("1", ""),
			map[string]any{"type": 3.0, "invocationId": "1", "error": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decodeRecord(t, tc.rec); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("record %q decodes to %v, want %v", tc.rec, got, tc.want)
			}
		})
	}
}

func TestInvocationRecord(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   string
		args     json.RawMessage
		wantArgs any
	}{
		{"nil args", "Notify", nil, []any{}},
		{"empty args", "Notify", json.RawMessage{}, []any{}},
		{"args", "Send", json.RawMessage(`["alice", 3, {"k": [true, null]}]`),
			[]any{"alice", 3.0, map[string]any{"k": []any{true, nil}}}},
		{"nasty target", "a\"b\\c\x1e✓", json.RawMessage(`[]`), []any{}},
		{"arg with escaped RS", "T", json.RawMessage(`["\u001e"]`), []any{"\x1e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := InvocationRecord(tc.target, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"type": 1.0, "target": tc.target, "arguments": tc.wantArgs}
			if got := decodeRecord(t, rec); !reflect.DeepEqual(got, want) {
				t.Fatalf("record %q decodes to %v, want %v", rec, got, want)
			}
			// What a client would do: split, then parse as a hub message.
			var n int
			if err := splitRecords(rec, func(r []byte) error {
				n++
				m, err := parseHubMessage(r)
				if err != nil || m.Type != msgInvocation || m.Target != tc.target {
					t.Fatalf("re-parse: %+v %v", m, err)
				}
				return nil
			}); err != nil || n != 1 {
				t.Fatalf("splitRecords: %v, %d records", err, n)
			}
		})
	}
	for _, bad := range []string{`[1,`, `not json`, `{"a":}`} {
		t.Run("invalid "+bad, func(t *testing.T) {
			rec, err := InvocationRecord("T", json.RawMessage(bad))
			if err == nil {
				t.Fatalf("no error, record %q", rec)
			}
			if !strings.Contains(err.Error(), `"T"`) {
				t.Fatalf("error %q does not name the target", err)
			}
		})
	}
}
