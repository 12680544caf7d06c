package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Fuzz targets; seed corpora are the f.Add calls plus testdata/fuzz/<name>.
// Run one with: go test -run '^$' -fuzz '^FuzzHandshake$' -fuzztime 20s ./internal/hubproto/

func FuzzSplitRecords(f *testing.F) {
	for _, s := range []string{
		"", "\x1e", "{}\x1e", `{"type":6}` + "\x1e" + `{"type":1,"target":"a","arguments":[1]}` + "\x1e",
		`{"type":6}`, "a\x1eb", "\x1e\x1e\x1e", "é\x1e✓\x1e",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := append([]byte(nil), msg...)
		var rebuilt []byte
		err := JSON.Split(msg, func(rec []byte) error {
			if bytes.IndexByte(rec, RecordSeparator) >= 0 {
				t.Fatalf("record %q holds a separator", rec)
			}
			rebuilt = append(append(rebuilt, rec...), RecordSeparator)
			// Parse and PeekType never panic, and agree on the type of a
			// record that parses (unless it starts {"type":, which
			// PeekType trusts: a later duplicate "type" may win in Parse).
			if m, err := JSON.Parse(rec); err == nil {
				canonical := bytes.HasPrefix(rec, []byte(`{"type":`))
				if pt := JSON.PeekType(rec); pt != m.Type && !canonical {
					t.Fatalf("PeekType %d, Parse %d for %q", pt, m.Type, rec)
				}
			} else if m.Type != 0 || !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("failed Parse returned %+v, %v", m, err)
			}
			return nil
		})
		if !bytes.Equal(msg, orig) {
			t.Fatal("input modified")
		}
		switch {
		case err == nil:
			if !bytes.Equal(rebuilt, msg) {
				t.Fatalf("records rebuild %q, input %q", rebuilt, msg)
			}
		case errors.Is(err, ErrIncompleteRecord):
			if !bytes.HasPrefix(msg, rebuilt) || len(rebuilt) == len(msg) ||
				bytes.IndexByte(msg[len(rebuilt):], RecordSeparator) >= 0 {
				t.Fatalf("incomplete: records rebuild %q of input %q", rebuilt, msg)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func FuzzHandshake(f *testing.F) {
	for _, s := range []string{
		`{"protocol":"json","version":1}`,
		`{"protocol":"messagepack","version":1}`,
		`{"protocol":"json","version":2}`,
		`{"protocol":"json"}`,
		`{"version":1,"protocol":"json","protocol":"x"}`,
		`{"protocol":"json","version":1.0}`,
		`{"protocol":"\u006aso\u006e","version":1e0}`,
		`null`, ``, `[`, `{"protocol":"json","version":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, rest, err := ParseHandshake(append(rec, RecordSeparator))
		first, _, _ := bytes.Cut(rec, []byte{RecordSeparator})
		if err == nil {
			var m map[string]any
			if err := json.Unmarshal(first, &m); err != nil {
				t.Fatalf("accepted invalid JSON %q: %v", first, err)
			}
			if v := m["version"]; (v != 1.0 && v != 2.0) || float64(h.Version) != v || h.Protocol == nil || m["protocol"] != h.Protocol.Name() || Lookup(h.Protocol.Name()) != h.Protocol {
				t.Fatalf("accepted %q: protocol %v version %v", first, m["protocol"], m["version"])
			}
			if len(first)+1+len(rest) != len(rec)+1 {
				t.Fatalf("rest %q of %q", rest, rec)
			}
		} else {
			msg := err.Error()
			known := false
			for _, p := range []string{"Error parsing handshake request: ", "Handshake request is missing", "The protocol '", "The server does not support version "} {
				known = known || strings.HasPrefix(msg, p)
			}
			if !known {
				t.Fatalf("unexpected handshake error %q", msg)
			}
			// The response record is one valid JSON record whatever the text.
			resp := AppendHandshakeError(nil, msg)
			if resp[len(resp)-1] != RecordSeparator || bytes.Count(resp, []byte{RecordSeparator}) != 1 {
				t.Fatalf("response %q is not one record", resp)
			}
			var r struct{ Error *string }
			if err := json.Unmarshal(resp[:len(resp)-1], &r); err != nil || r.Error == nil {
				t.Fatalf("response %q: %v", resp, err)
			}
			if !bytes.Equal(resp, refHandshakeError(msg)) {
				t.Fatalf("response %q differs from encoding/json's %q", resp, refHandshakeError(msg))
			}
		}
		// Hub messages: no panic; a message without a type is an error.
		if m, err := JSON.Parse(rec); err == nil && m.Type == 0 {
			t.Fatalf("hub message without type accepted: %q", rec)
		}
	})
}

// FuzzAppendersMatchEncodingJSON: every hand-written JSON writer produces
// the bytes encoding/json produced before, for any strings and any raw
// arguments (valid or not).
func FuzzAppendersMatchEncodingJSON(f *testing.F) {
	f.Add("Send", "", []byte(`["a", 1]`))
	f.Add(nasty, "\u2028<&>", []byte(" [\"\u2028<&>\", {\"k\" : [ ]}] "))
	f.Add("\xff\xed\xa0\x80", "\x00", []byte("[\"\xff\"]"))
	f.Add("", "", []byte(`[1,`))
	f.Fuzz(func(t *testing.T, s1, s2 string, raw []byte) {
		checkMatchesReference(t, s1, s2, raw)
	})
}
