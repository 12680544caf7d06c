package conn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/testutil"
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

// TestClientResultTimeoutToTheSecond: a result expected in second T is
// timed out by the sweep of second T+ResultTimeout, not a second later.
func TestClientResultTimeoutToTheSecond(t *testing.T) {
	_, c, _ := openConnWith(t, Config{Returner: &returnRecorder{}, ResultTimeout: 3 * time.Second})
	s := c.srv
	var at int64
	for i := 0; ; i++ { // expected within one second of the clock
		before := time.Now().Unix()
		s.ExpectResult(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: c.entry.ID(), InvocationID: fmt.Sprint("s", i), ReturnChannel: "chs"})
		if at = time.Now().Unix(); at == before {
			break
		}
		s.sweepResults(time.Now().Add(time.Hour))
	}
	s.sweepResults(time.Unix(at+2, 999e6))
	if s.results.n.Load() != 1 {
		t.Fatalf("swept a second early: pending %d", s.results.n.Load())
	}
	s.sweepResults(time.Unix(at+3, 0))
	if s.results.n.Load() != 0 {
		t.Fatalf("not swept at its time-out: pending %d", s.results.n.Load())
	}
}

// ctxReturner is a Returner that, as backplane.Redis does, fails when its
// context is done; channel "bad" fails once release is closed.
type ctxReturner struct {
	release chan struct{}
	mu      sync.Mutex
	calls   int
	sent    []string
}

func (r *ctxReturner) ReturnChannel(hub string) string { return hub + ":ret" }
func (r *ctxReturner) Return(ctx context.Context, channel, protocol string, completion []byte) error {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	if channel == "bad" {
		<-r.release
		return errors.New("publish failed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	r.sent = append(r.sent, channel+"|"+string(completion))
	r.mu.Unlock()
	return nil
}

func (r *ctxReturner) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.calls }

// TestClientResultReturnOutcome: a client's Completion is handed to the
// Returner with time to publish it (a live context), and only a failed
// publish is counted lost.
func TestClientResultReturnOutcome(t *testing.T) {
	ret := &ctxReturner{release: make(chan struct{})}
	_, c, _ := openConnWith(t, Config{Returner: ret})
	s := c.srv
	defer func() {
		select {
		case <-ret.release:
		default:
			close(ret.release)
		}
	}()
	for _, ch := range []string{"good", "bad"} {
		s.ExpectResult(&backplane.Message{Hub: "chat", Kind: backplane.Connection, Name: c.entry.ID(), InvocationID: ch + "1", ReturnChannel: ch})
		c.OnData(clientFrame(0x81, []byte(`{"type":3,"invocationId":"`+ch+`1","result":1}`+"\x1e")))
	}
	// The returns go one at a time: while the second is under way, the
	// first is done.
	testutil.WaitUntil(t, 5*time.Second, "the second return under way", func() bool { return ret.count() == 2 })
	if got := s.results.lost.Get(); got != 0 {
		t.Fatalf("after a published return: lost %d, want 0", got)
	}
	close(ret.release)
	testutil.WaitUntil(t, 5*time.Second, "the failed return counted lost", func() bool { return s.results.lost.Get() == 1 })
	ret.mu.Lock()
	defer ret.mu.Unlock()
	if len(ret.sent) != 1 || ret.sent[0] != "good|{\"type\":3,\"invocationId\":\"good1\",\"result\":1}\x1e" {
		t.Fatalf("published %q", ret.sent)
	}
}
