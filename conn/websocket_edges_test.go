package conn

import (
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// TestCloseFrameEcho: the server answers a client's close frame with the
// client's code, and an empty close frame (no status) with 1000: 1005 may
// not be sent on the wire.
func TestCloseFrameEcho(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"going away", []byte{0x03, 0xE9, 'b', 'y', 'e'}, "\x03\xe9"},
		{"normal", []byte{0x03, 0xE8}, "\x03\xe8"},
		{"no status", nil, "\x03\xe8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c, fc := openConn(t)
			c.OnData(clientFrame(0x88, tc.payload))
			f := readServerFrames(t, fc.output())
			if len(f) != 1 || f[0].op != byte(wsframe.OpClose) || f[0].payload != tc.want {
				t.Fatalf("answer %q, want a close frame %q", f, tc.want)
			}
			if !fc.isShutdown() || s.M.closed[causeClientClose.idx].Get() != 1 {
				t.Fatalf("closed %v, client_close %d", fc.isShutdown(), s.M.closed[causeClientClose.idx].Get())
			}
		})
	}
}

// TestInvalidUTF8Reasons: invalid UTF-8 closes with 1007 and says which
// kind of message carried it.
func TestInvalidUTF8Reasons(t *testing.T) {
	for _, tc := range []struct {
		op   byte
		want string
	}{
		{0x81, wsframe.ErrInvalidUTF8.Reason},
		{0x82, errBinaryUTF8.Reason},
	} {
		_, c, fc := openConn(t)
		c.OnData(clientFrame(tc.op, []byte("{\"type\":6}\xff\x1e")))
		f := readServerFrames(t, fc.output())
		last := f[len(f)-1]
		if last.op != byte(wsframe.OpClose) || last.payload != "\x03\xef"+tc.want {
			t.Fatalf("op %#x: close %q, want 1007 %q", tc.op, last.payload, tc.want)
		}
	}
}

// TestFragmentedMessageLimit: a fragmented message of exactly
// MaxMessageBytes is read; one byte more closes with 1009.
func TestFragmentedMessageLimit(t *testing.T) {
	const max = 100
	rec := func(n int) []byte { // a Ping record padded with spaces to n bytes
		return []byte(`{"type":6` + strings.Repeat(" ", n-len(`{"type":6}`)-1) + "}\x1e")
	}
	for _, tc := range []struct {
		size   int
		closed bool
	}{{max, false}, {max + 1, true}} {
		s, c, fc := openConnWith(t, Config{MaxMessageBytes: max})
		m := rec(tc.size)
		c.OnData(clientFrame(0x01, m[:40]))
		c.OnData(clientFrame(0x80, m[40:]))
		if fc.isShutdown() != tc.closed {
			t.Fatalf("fragmented message of %d bytes (limit %d): closed %v, want %v (%q)", tc.size, max, fc.isShutdown(), tc.closed, fc.output())
		}
		if tc.closed && s.M.closed[causeTooBig.idx].Get() != 1 {
			t.Fatalf("too_big not counted")
		}
		if !tc.closed && s.M.messagesIn.Get() != 1 {
			t.Fatalf("records in: %d, want the Ping", s.M.messagesIn.Get())
		}
	}
}
