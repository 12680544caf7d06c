package conn

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestPostWhileAnotherPostIs409: a POST that arrives while another POST
// of the same connection is being processed (on another socket) gets 409
// and the connection stays; once the first is done, POSTs go through.
func TestPostWhileAnotherPostIs409(t *testing.T) {
	s := newTestServer(t, Config{})
	token, target := firstPoll(t, s)
	post := func(body string) int {
		resp, _ := exchange(t, s, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		return resp.StatusCode
	}
	var id [idLen]byte
	ti, err := s.signer.open("chat", token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id = ti.id
	lc := s.httpConns.get(encodeID(id))
	if lc == nil {
		t.Fatal("no connection after the first poll")
	}
	lc.sink().posting.Store(true) // another POST in progress
	if code := post("{\"protocol\":\"json\",\"version\":1}\x1e"); code != http.StatusConflict {
		t.Fatalf("concurrent POST: %d, want 409", code)
	}
	lc.sink().posting.Store(false)
	if code := post("{\"protocol\":\"json\",\"version\":1}\x1e"); code != http.StatusOK {
		t.Fatalf("POST after the other finished: %d, want 200 (the connection stays)", code)
	}
}

// TestLongPollNextPollDuringAnswer: a held poll is answered by a
// delivering goroutine (the sink's enqueue) while the socket's own loop
// reads; a client that gets the answer polls again at once, so its next
// GET can be read before the answering goroutine has finished. That poll
// must be served (held), not read and dropped as a request on a socket
// still holding its last answer (the client would wait for ever).
func TestLongPollNextPollDuringAnswer(t *testing.T) {
	s := newTestServer(t, Config{})
	token, target := firstPoll(t, s)
	poll := "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n"
	hs := "{\"protocol\":\"json\",\"version\":1}\x1e"
	if resp, _ := exchange(t, s, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(hs))+"\r\n\r\n"+hs); resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d", resp.StatusCode)
	}
	ti, err := s.signer.open("chat", token, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lc := s.httpConns.get(encodeID(ti.id))
	if lc == nil {
		t.Fatal("no connection")
	}
	sink := lc.sink()
	held := func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.poll != nil }

	fc := &fakeConn{}
	sess := s.OnOpen(fc)
	t.Cleanup(func() { sess.OnClose(nil) })
	sess.OnData([]byte(poll)) // answered at once: the handshake response waits
	sess.OnData([]byte(poll)) // held
	if !held() {
		t.Fatal("the second poll is not held")
	}
	// When the answer's body goes out, the client's next poll arrives on
	// the socket's loop (another goroutine), before enqueue has returned.
	var once sync.Once
	read := make(chan struct{})
	fc.mu.Lock()
	fc.onSend = func(frame []byte) {
		if !bytes.Contains(frame, []byte(`"target":"m"`)) {
			return
		}
		once.Do(func() {
			go func() { sess.OnData([]byte(poll)); close(read) }()
			select { // the loop reads it now (or blocks on the sink until the answer is done)
			case <-read:
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
	fc.mu.Unlock()
	if err := sink.enqueue([]byte("{\"type\":1,\"target\":\"m\",\"arguments\":[]}\x1e")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 5*time.Second, "the next poll held", held)
	<-read
}
