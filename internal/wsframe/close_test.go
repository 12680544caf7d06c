package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestCloseFramePayload(t *testing.T) {
	for _, tc := range []struct {
		name       string
		code       CloseCode
		reason     string
		wantReason string
	}{
		{"empty", CloseNormal, "", ""},
		{"short", CloseProtocolError, "handshake failed", "handshake failed"},
		{"123 fits", CloseTooBig, strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"124 truncated", ClosePolicyViolation, strings.Repeat("b", 124), strings.Repeat("b", 123)},
		{"long truncated", CloseInternalError, strings.Repeat("c", 1000), strings.Repeat("c", 123)},
		// 'é' is 2 bytes: byte 123 falls in the middle of a rune; the
		// reason must stay valid UTF-8 (RFC 6455 §5.5.1), so the partial
		// rune is dropped.
		{"multibyte cut", CloseNormal, strings.Repeat("é", 100), strings.Repeat("é", 61)},
		{"3-byte runes", CloseGoingAway, strings.Repeat("€", 50), strings.Repeat("€", 41)},
		{"4-byte runes", CloseGoingAway, "x" + strings.Repeat("😀", 40), "x" + strings.Repeat("😀", 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := AppendClosePayload(nil, tc.code, tc.reason)
			if len(p) > 125 {
				t.Fatalf("payload is %d bytes, over the 125-byte control frame limit", len(p))
			}
			if len(p) < 2 {
				t.Fatalf("payload %x has no status code", p)
			}
			if got := CloseCode(binary.BigEndian.Uint16(p)); got != tc.code {
				t.Fatalf("code = %d, want %d", got, tc.code)
			}
			if !utf8.Valid(p[2:]) {
				t.Fatalf("reason is not valid UTF-8: %q", p[2:])
			}
			if string(p[2:]) != tc.wantReason {
				t.Fatalf("reason = %q (%d bytes), want %q", p[2:], len(p)-2, tc.wantReason)
			}
			code, reason := ws.ParseCloseFrameData(p)
			if CloseCode(code) != tc.code || reason != tc.wantReason {
				t.Fatalf("ws.ParseCloseFrameData = %d %q", code, reason)
			}
		})
	}
}

// oldClosePayload is conn's closeFramePayload before the move: the
// reference AppendClosePayload must match byte for byte.
func oldClosePayload(code CloseCode, reason string) []byte {
	if len(reason) > 123 {
		reason = strings.ToValidUTF8(reason[:123], "")
	}
	return ws.NewCloseFrameBody(ws.StatusCode(code), reason)
}

func TestClosePayloadMatchesReference(t *testing.T) {
	reasons := []string{
		"", "x", strings.Repeat("a", 123), strings.Repeat("a", 124),
		strings.Repeat("é", 100), "\xff" + strings.Repeat("b", 130), // invalid UTF-8 inside the cut
		strings.Repeat("c", 122) + "\xe2\x82", // 124 bytes: cut leaves a partial rune
		"short \xff invalid kept",             // under the limit: sent as given
		strings.Repeat("\uFFFD", 50),          // an encoded U+FFFD is valid and kept
	}
	for _, r := range reasons {
		want := oldClosePayload(CloseGoingAway, r)
		if got := AppendClosePayload(nil, CloseGoingAway, r); !bytes.Equal(got, want) {
			t.Errorf("reason %q:\n got %x\nwant %x", r, got, want)
		}
		// The whole frame is header + the same body, appended to dst.
		frame := AppendCloseFrame([]byte("prefix"), CloseGoingAway, r)
		wantFrame := append([]byte("prefix"), AppendFrame(nil, OpClose, want)...)
		if !bytes.Equal(frame, wantFrame) {
			t.Errorf("frame for %q:\n got %x\nwant %x", r, frame, wantFrame)
		}
		if f := AppendCloseFrame(nil, CloseGoingAway, r); cap(f) != 2+2+min(len(r), 123) {
			t.Errorf("frame for %q: cap %d, want exact size %d", r, cap(f), 4+min(len(r), 123))
		}
	}
}

func TestCompiledFrames(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want []byte
		gobwas    []byte
	}{
		{"ping", CompiledPing, []byte{0x89, 0x00}, ws.CompiledPing},
		{"pong", CompiledPong, []byte{0x8A, 0x00}, ws.CompiledPong},
		{"close", CompiledClose, []byte{0x88, 0x00}, ws.CompiledClose},
		{"close 1000", CompiledCloseNormal, []byte{0x88, 0x02, 0x03, 0xE8}, nil},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: %x, want %x", tc.name, tc.got, tc.want)
		}
		if tc.gobwas != nil && !bytes.Equal(tc.got, tc.gobwas) {
			t.Errorf("%s: %x, gobwas/ws compiles %x", tc.name, tc.got, tc.gobwas)
		}
	}
}

func TestParseClosePayload(t *testing.T) {
	body := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	for _, tc := range []struct {
		name       string
		p          []byte
		wantCode   CloseCode
		wantReason string
		wantErr    error
	}{
		{"empty", nil, CloseNoStatus, "", nil},
		{"one byte", []byte{0x03}, 0, "", ErrBadClosePayload},
		{"1000", body(1000, ""), CloseNormal, "", nil},
		{"1000 reason", body(1000, "bye ✓"), CloseNormal, "bye ✓", nil},
		{"1001", body(1001, ""), CloseGoingAway, "", nil},
		{"1003", body(1003, ""), CloseUnsupported, "", nil},
		{"1007", body(1007, ""), CloseInvalidPayload, "", nil},
		{"1014", body(1014, ""), 1014, "", nil},
		{"3000", body(3000, ""), 3000, "", nil},
		{"4999", body(4999, "app"), 4999, "app", nil},
		{"999", body(999, ""), 0, "", ErrBadCloseCode},
		{"0", body(0, ""), 0, "", ErrBadCloseCode},
		{"1004 reserved", body(1004, ""), 0, "", ErrBadCloseCode},
		{"1005 never sent", body(1005, ""), 0, "", ErrBadCloseCode},
		{"1006 never sent", body(1006, ""), 0, "", ErrBadCloseCode},
		{"1015 never sent", body(1015, ""), 0, "", ErrBadCloseCode},
		{"2999", body(2999, ""), 0, "", ErrBadCloseCode},
		{"5000", body(5000, ""), 0, "", ErrBadCloseCode},
		{"65535", body(65535, ""), 0, "", ErrBadCloseCode},
		{"invalid UTF-8", body(1000, "a\xffb"), 0, "", ErrCloseReasonUTF8},
		{"invalid UTF-8 beats bad code", body(1005, "\xff"), 0, "", ErrCloseReasonUTF8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClosePayload(tc.p)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if code != tc.wantCode || string(reason) != tc.wantReason {
				t.Fatalf("got %d %q, want %d %q", code, reason, tc.wantCode, tc.wantReason)
			}
			// What we send parses back to what we sent.
			if tc.p != nil {
				if c2, r2, err := ParseClosePayload(AppendClosePayload(nil, code, string(reason))); err != nil || c2 != code || string(r2) != string(reason) {
					t.Fatalf("round trip: %d %q %v", c2, r2, err)
				}
			}
			if !utf8.Valid(reason) {
				t.Fatal("invalid reason returned")
			}
		})
	}
}

// TestClosePayloadOnlyCutsLongReasons: a reason of MaxCloseReason bytes or
// fewer is the caller's and goes out as given; only a longer one is cut and
// cleaned of the invalid UTF-8 the cut may leave.
func TestClosePayloadOnlyCutsLongReasons(t *testing.T) {
	exact := strings.Repeat("a", MaxCloseReason-1) + "\xff"
	if got := AppendClosePayload(nil, CloseNormal, exact); string(got[2:]) != exact {
		t.Errorf("reason of %d bytes sent as %q, want it as given", len(exact), got[2:])
	}
	long := exact + "b"
	if got := AppendClosePayload(nil, CloseNormal, long); string(got[2:]) != exact[:MaxCloseReason-1] {
		t.Errorf("reason of %d bytes sent as %q, want it cut to %d bytes and cleaned", len(long), got[2:], MaxCloseReason)
	}
}
