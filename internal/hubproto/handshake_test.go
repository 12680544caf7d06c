package hubproto

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, rec string
		want      string // "" accepted; a prefix for JSON errors
		prefix    bool
		kind      error
	}{
		{"ok", `{"protocol":"json","version":1}`, "", false, nil},
		{"ok reordered, whitespace", ` { "version" : 1 , "protocol" : "json" } `, "", false, nil},
		{"ok extra fields", `{"protocol":"json","version":1,"x":[1,2]}`, "", false, nil},
		{"MessagePack case", `{"protocol":"MessagePack","version":1}`, "The protocol 'MessagePack' is not supported.", false, ErrUnsupportedProtocol},
		{"messagepack version 3", `{"protocol":"messagepack","version":3}`, "The server does not support version 3 of the 'messagepack' protocol.", false, ErrUnsupportedVersion},
		{"empty protocol", `{"protocol":"","version":1}`, "The protocol '' is not supported.", false, ErrUnsupportedProtocol},
		{"JSON uppercase", `{"protocol":"JSON","version":1}`, "The protocol 'JSON' is not supported.", false, ErrUnsupportedProtocol},
		{"version 2 (stateful reconnect)", `{"protocol":"json","version":2}`, "", false, nil},
		{"version 3", `{"protocol":"json","version":3}`, "The server does not support version 3 of the 'json' protocol.", false, ErrUnsupportedVersion},
		{"version 0", `{"protocol":"json","version":0}`, "The server does not support version 0 of the 'json' protocol.", false, ErrUnsupportedVersion},
		{"version -1", `{"protocol":"json","version":-1}`, "The server does not support version -1 of the 'json' protocol.", false, ErrUnsupportedVersion},
		{"missing version", `{"protocol":"json"}`, "Handshake request is missing protocol or version.", false, ErrHandshakeMissing},
		{"missing protocol", `{"version":1}`, "Handshake request is missing protocol or version.", false, ErrHandshakeMissing},
		{"empty object", `{}`, "Handshake request is missing protocol or version.", false, ErrHandshakeMissing},
		{"null fields", `{"protocol":null,"version":null}`, "Handshake request is missing protocol or version.", false, ErrHandshakeMissing},
		{"null", `null`, "Handshake request is missing protocol or version.", false, ErrHandshakeMissing},
		{"property names are exact", `{"Protocol":"json","Version":1}`, "Handshake request is missing protocol or version.", false, ErrHandshakeMissing},
		{"empty", ``, "Error parsing handshake request: ", true, ErrHandshakeSyntax},
		{"truncated", `{"protocol":"json","vers`, "Error parsing handshake request: ", true, ErrHandshakeSyntax},
		{"not an object", `[1,2]`, "Error parsing handshake request: ", true, ErrHandshakeSyntax},
		{"version string", `{"protocol":"json","version":"1"}`, "Error parsing handshake request: version must be an integer.", false, ErrHandshakeSyntax},
		{"version fraction", `{"protocol":"json","version":1.5}`, "Error parsing handshake request: version must be an integer.", false, ErrHandshakeSyntax},
		{"protocol number", `{"protocol":1,"version":1}`, "Error parsing handshake request: protocol must be a string.", false, ErrHandshakeSyntax},
		{"trailing garbage", `{"protocol":"json","version":1}x`, "Error parsing handshake request: ", true, ErrHandshakeSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, rest, err := ParseHandshake([]byte(tc.rec + "\x1e" + `{"type":6}` + "\x1e"))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				want := 1
				if strings.Contains(tc.rec, `"version":2`) {
					want = 2
				}
				if h.Protocol != JSON || h.Version != want || string(rest) != `{"type":6}`+"\x1e" {
					t.Fatalf("handshake %+v, rest %q", h, rest)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", h)
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err %q is not %v", err, tc.kind)
			}
			got := err.Error()
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
	for _, msg := range []string{``, `{"protocol":"json","version":1}`} {
		_, _, err := ParseHandshake([]byte(msg))
		if !errors.Is(err, ErrHandshakeUnterminated) || err.Error() != "Handshake request is not terminated by 0x1e." {
			t.Fatalf("%q: err %v", msg, err)
		}
	}
	if _, rest, err := ParseHandshake([]byte(`{"protocol":"json","version":1}` + "\x1e")); err != nil || len(rest) != 0 {
		t.Fatalf("handshake alone: rest %q err %v", rest, err)
	}
}

func TestLookup(t *testing.T) {
	if p := Lookup("json"); p != JSON || p.Name() != "json" || p.Version() != 1 || p.Binary() || p.ID() != IDJSON {
		t.Fatalf("Lookup(json) = %v", p)
	}
	if p := Lookup("messagepack"); p != MessagePack || p.Name() != "messagepack" || p.Version() != 1 || !p.Binary() || p.ID() != IDMessagePack {
		t.Fatalf("Lookup(messagepack) = %v", p)
	}
	for id := ID(0); id < NumIDs; id++ {
		if p := ByID(id); p.ID() != id || Lookup(p.Name()) != p || id.String() != p.Name() {
			t.Fatalf("ByID(%d) = %v", id, p)
		}
	}
	for _, name := range []string{"MessagePack", "JSON", "", "json ", "msgpack"} {
		if p := Lookup(name); p != nil {
			t.Fatalf("Lookup(%q) = %v", name, p)
		}
	}
}

func TestAppendHandshakeRequest(t *testing.T) {
	// Byte for byte what bench and the JS client send.
	if got := string(AppendHandshakeRequest(nil, JSON)); got != "{\"protocol\":\"json\",\"version\":1}\x1e" {
		t.Fatalf("got %q", got)
	}
	h, rest, err := ParseHandshake(AppendHandshakeRequest([]byte{}, JSON))
	if err != nil || h.Protocol != JSON || len(rest) != 0 {
		t.Fatalf("own request does not parse: %v", err)
	}
}

// TestTrackable: only the hub invocation messages are numbered for
// stateful reconnect (HubProtocol.md, "Trackable messages").
func TestTrackable(t *testing.T) {
	for ty := MessageType(0); ty <= 10; ty++ {
		want := ty == TypeInvocation || ty == TypeStreamItem || ty == TypeCompletion || ty == TypeStreamInvocation || ty == TypeCancelInvocation
		if ty.IsTrackable() != want {
			t.Errorf("%v.IsTrackable() = %v", ty, !want)
		}
	}
}
