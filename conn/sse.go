package conn

import (
	"errors"
	"net/http"

	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/sse"
	"github.com/edgeplane/edgeplane/poller"
)

// Server-Sent Events (httptransport.go has the shape). The GET that
// creates the connection is answered 200 text/event-stream, with no
// caching and no Content-Length (the stream ends with the socket), then
// a comment line; from then on every message is an unnamed event on that
// socket: a broadcast's event is built once per message
// (fanout.Frames.SSE) and the same bytes queued to every SSE recipient.
// The stream's socket closing ends the connection. Text (JSON) only.

// sseHeaders are the stream's headers, as ASP.NET Core sends them.
const sseHeaders = "Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\nContent-Encoding: identity\r\nConnection: close\r\n"

// ssePing is the JSON keep-alive Ping as an event.
var ssePing = sse.AppendEvent(nil, hubproto.JSON.Ping())

// openSSE answers the GET that opened an SSE connection: the response
// stays open on socket c.
func (c *Conn) openSSE(req *http.Request, lc *Conn) {
	c.srv.M.httpReqs("sse", http.StatusOK).Inc()
	c.state.Store(stHeld)
	c.buffers().link = lc
	c.srv.wheel.remove(c)
	c.pc.Send(responseHead(http.StatusOK, "text/event-stream", -1, sseHeaders+c.corsHeaders(req, false)))
	c.pc.Send(sse.Preamble)
}

// sendSSE writes a message the connection layer wrote itself as an event.
func (s *httpSink) sendSSE(m []byte) error {
	if m == nil {
		return nil
	}
	ev := ssePing
	if !isPing(m) {
		ev = sse.AppendEvent(make([]byte, 0, len(m)+16), m)
	}
	return s.stream.pc.Send(ev)
}

func isPing(m []byte) bool { return hubproto.JSON.IsPing(trimRS(m)) }

func trimRS(m []byte) []byte {
	if n := len(m); n > 0 && m[n-1] == hubproto.RecordSeparator {
		return m[:n-1]
	}
	return m
}

// shutdownSSE writes the final messages and closes the stream; its
// socket's end ends the connection.
func (s *httpSink) shutdownSSE(msgs [][]byte) {
	var final []byte
	for _, m := range msgs {
		final = sse.AppendEvent(final, m)
	}
	s.stream.pc.Shutdown(final)
}

// deliverHTTP is Deliver for a connection on an HTTP transport: SSE gets
// the message's event, shared with every SSE recipient; long polling its
// records in the connection's protocol (the frame's payload, shared),
// queued for the next poll.
func (c *Conn) deliverHTTP(f *fanout.Frames) int {
	var err error
	var n int
	if c.has(flSSE) {
		ev := f.SSE()
		if ev == nil {
			return 0
		}
		n = len(ev)
		err = c.sink().stream.pc.Send(ev)
	} else {
		frame := f.Frame(c.proto())
		if frame == nil {
			return 0
		}
		n = len(frame)
		err = c.sink().enqueue(payload(frame))
	}
	switch {
	case err == nil:
		c.touchWrite()
	case errors.Is(err, poller.ErrQueueFull):
		c.slow()
	}
	return n
}
