package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/poller"
)

// Long Polling over fake sockets: the races between a delivery answering
// the held poll and the sockets the polls come on.

// afterSendConn is a fakeConn that calls onSend after each Send it took
// (clientpath_test.go's hookConn calls it before).
type afterSendConn struct {
	fakeConn
	onSend func()
}

func (h *afterSendConn) Send(frame []byte) error {
	if err := h.fakeConn.Send(frame); err != nil {
		return err
	}
	if h.onSend != nil {
		h.onSend()
	}
	return nil
}

// openLongPoll opens a long-polling connection of s (first poll,
// handshake, its response) and returns its poll request.
func openLongPoll(t *testing.T, s *Server) string {
	t.Helper()
	_, negBody := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if err := json.Unmarshal([]byte(negBody), &n); err != nil {
		t.Fatal(err)
	}
	target := "/chat?id=" + n.ConnectionToken
	poll := "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"
	if resp, _ := exchange(t, s, poll); resp.StatusCode != 200 {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	hs := "{\"protocol\":\"json\",\"version\":1}\x1e"
	if resp, _ := exchange(t, s, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: 32\r\n\r\n"+hs); resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	if resp, body := exchange(t, s, poll); resp.StatusCode != 200 || body != "{}\x1e" {
		t.Fatalf("poll after the handshake: %d %q", resp.StatusCode, body)
	}
	testutil.WaitUntil(t, 5*time.Second, "connection registered", func() bool { return s.router.Hub("chat").Len() == 1 })
	return poll
}

func broadcastTo(s *Server, target string) {
	s.router.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.All, Payload: []byte(`{"type":1,"target":"` + target + `","arguments":[]}` + "\x1e")})
}

// responses parses the HTTP responses in out and returns their bodies.
func responses(t *testing.T, out []byte) []string {
	t.Helper()
	var bodies []string
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return bodies
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("responses %q: %v", out, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response body in %q: %v", out, err)
		}
		bodies = append(bodies, string(b))
	}
}

// TestLongPollRepollWhileAnswerIsWritten: a delivery answers the held
// poll from its own goroutine; the client's next poll on the same socket
// arrives as soon as the response is on the wire, while the delivery may
// still be finishing the answer. That poll is served (held, then
// answered by the next message), not discarded.
func TestLongPollRepollWhileAnswerIsWritten(t *testing.T) {
	s := newTestServer(t, Config{})
	poll := openLongPoll(t, s)
	hc := &afterSendConn{}
	sess := s.OnOpen(hc)
	defer sess.OnClose(nil)
	sess.OnData([]byte(poll))
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return s.HeldPolls() == 1 })

	repolled := make(chan struct{})
	hc.onSend = func() {
		if !strings.Contains(string(hc.output()), `"target":"m1"`) {
			return
		}
		hc.onSend = nil
		// The client has the whole response and polls again on this
		// socket: its loop reads the request now, concurrently.
		go func() { sess.OnData([]byte(poll)); close(repolled) }()
		select {
		case <-repolled: // the request was handled (or dropped) at once
		case <-time.After(100 * time.Millisecond): // it waits for the answer to finish
		}
	}
	broadcastTo(s, "m1")
	<-repolled
	testutil.WaitUntil(t, 5*time.Second, "the second poll held", func() bool { return s.HeldPolls() == 1 })
	broadcastTo(s, "m2")
	got := responses(t, hc.output())
	want := []string{`{"type":1,"target":"m1","arguments":[]}` + "\x1e", `{"type":1,"target":"m2","arguments":[]}` + "\x1e"}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("the poll socket got %q, want %q", got, want)
	}
}

// TestLongPollMessagesOutliveADeadPollSocket: the socket of the held poll
// is gone (reset under the client, its close not yet seen) when a message
// comes: the message stays queued and the client's next poll, on a new
// socket, gets it.
func TestLongPollMessagesOutliveADeadPollSocket(t *testing.T) {
	s := newTestServer(t, Config{})
	poll := openLongPoll(t, s)
	dead := &fakeConn{}
	sessDead := s.OnOpen(dead)
	sessDead.OnData([]byte(poll))
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return s.HeldPolls() == 1 })
	dead.Close() // Sends fail from now on (poller.ErrClosed); OnClose comes later
	if err := dead.Send(nil); err != poller.ErrClosed {
		t.Fatalf("the closed fake socket's Send: %v", err)
	}
	broadcastTo(s, "m1")
	sessDead.OnClose(nil)
	resp, body := exchange(t, s, poll)
	if resp.StatusCode != 200 || body != `{"type":1,"target":"m1","arguments":[]}`+"\x1e" {
		t.Fatalf("poll on a new socket: %d %q, want the message sent while the old one was dead", resp.StatusCode, body)
	}
}
