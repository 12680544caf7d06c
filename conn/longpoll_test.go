package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
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

// firstPoll negotiates a connection of s and makes its first poll: its
// connection token and request target.
func firstPoll(t *testing.T, s *Server) (token, target string) {
	t.Helper()
	_, negBody := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if err := json.Unmarshal([]byte(negBody), &n); err != nil {
		t.Fatal(err)
	}
	target = "/chat?id=" + n.ConnectionToken
	if resp, _ := exchange(t, s, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	return n.ConnectionToken, target
}

// openLongPoll opens a long-polling connection of s (first poll,
// handshake, its response) and returns its poll request.
func openLongPoll(t *testing.T, s *Server) string {
	t.Helper()
	_, target := firstPoll(t, s)
	poll := "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"
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

// keyedPoll is poll with the JavaScript client's cache-buster `_=key`.
func keyedPoll(poll string, key int) string {
	return strings.Replace(poll, " HTTP/1.1", "&_="+strconv.Itoa(key)+" HTTP/1.1", 1)
}

func msgBody(targets ...string) string {
	var b strings.Builder
	for _, t := range targets {
		b.WriteString(`{"type":1,"target":"` + t + `","arguments":[]}` + "\x1e")
	}
	return b.String()
}

// pollSocket is one client socket of a long-polling connection.
type pollSocket struct {
	fc   *fakeConn
	sess poller.Session
}

func openPollSocket(t *testing.T, s *Server) *pollSocket {
	p := &pollSocket{fc: &fakeConn{}}
	p.sess = s.OnOpen(p.fc)
	t.Cleanup(func() { p.sess.OnClose(nil) })
	return p
}

func (p *pollSocket) poll(req string) { p.sess.OnData([]byte(req)) }

// answers is the status and body of every response the socket got.
func (p *pollSocket) answers(t *testing.T) []string {
	t.Helper()
	var out []string
	r := bufio.NewReader(bytes.NewReader(p.fc.output()))
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return out
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("responses %q: %v", p.fc.output(), err)
		}
		b, _ := io.ReadAll(resp.Body)
		out = append(out, strconv.Itoa(resp.StatusCode)+" "+string(b))
	}
}

func wantAnswers(t *testing.T, name string, p *pollSocket, want ...string) {
	t.Helper()
	if got := p.answers(t); !slices.Equal(got, want) {
		t.Errorf("socket %s got %q, want %q", name, got, want)
	}
}

// TestLongPollCopyOfAnsweredPoll: the held poll is answered on socket A,
// whose response the client never sees (A reset under it after the write);
// the browser sends the same poll (same `_`) again on socket B, and gets
// the same messages; what came after waits for the next poll, and a
// further copy after that next poll gets an empty answer (the client no
// longer waits on it), not a message.
func TestLongPollCopyOfAnsweredPoll(t *testing.T) {
	s := newTestServer(t, Config{})
	poll := openLongPoll(t, s)
	a, b, c, d := openPollSocket(t, s), openPollSocket(t, s), openPollSocket(t, s), openPollSocket(t, s)
	a.poll(keyedPoll(poll, 100))
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return s.HeldPolls() == 1 })
	broadcastTo(s, "m1")
	broadcastTo(s, "m2") // after the answer: queued
	b.poll(keyedPoll(poll, 100))
	c.poll(keyedPoll(poll, 101))
	d.poll(keyedPoll(poll, 100))
	broadcastTo(s, "m3")
	wantAnswers(t, "A", a, "200 "+msgBody("m1"))
	wantAnswers(t, "B (a copy of A's poll)", b, "200 "+msgBody("m1"))
	wantAnswers(t, "C (the next poll)", c, "200 "+msgBody("m2"))
	wantAnswers(t, "D (a copy after the next poll)", d, "200 ")
	if got := s.M.httpReqs("poll_again", 200).Get(); got != 2 {
		t.Errorf("poll_again answers counted %d, want 2", got)
	}
	e := openPollSocket(t, s)
	e.poll(keyedPoll(poll, 102))
	wantAnswers(t, "E", e, "200 "+msgBody("m3"))
}

// TestLongPollCopyOfHeldPoll: a copy of the held poll arrives on another
// socket (the first one reset before the node saw it close): the copy is
// held instead, and the socket it replaces gets an empty 200 (a 204 would
// end the client's transport if it still waited there).
func TestLongPollCopyOfHeldPoll(t *testing.T) {
	s := newTestServer(t, Config{})
	poll := openLongPoll(t, s)
	a, b := openPollSocket(t, s), openPollSocket(t, s)
	a.poll(keyedPoll(poll, 200))
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return s.HeldPolls() == 1 })
	b.poll(keyedPoll(poll, 200))
	testutil.WaitUntil(t, 5*time.Second, "the copy held", func() bool { return len(a.answers(t)) == 1 && s.HeldPolls() == 1 })
	broadcastTo(s, "m1")
	wantAnswers(t, "A", a, "200 ")
	wantAnswers(t, "B", b, "200 "+msgBody("m1"))
}

// TestLongPollSameKeySameSocket: a poll with the key of the last answered
// one on the same socket is no copy the browser sent again (those come on
// another socket): two polls in one millisecond. It gets an empty 200 and
// the messages wait for the next poll: none twice, none lost.
func TestLongPollSameKeySameSocket(t *testing.T) {
	s := newTestServer(t, Config{})
	poll := openLongPoll(t, s)
	a := openPollSocket(t, s)
	a.poll(keyedPoll(poll, 300))
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return s.HeldPolls() == 1 })
	broadcastTo(s, "m1")
	broadcastTo(s, "m2")
	a.poll(keyedPoll(poll, 300))
	a.poll(keyedPoll(poll, 301))
	wantAnswers(t, "A", a, "200 "+msgBody("m1"), "200 ", "200 "+msgBody("m2"))
}

// TestLongPollWithoutKeys: polls without `_` (the .NET client) are all
// new polls: a second one supersedes the held one (204), as in ASP.NET
// Core.
func TestLongPollWithoutKeys(t *testing.T) {
	s := newTestServer(t, Config{})
	poll := openLongPoll(t, s)
	a, b := openPollSocket(t, s), openPollSocket(t, s)
	a.poll(poll)
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return s.HeldPolls() == 1 })
	b.poll(poll)
	broadcastTo(s, "m1")
	wantAnswers(t, "A", a, "204 ")
	wantAnswers(t, "B", b, "200 "+msgBody("m1"))
}

func TestPollKey(t *testing.T) {
	for q, want := range map[string]uint32{
		"id=abc&_=1796066833227": 1796066833227&0xffffffff ^ 1796066833227>>32,
		"_=7&id=abc":             7,
		"_=0":                    1,
		"id=abc":                 0,
		"id=abc&_=x1":            0,
		"id=abc&__=5":            0,
		"":                       0,
	} {
		if got := pollKey(q); got != want {
			t.Errorf("pollKey(%q) = %d, want %d", q, got, want)
		}
	}
}
