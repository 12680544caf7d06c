package conn

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/edgeplane/edgeplane/poller"
)

// Long Polling (httptransport.go has the shape). Between polls a
// connection is its logical Conn and its sink: the messages that arrived
// since the last poll wait in the sink's queue as references to the
// frames fanout encoded once (the WebSocket header left off), bounded by
// Config.HTTPQueueBytes like a socket's outbound queue. A poll that finds
// messages is answered at once with all of them; one that finds none is
// held (its socket in stHeld) until a message comes, a newer poll
// supersedes it (204), the connection ends (204, or 200 with the final
// Close message), or Config.PollTimeout passes (200, empty). A client
// that has no poll held for Config.ReconnectWindow (ASP.NET Core's
// DisconnectTimeout, 15 s) is gone. Long Polling has inherent keep-alive:
// no Ping either way, and no client time-out but that one.

// firstPoll records the connection's first poll, answered 200 at once
// (the client's check that the transport works).
func (s *httpSink) firstPoll() {
	s.mu.Lock()
	s.polled = true
	since := s.lc.srv.wheel.Now()
	s.since = since
	s.mu.Unlock()
	s.lc.srv.wheel.add(s.lc, since+s.lc.srv.handshakeSec)
}

// Polls sent again. A browser whose kept-alive socket is reset under a
// request sends the request again on another socket (an idempotent GET,
// Chromium does it up to twice, with no error for the page), and so may a
// proxy. Such a poll's answer may have gone out on the dead socket: its
// messages written, the client never seeing them. And copies of one poll
// can reach the node after their original was answered. The JavaScript
// client makes every poll's URL unique (`&_=Date.now()`, its key here), so
// the node tells the copies from new polls:
//   - a copy of the poll last answered with messages, on another socket,
//     gets those messages again: whichever copy the client is waiting on,
//     it gets the same answer, and the messages that came after wait for
//     the next poll (a copy the client no longer waits on is discarded by
//     it);
//   - a copy of the held poll takes its place, and the socket it replaces
//     gets an empty 200 (a 204 would end the client's transport, were it
//     waiting there);
//   - any other copy of a recent poll gets an empty 200: a client waiting
//     on it just polls again.
// A new poll (a key not seen) drops the kept answer: the client has it.
// Clients without keys (the .NET client's URL is the same for every poll)
// get none of this. Two polls of one client in the same millisecond on
// different sockets would be taken for copies: the second would get the
// first's messages again (on the same socket they are told apart).

// pollKey is a poll's key: its `_` query parameter, a number, folded to
// 32 bits (0 if absent or not a number). Keys are compared only with the
// last few polls' of one connection: the fold's collisions (once in 49
// days of milliseconds) do not matter.
func pollKey(rawQuery string) uint32 {
	for q := rawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if v, ok := strings.CutPrefix(kv, "_="); ok {
			k, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0
			}
			return max(uint32(k)^uint32(k>>32), 1)
		}
	}
	return 0
}

// seenLocked reports whether key is one of the latest new polls'.
func (s *httpSink) seenLocked(key uint32) bool {
	for _, k := range s.keys {
		if k == key {
			return true
		}
	}
	return false
}

// forgetSent drops the kept answer. s.mu must be held.
func (s *httpSink) forgetSent() {
	clear(s.sent)
	s.sent, s.sentOn, s.sentKey = nil, nil, 0
}

// newPoll handles a poll on socket sc with key (0: none): answered at once
// when messages wait or the connection is closing, else held. A copy of a
// recent poll is answered as "Polls sent again" says.
func (s *httpSink) newPoll(sc *Conn, cors string, key uint32) {
	srv := sc.srv
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		sc.respondNoConnection(nil, "connection ended")
		return
	}
	copyOfHeld := false
	if key != 0 && s.seenLocked(key) {
		switch {
		case key == s.sentKey && sc != s.sentOn && s.sent != nil:
			srv.M.httpReqs("poll_again", http.StatusOK).Inc()
			writeAnswer(sc, http.StatusOK, cors, s.sent)
			s.mu.Unlock()
			return
		case s.poll != nil && key == s.pollKey:
			copyOfHeld = true
		default:
			srv.M.httpReqs("poll_again", http.StatusOK).Inc()
			writeAnswer(sc, http.StatusOK, cors, nil)
			s.mu.Unlock()
			return
		}
	}
	if old := s.poll; old != nil {
		s.poll = nil
		code := http.StatusNoContent
		if copyOfHeld {
			code = http.StatusOK // empty: nothing is queued while a poll is held
		}
		srv.M.httpReqs("poll", code).Inc()
		s.answerLocked(old, code, s.cors)
	}
	if key != 0 && !copyOfHeld {
		s.keys = [3]uint32{key, s.keys[0], s.keys[1]}
		s.forgetSent()
	}
	s.pollKey = key
	s.polled = true
	s.cors = cors
	switch {
	case len(s.queue) > 0:
		srv.M.httpReqs("poll", http.StatusOK).Inc()
		answered := s.answerLocked(sc, http.StatusOK, cors)
		since := srv.wheel.Now()
		s.since = since
		end := s.closing && answered
		s.mu.Unlock()
		if end {
			s.end(nil)
			return
		}
		srv.wheel.add(s.lc, since+srv.reconnectSec)
		return
	case s.closing:
		s.mu.Unlock()
		srv.M.httpReqs("poll", http.StatusNoContent).Inc()
		sc.respondKeep("", http.StatusNoContent, "", nil, cors)
		s.end(nil)
		return
	}
	sc.state.Store(stHeld)
	sc.buffers().link = s.lc
	s.poll = sc
	since := srv.wheel.Now()
	s.since = since
	s.mu.Unlock()
	srv.wheel.remove(sc)
	srv.wheel.add(s.lc, since+srv.pollSec)
}

// answerLocked answers the poll on sc (the held one or one just read,
// whose key is s.pollKey) with code: 200 carries every queued message, 204
// nothing. It reports whether the socket took the response: if not (it
// closed under the held poll), the messages stay queued for the next
// poll. Once taken, they are kept as the answer to a copy of the poll
// ("Polls sent again"). s.mu must be held.
func (s *httpSink) answerLocked(sc *Conn, code int, cors string) bool {
	var msgs [][]byte
	if code == http.StatusOK {
		msgs = s.queue
	}
	if !writeAnswer(sc, code, cors, msgs) {
		return false
	}
	if len(msgs) == 0 {
		return true
	}
	s.forgetSent()
	if s.pollKey != 0 {
		s.sent, s.sentOn, s.sentKey = msgs, sc, s.pollKey
	} else {
		clear(msgs)
	}
	s.queue, s.qbytes = nil, 0
	return true
}

// writeAnswer writes a poll's answer on sc: code, and with 200 the body,
// msgs (each a shared frame's payload). It reports whether the socket took
// it.
//
// The socket reads requests again (keepAlive) before the response goes
// out: an answer from another goroutine (a delivery) is written at once,
// and the client's next poll on the same socket may follow it before this
// returns; a socket still in stHeld would discard it. That poll waits for
// s.mu, so it is handled after this answer.
func writeAnswer(sc *Conn, code int, cors string, msgs [][]byte) bool {
	n := 0
	ctype := ""
	if code == http.StatusOK {
		for _, m := range msgs {
			n += len(m)
		}
		ctype = "application/octet-stream"
	}
	sc.keepAlive()
	if sc.pc.Send(responseHead(code, ctype, n, cors)) != nil {
		return false
	}
	for _, m := range msgs {
		if sc.pc.Send(m) != nil {
			sc.pc.Close() // a truncated response: the client polls again
			return false
		}
	}
	return true
}

// enqueue queues a message for the next poll, or answers the held one.
func (s *httpSink) enqueue(m []byte) error {
	if m == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closing {
		return poller.ErrClosed
	}
	if s.qbytes+len(m) > s.lc.srv.cfg.HTTPQueueBytes {
		return poller.ErrQueueFull
	}
	s.queue = append(s.queue, m)
	s.qbytes += len(m)
	if sc := s.poll; sc != nil {
		s.poll = nil
		sc.srv.M.httpReqs("poll", http.StatusOK).Inc()
		s.answerLocked(sc, http.StatusOK, s.cors)
		s.since = sc.srv.wheel.Now()
		sc.srv.wheel.add(s.lc, s.since+sc.srv.reconnectSec)
	}
	return nil
}

// shutdownLongPoll queues the final messages: the held poll (or the next)
// gets them, and the connection ends.
func (s *httpSink) shutdownLongPoll(msgs [][]byte) {
	s.mu.Lock()
	if s.ended || s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	for _, m := range msgs {
		s.queue = append(s.queue, m)
		s.qbytes += len(m)
	}
	sc := s.poll
	s.poll = nil
	if sc != nil {
		code := http.StatusNoContent
		if len(s.queue) > 0 {
			code = http.StatusOK
		}
		sc.srv.M.httpReqs("poll", code).Inc()
		if !s.answerLocked(sc, code, s.cors) {
			sc = nil // the socket is gone: the final messages wait for the next poll
		}
	}
	since := s.lc.srv.wheel.Now()
	s.since = since
	s.mu.Unlock()
	if sc != nil {
		s.end(nil)
		return
	}
	s.lc.srv.wheel.add(s.lc, since+s.lc.srv.reconnectSec)
}

// delete ends the connection at the client's DELETE: the held poll gets
// 204.
func (s *httpSink) delete() {
	lc := s.lc
	s.mu.Lock()
	sc := s.poll
	s.poll = nil
	if sc != nil {
		sc.srv.M.httpReqs("poll", http.StatusNoContent).Inc()
		s.answerLocked(sc, http.StatusNoContent, s.cors)
	}
	s.mu.Unlock()
	lc.shutdown(causeClientClose, nil)
	s.end(nil)
}

// socketClosed handles the end of socket sc that held a response of this
// connection: a long poll's is just gone (the client has the reconnect
// window to poll again); an SSE stream's ends the connection.
func (s *httpSink) socketClosed(sc *Conn, err error) {
	if s.stream != nil {
		if s.stream == sc {
			s.end(err)
		}
		return
	}
	s.mu.Lock()
	if s.poll == sc {
		s.poll = nil
		s.since = sc.srv.wheel.Now()
	}
	end := s.closing && s.poll == nil && !s.ended && len(s.queue) == 0
	s.mu.Unlock()
	if end {
		s.end(err)
		return
	}
	s.lc.srv.wheel.add(s.lc, s.lc.srv.wheel.Now()+s.lc.srv.reconnectSec)
}

// longPollTick is a long-polling connection's tick once its handshake is
// done (and while it closes): the held poll's time-out, and the end of a
// client that stopped polling.
func (c *Conn) longPollTick(now int64) int64 {
	s := c.sink()
	srv := c.srv
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return 0
	}
	if sc := s.poll; sc != nil {
		due := s.since + srv.pollSec
		if now < due {
			s.mu.Unlock()
			return due
		}
		s.poll = nil
		srv.M.httpReqs("poll", http.StatusOK).Inc()
		s.answerLocked(sc, http.StatusOK, s.cors) // empty: nothing is queued while a poll is held
		s.since = now
		s.mu.Unlock()
		return now + srv.reconnectSec
	}
	due := s.since + srv.reconnectSec
	closing := s.closing
	s.mu.Unlock()
	if now < due {
		return due
	}
	if !closing {
		c.closeWith(causeTimeout) // no poll for the disconnect time-out: the client is gone
	}
	s.end(nil)
	return 0
}
