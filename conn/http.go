package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/edgeplane/edgeplane/internal/auth"
)

var headEnd = []byte("\r\n\r\n")

// handleHTTP processes one HTTP request at the start of b (negotiate or
// WebSocket upgrade). It returns 0 while the request is incomplete.
func (c *Conn) handleHTTP(b []byte) (int, error) {
	if c.has(flClaiming) {
		// RFC 6455 4.1: a client sends nothing after its upgrade request
		// until the 101.
		c.httpError("connect", http.StatusBadRequest, "data sent before the WebSocket upgrade completed")
		return len(b), nil
	}
	end := bytes.Index(b, headEnd)
	if end < 0 {
		if len(b) > c.srv.cfg.MaxHeaderBytes {
			c.httpError("", http.StatusRequestHeaderFieldsTooLarge, "request header too large")
			return len(b), nil
		}
		return 0, nil
	}
	end += len(headEnd)
	if end > c.srv.cfg.MaxHeaderBytes {
		c.httpError("", http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		return len(b), nil
	}
	head := b[:end]
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		c.httpError("", http.StatusBadRequest, "malformed HTTP request: "+err.Error())
		return len(b), nil
	}
	if len(req.TransferEncoding) > 0 {
		c.httpError("", http.StatusLengthRequired, "chunked request bodies are not supported")
		return len(b), nil
	}
	if req.ContentLength > maxBodyBytes {
		c.httpError("", http.StatusRequestEntityTooLarge, "request body too large")
		return len(b), nil
	}
	total := end
	if req.ContentLength > 0 {
		total += int(req.ContentLength)
		if len(b) < total {
			return 0, nil // wait for the body
		}
	}
	c.route(req, head)
	return total, nil
}

// route dispatches a complete request.
func (c *Conn) route(req *http.Request, head []byte) {
	path := strings.Trim(req.URL.Path, "/")
	hubName, rest, _ := strings.Cut(path, "/")
	h := c.srv.router.Hub(hubName)
	if !originAllowed(c.srv.cfg.AllowedOrigins, req.Header.Get("Origin")) {
		c.srv.M.Rejected("origin")
		c.httpError("origin", http.StatusForbidden, "origin not allowed")
		return
	}
	if c.srv.draining.Load() {
		c.srv.M.httpReqs("draining", http.StatusServiceUnavailable).Inc()
		c.shutdown(causeShutdown, serviceUnavailable(jitteredRetryAfter(c.srv.cfg.RetryAfter), "edgeplane: server is restarting, retry later"))
		return
	}
	switch {
	case rest == "negotiate":
		if h == nil {
			c.httpError("negotiate", http.StatusNotFound, "unknown hub")
			return
		}
		switch req.Method {
		case http.MethodPost:
			if !c.admitRate() {
				return
			}
			c.negotiate(req, hubName)
		case http.MethodOptions:
			c.respond("negotiate", http.StatusNoContent, "", nil, corsHeaders(req, true))
		default:
			c.httpError("negotiate", http.StatusMethodNotAllowed, "use POST")
		}
	case rest == "" && h != nil:
		c.upgrade(req, head, hubName)
	default:
		c.httpError("other", http.StatusNotFound, "unknown hub or path")
	}
}

// authenticate checks the access token when an access key is configured
// and returns the user id.
func (c *Conn) authenticate(req *http.Request) (string, bool) {
	tok := auth.FromRequest(req.Header.Get("Authorization"), req.URL.Query().Get("access_token"))
	key := c.srv.cfg.AccessKey
	if key == "" {
		return "", true
	}
	if tok == "" {
		return "", false
	}
	cl, err := auth.Verify(tok, []byte(key), time.Now())
	if err != nil {
		return "", false
	}
	return cl.UserID(), true
}

type transport struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

var wsOnly = []transport{{"WebSockets", []string{"Text", "Binary"}}}

func (c *Conn) negotiate(req *http.Request, hubName string) {
	if _, ok := c.authenticate(req); !ok {
		c.srv.M.Rejected("unauthorized")
		c.httpError("negotiate", http.StatusUnauthorized, ErrUnauthorized.Error())
		return
	}
	id := newConnID()
	token := c.srv.signer.issue(hubName, id, time.Now())
	var body []byte
	if v, _ := strconv.Atoi(req.URL.Query().Get("negotiateVersion")); v >= 1 {
		body, _ = json.Marshal(struct {
			NegotiateVersion    int         `json:"negotiateVersion"`
			ConnectionID        string      `json:"connectionId"`
			ConnectionToken     string      `json:"connectionToken"`
			AvailableTransports []transport `json:"availableTransports"`
		}{1, encodeID(id), token, wsOnly})
	} else {
		// Version 0: the client connects with connectionId as its id.
		body, _ = json.Marshal(struct {
			ConnectionID        string      `json:"connectionId"`
			AvailableTransports []transport `json:"availableTransports"`
		}{token, wsOnly})
	}
	c.respond("negotiate", http.StatusOK, "application/json", body, corsHeaders(req, false))
}

func (c *Conn) upgrade(req *http.Request, head []byte, hubName string) {
	if req.Method != http.MethodGet || !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		c.httpError("connect", http.StatusBadRequest, "WebSocket upgrade required (only the WebSockets transport is supported)")
		return
	}
	user, ok := c.authenticate(req)
	if !ok {
		c.srv.M.Rejected("unauthorized")
		c.httpError("connect", http.StatusUnauthorized, ErrUnauthorized.Error())
		return
	}
	h := c.srv.router.Hub(hubName)
	var id [idLen]byte
	var exp time.Time
	if tok := req.URL.Query().Get("id"); tok != "" {
		var err error
		id, exp, err = c.srv.signer.verify(hubName, tok, time.Now())
		if err != nil {
			c.httpError("connect", http.StatusNotFound, "No Connection with that ID: "+err.Error())
			return
		}
		// Live ids are in the registry; ids that disconnected within their
		// token's lifetime are in the used set. (Two upgrades racing with
		// one token: the second fails to register, duplicate_id.)
		if h.Lookup(b64.EncodeToString(id[:])) || c.srv.wasUsed(id) {
			c.httpError("connect", http.StatusConflict, ErrTokenReused.Error())
			return
		}
	} else {
		if !c.admitRate() {
			return
		}
		id = newConnID() // skipNegotiation
	}
	var out bytes.Buffer
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), &out}
	if _, err := (&ws.Upgrader{}).Upgrade(rw); err != nil {
		code := http.StatusBadRequest
		var rej interface{ StatusCode() int }
		if errors.As(err, &rej) {
			code = rej.StatusCode()
		}
		c.srv.M.httpReqs("connect", code).Inc()
		if out.Len() == 0 {
			c.httpError("connect", code, "WebSocket upgrade failed: "+err.Error())
			return
		}
		c.shutdown(causeHTTPError, out.Bytes())
		return
	}
	b64.Encode(c.idBuf[:], id[:])
	c.entry.Init(c, unsafe.String(&c.idBuf[0], len(c.idBuf)), user)
	c.hub = h
	if !exp.IsZero() {
		c.tokenExp = int32(exp.Unix() - c.srv.epoch)
		if cl := c.srv.claims; cl != nil {
			// Fleet-wide reuse check (token.go): the claim goroutine
			// answers 101 or 409.
			cl.claim(c, hubName, c.entry.ID(), exp, out.Bytes())
			return
		}
	}
	c.finishUpgrade(out.Bytes())
}

// finishUpgrade answers 101 and waits for the SignalR handshake.
func (c *Conn) finishUpgrade(resp []byte) {
	if !c.state.CompareAndSwap(stHTTP, stHandshake) {
		return // closed meanwhile (handshake deadline, bytes before the 101)
	}
	c.srv.M.httpReqs("connect", http.StatusSwitchingProtocols).Inc()
	c.send(resp)
}

// admitRate applies the accept-rate limit to a new SignalR connection
// (negotiate, or skipNegotiation upgrade); false means it was answered 503.
func (c *Conn) admitRate() bool {
	if c.srv.accept.allow(time.Now()) {
		return true
	}
	c.srv.M.Rejected("accept_rate")
	c.srv.M.httpReqs("accept_rate", http.StatusServiceUnavailable).Inc()
	c.shutdown(causeHTTPError, serviceUnavailable(jitteredRetryAfter(c.srv.cfg.RetryAfter), "edgeplane: too many new connections, retry later"))
	return false
}

func corsHeaders(req *http.Request, preflight bool) string {
	origin := req.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	h := "Access-Control-Allow-Origin: " + origin + "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
	if preflight {
		h += "Access-Control-Allow-Methods: POST, GET, OPTIONS\r\nAccess-Control-Allow-Headers: " +
			req.Header.Get("Access-Control-Request-Headers") + "\r\nAccess-Control-Max-Age: 600\r\n"
	}
	return h
}

// respond writes a complete response and closes the connection after it
// (no HTTP keep-alive on the client port).
func (c *Conn) respond(route string, code int, ctype string, body []byte, extra string) {
	c.srv.M.httpReqs(route, code).Inc()
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(code))
	b.WriteString("\r\n")
	if ctype != "" {
		b.WriteString("Content-Type: " + ctype + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n")
	b.WriteString(extra)
	b.WriteString("\r\n")
	b.Write(body)
	k := causeHTTPDone
	if code >= 400 {
		k = causeHTTPError
	}
	c.shutdown(k, b.Bytes())
}

func (c *Conn) httpError(route string, code int, msg string) {
	if route == "" {
		route = "malformed"
	}
	c.respond(route, code, "text/plain; charset=utf-8", []byte(msg+"\n"), "")
}
