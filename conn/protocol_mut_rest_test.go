package conn

import (
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
)

// TestHandshakeUTF8Scope: the UTF-8 check at the handshake covers the
// handshake request, up to and with its record separator, and nothing
// after it: bytes of a MessagePack record sent after the handshake in the
// same binary message are not text; invalid UTF-8 in the request closes
// with 1007; an empty request followed by other bytes is a handshake
// error.
func TestHandshakeUTF8Scope(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   byte
		msg  string
		open bool
		want []serverFrame
	}{
		{"empty request, then bytes", 0x81, "\x1e\xff", false, []serverFrame{
			{0x01, `{"error":"Error parsing handshake request: unexpected end of JSON input"}` + "\x1e"},
			{0x08, "\x03\xeahandshake failed"},
		}},
		{"invalid UTF-8 before the separator", 0x81, `{"protocol":"json","version":1` + "\xff\x1e", false, []serverFrame{
			{0x08, "\x03\xefinvalid UTF-8 in text message"},
		}},
		{"MessagePack record after", 0x82, `{"protocol":"messagepack","version":1}` + "\x1e\x02\x91\x06", true, []serverFrame{
			{0x02, "{}\x1e"},
		}},
	} {
		s := newTestServer(t, Config{})
		fc := &fakeConn{}
		c := s.OnOpen(fc).(*Conn)
		c.OnData([]byte(testUpgrade))
		fc.reset()
		c.OnData(clientFrame(tc.op, []byte(tc.msg)))
		got := readServerFrames(t, fc.output())
		if open := c.state.Load() == stOpen && !fc.isShutdown(); open != tc.open || len(got) != len(tc.want) {
			t.Errorf("%s: open %v, frames %q; want open %v, frames %q", tc.name, open, got, tc.open, tc.want)
		} else {
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s: frame %d %q, want %q", tc.name, i, got[i], tc.want[i])
				}
			}
		}
		c.OnClose(nil)
	}
}

// TestClientResultsDefaultTimeout: without Config.ResultTimeout a client
// result is waited for DefaultResultTimeout (60 s), not swept at once.
func TestClientResultsDefaultTimeout(t *testing.T) {
	ret := &returnRecorder{}
	_, c, _ := openConnWith(t, Config{Returner: ret})
	s := c.srv
	s.ExpectResult(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: c.entry.ID(), InvocationID: "d1", ReturnChannel: "chd"})
	now := time.Now()
	s.sweepResults(now)
	s.sweepResults(now.Add(DefaultResultTimeout - 2*time.Second))
	if s.results.n.Load() != 1 || s.results.timedOut.Get() != 0 {
		t.Fatalf("swept before the default time-out: pending %d, timed out %d", s.results.n.Load(), s.results.timedOut.Get())
	}
	s.sweepResults(now.Add(DefaultResultTimeout + 2*time.Second))
	if s.results.n.Load() != 0 || s.results.timedOut.Get() != 1 {
		t.Fatalf("after the default time-out: pending %d, timed out %d", s.results.n.Load(), s.results.timedOut.Get())
	}
}
