package conn

import (
	"io"
	"net/http"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// The HTTP POST of the SSE and Long Polling transports: the body is one
// message from the client (the handshake in the first), handed to the
// SignalR layer as a WebSocket message would be, with the same limits:
// --max-message-bytes (413, and the connection closes as for 1009),
// --max-message-rate, UTF-8 for JSON. 200 once processed; 409 while
// another POST of the connection is processed (the connection stays);
// 404 for an unknown or ended connection.

func (c *Conn) post(req *http.Request, lc *Conn) {
	s := lc.sink()
	if !s.posting.CompareAndSwap(false, true) {
		c.httpError(req, "send", http.StatusConflict, "another send request of this connection is in progress")
		return
	}
	defer s.posting.Store(false)
	if st := lc.state.Load(); st == stClosed {
		c.respondNoConnection(req, "connection ended")
		return
	}
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body) // the bytes read with the head: no I/O
	}
	if len(body) > c.srv.cfg.MaxMessageBytes {
		lc.fail(wsframe.ErrTooBig)
		c.httpError(req, "send", http.StatusRequestEntityTooLarge, "message larger than --max-message-bytes")
		return
	}
	if lc.state.Load() == stHandshake && lc.has(flSSE) {
		if h, _, err := hubproto.ParseHandshake(body); err == nil && h.Protocol.Binary() {
			lc.handshakeFailed("Cannot use the '" + h.Protocol.Name() + "' protocol on the current transport. The transport does not support the 'Binary' transfer format.")
			c.respondKeep("send", http.StatusOK, "text/plain", nil, c.corsHeaders(req, false))
			return
		}
	}
	if err := lc.onMessage(postOp, body); err != nil {
		lc.fail(err)
	}
	c.respondKeep("send", http.StatusOK, "text/plain", nil, c.corsHeaders(req, false))
}

// bodyLimit bounds a request's body: a POST of the HTTP transports (on a
// hub's path) carries a client message, bounded by --max-message-bytes;
// anything else (negotiate) by maxBodyBytes.
func (c *Conn) bodyLimit(req *http.Request) int64 {
	if req.Method == http.MethodPost {
		if _, isNegotiate, found := c.srv.paths.route(req.URL.Path); found && !isNegotiate {
			return int64(c.srv.cfg.MaxMessageBytes)
		}
	}
	return maxBodyBytes
}
