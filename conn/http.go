package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
		c.httpError(nil, "connect", http.StatusBadRequest, "data sent before the WebSocket upgrade completed")
		return len(b), nil
	}
	end := bytes.Index(b, headEnd)
	if end < 0 {
		if len(b) > c.srv.cfg.MaxHeaderBytes {
			c.httpError(nil, "", http.StatusRequestHeaderFieldsTooLarge, "request header too large")
			return len(b), nil
		}
		return 0, nil
	}
	end += len(headEnd)
	if end > c.srv.cfg.MaxHeaderBytes {
		c.httpError(nil, "", http.StatusRequestHeaderFieldsTooLarge, "request header too large")
		return len(b), nil
	}
	head := b[:end]
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		c.httpError(nil, "", http.StatusBadRequest, "malformed HTTP request: "+err.Error())
		return len(b), nil
	}
	if len(req.TransferEncoding) > 0 {
		c.httpError(req, "", http.StatusLengthRequired, "chunked request bodies are not supported")
		return len(b), nil
	}
	if req.ContentLength > c.bodyLimit(req) {
		c.httpError(req, "", http.StatusRequestEntityTooLarge, "request body too large")
		return len(b), nil
	}
	total := end
	if req.ContentLength > 0 {
		total += int(req.ContentLength)
		if len(b) < total {
			return 0, nil // wait for the body
		}
	}
	if req.ContentLength > 0 {
		req.Body = io.NopCloser(bytes.NewReader(b[end:total])) // valid during this call only
	}
	c.route(req, head)
	return total, nil
}

// route dispatches a complete request.
func (c *Conn) route(req *http.Request, head []byte) {
	hubName, isNegotiate, found := c.srv.paths.route(req.URL.Path) // paths.go
	if !originAllowed(c.srv.cfg.AllowedOrigins, req.Header.Get("Origin")) {
		c.srv.M.Rejected("origin")
		c.httpError(nil, "origin", http.StatusForbidden, "origin not allowed by --allowed-origins")
		return
	}
	if c.srv.draining.Load() && !(found && !isNegotiate && !isWebSocketUpgrade(req) && req.URL.Query().Has("id")) {
		// (The polls and sends of connections being drained go on, so
		// that they get their Close message.)
		c.srv.M.httpReqs("draining", http.StatusServiceUnavailable).Inc()
		c.shutdown(causeShutdown, serviceUnavailable(jitteredRetryAfter(c.srv.cfg.RetryAfter), "edgeplane: server is restarting, retry later", c.corsHeaders(req, false)))
		return
	}
	if c.srv.cfg.Service != nil {
		kind, rest, _ := strings.Cut(strings.Trim(req.URL.Path, "/"), "/")
		if kind == "client" || kind == "server" {
			c.serviceRoute(req, head, kind, rest)
			return
		}
	} else if c.clientEndpoint(req, head) { // client_endpoint.go
		return
	}
	switch {
	case !found && strings.HasSuffix(strings.ToLower(strings.TrimRight(req.URL.Path, "/")), "/negotiate"):
		c.httpError(req, "negotiate", http.StatusNotFound, "unknown hub")
	case isNegotiate:
		switch req.Method {
		case http.MethodPost:
			if !c.admitRate(req) {
				return
			}
			c.negotiate(req, hubName)
		case http.MethodOptions:
			c.respond("negotiate", http.StatusNoContent, "", nil, c.corsHeaders(req, true))
		default:
			c.httpError(req, "negotiate", http.StatusMethodNotAllowed, "negotiate takes POST")
		}
	case found:
		c.upgrade(req, head, hubName)
	default:
		c.httpError(req, "other", http.StatusNotFound, "unknown hub or path")
	}
}

// authenticate checks the client's access token when an access key is
// configured: signed with the key, with exp, and for this hub's client
// endpoint (a REST token is refused). It returns the token's claims, nil
// when the node is open.
func (c *Conn) authenticate(req *http.Request, hub string) (*auth.Claims, error) {
	key := c.srv.cfg.AccessKey
	if key == "" {
		return nil, nil
	}
	tok := auth.FromRequest(req.Header.Get("Authorization"), req.URL.Query().Get("access_token"))
	if tok == "" {
		return nil, errNoAccessToken
	}
	cl, err := auth.Verify(tok, []byte(key), time.Now())
	if err == nil {
		err = cl.CheckClient(req.Host, hub)
		if p := strings.Trim(c.srv.paths.byName[hub], "/"); err != nil && !strings.EqualFold(p, hub) && cl.CheckClient(req.Host, p) == nil {
			err = nil // the audience is the hub's own path (--hub chat=/hubs/chat: https://edge/hubs/chat)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return cl, nil
}

var errNoAccessToken = fmt.Errorf("%w: no access token (access_token query or Authorization: Bearer)", ErrUnauthorized)

// unauthorized answers 401 as ASP.NET Core's JWT bearer handler does.
func (c *Conn) unauthorized(req *http.Request, route string, err error) {
	c.srv.M.Rejected("unauthorized")
	challenge := "WWW-Authenticate: Bearer\r\n"
	if !errors.Is(err, errNoAccessToken) {
		challenge = "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"
	}
	c.respond(route, http.StatusUnauthorized, "", nil, challenge+errorHeader(err.Error())+c.corsHeaders(req, false))
}

type transport struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

// negotiateVersion is the negotiate protocol version the client asked
// for, as ASP.NET Core reads it: the negotiateVersion query parameter
// (name case-insensitive), 0 when absent, capped at 1 (ours); a value
// that is not an integer, or is negative, is the error text to answer
// with.
func negotiateVersion(q url.Values) (int, string) {
	var raw []string
	for k, v := range q {
		if strings.EqualFold(k, "negotiateVersion") {
			raw = v
			break
		}
	}
	if len(raw) == 0 {
		return 0, ""
	}
	v, err := strconv.Atoi(strings.TrimSpace(strings.Join(raw, ",")))
	switch {
	case err != nil:
		return 0, "The client requested a non-integer protocol version."
	case v < 0:
		return 0, fmt.Sprintf("The client requested version '%d', but the server does not support this version.", v)
	}
	return min(v, 1), ""
}

func (c *Conn) negotiate(req *http.Request, hubName string) {
	claims, err := c.authenticate(req, hubName)
	var policy tokenPolicy
	if err == nil {
		if policy, err = tokenPolicyOf(claims); err == nil { // client_endpoint_claims.go
			err = policy.check(time.Now())
		}
	}
	if err != nil {
		c.unauthorized(req, "negotiate", err)
		return
	}
	version, verr := negotiateVersion(req.URL.Query())
	if verr != "" {
		// 200 with the error, as ASP.NET Core answers: the clients
		// report it.
		body, _ := json.Marshal(struct {
			Error string `json:"error"`
		}{verr})
		c.respond("negotiate", http.StatusOK, "application/json", body, errorHeader(verr)+c.corsHeaders(req, false))
		return
	}
	id := newConnID()
	// Stateful reconnect only when the client asks (the official clients
	// fail a connection whose server grants it unasked) and it is offered.
	// Not for clients relayed to an app server (service mode): the
	// app's connection has no window to keep them in.
	relayed := c.srv.cfg.Service != nil && strings.HasPrefix(strings.Trim(req.URL.Path, "/"), "client/")
	stateful := !c.srv.cfg.DisableStatefulReconnect && !relayed && wantsStatefulReconnect(req)
	var flags uint8
	if stateful {
		flags = tokStateful
	}
	token := c.srv.signer.issueFlags(hubName, id, time.Now(), flags)
	var body []byte
	if version >= 1 {
		body, _ = json.Marshal(struct {
			NegotiateVersion     int         `json:"negotiateVersion"`
			ConnectionID         string      `json:"connectionId"`
			ConnectionToken      string      `json:"connectionToken"`
			AvailableTransports  []transport `json:"availableTransports"`
			UseStatefulReconnect bool        `json:"useStatefulReconnect,omitempty"`
		}{1, encodeID(id), token, c.srv.negotiateTransports(policy), stateful})
	} else {
		// Version 0: there is no separate token; the client connects
		// with connectionId as its id, so connectionId is the token.
		body, _ = json.Marshal(struct {
			NegotiateVersion     int         `json:"negotiateVersion"`
			ConnectionID         string      `json:"connectionId"`
			AvailableTransports  []transport `json:"availableTransports"`
			UseStatefulReconnect bool        `json:"useStatefulReconnect,omitempty"`
		}{0, token, c.srv.negotiateTransports(policy), stateful})
	}
	c.respond("negotiate", http.StatusOK, "application/json", body, c.corsHeaders(req, false))
}

// wantsStatefulReconnect reports whether negotiate asks for stateful
// reconnect: useStatefulReconnect=true, the key in any case as ASP.NET
// Core's query lookup matches it.
func wantsStatefulReconnect(req *http.Request) bool {
	for k, v := range req.URL.Query() {
		if strings.EqualFold(k, "useStatefulReconnect") && len(v) > 0 && strings.EqualFold(strings.TrimSpace(v[0]), "true") {
			return true
		}
	}
	return false
}

func (c *Conn) upgrade(req *http.Request, head []byte, hubName string) {
	if !isWebSocketUpgrade(req) {
		c.httpTransport(req, hubName) // SSE, Long Polling, their POST (httptransport.go)
		return
	}
	if !c.srv.served.has(tWebSockets) {
		c.httpError(req, "connect", http.StatusNotFound, "WebSockets transport is not served here (--transports)")
		return
	}
	claims, err := c.authenticate(req, hubName)
	if err != nil {
		c.unauthorized(req, "connect", err)
		return
	}
	policy, ok := c.checkPolicy(req, claims, tWebSockets, "connect") // client_endpoint_claims.go
	if !ok {
		return
	}
	h := c.srv.router.Hub(hubName)
	var id [idLen]byte
	var exp time.Time
	var owner *Conn // the connection a stateful reconnect resumes (resume.go)
	var stateful bool
	if tok := req.URL.Query().Get("id"); tok != "" {
		ti, err := c.srv.signer.open(hubName, tok, time.Now())
		id, exp, stateful = ti.id, ti.exp, ti.flags&tokStateful != 0
		if stateful && (err == nil || errors.Is(err, ErrTokenExpired)) {
			// The client comes back with its token, however old: the
			// connection it names, kept here, is the authority.
			if owner = resumable(h, id); owner != nil {
				err = nil
			}
		}
		if err != nil {
			// ASP.NET Core's answer, body included.
			c.respond("connect", http.StatusNotFound, "text/plain", []byte("No Connection with that ID"), errorHeader(err.Error()))
			return
		}
		if owner != nil {
			if claims != nil && claims.UserID() != owner.entry.User() {
				c.httpError(req, "connect", http.StatusForbidden, "the access token's user is not the connection's")
				return
			}
		} else if h.Lookup(b64.EncodeToString(id[:])) || c.srv.wasUsed(id) {
			// Live ids are in the registry; ids that disconnected within
			// their token's lifetime are in the used set. (Two upgrades
			// racing with one token: the second fails to register,
			// duplicate_id.)
			c.httpError(req, "connect", http.StatusConflict, ErrTokenReused.Error())
			return
		}
	} else {
		if !c.admitRate(req) {
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
		// Our own answer rather than gobwas's (which has the error as its
		// body): empty body, detail in ErrorHeader.
		code := http.StatusBadRequest
		var rej interface{ StatusCode() int }
		if errors.As(err, &rej) {
			code = rej.StatusCode()
		}
		extra := c.corsHeaders(req, false)
		if code == http.StatusUpgradeRequired {
			extra += "Sec-WebSocket-Version: 13\r\n" // RFC 6455 4.4
		}
		c.respond("connect", code, "", nil, errorHeader("WebSocket upgrade failed: "+err.Error())+extra)
		return
	}
	if owner != nil {
		c.resume(owner, out.Bytes()) // resume.go: no handshake; Sequence, replay
		return
	}
	if stateful {
		c.flags.Or(flStateful) // until a handshake below version 2 clears it
	}
	c.applyPolicy(policy)
	b64.Encode(c.idBuf[:], id[:])
	var user string
	if claims != nil {
		user = claims.UserID()
	}
	c.entry.Init(c, unsafe.String(&c.idBuf[0], len(c.idBuf)), user)
	c.hub = h
	switch {
	case c.has(flRelay):
		// The app server needs the claims (the user id) whatever
		// --upstream-context-bytes says (service.go).
		c.buffers().connect = c.connectContext(req, claims, max(c.srv.cfg.ContextMaxBytes, relayContextBytes))
	case c.srv.cfg.Upstream != nil && c.srv.cfg.ContextMaxBytes > 0:
		// Kept only until the connected event is sent (register). Built
		// here, on the connection's own goroutine, before a fleet-wide
		// claim may hand the 101 to the claim goroutine.
		c.buffers().connect = c.connectContext(req, claims, c.srv.cfg.ContextMaxBytes)
	}
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
func (c *Conn) admitRate(req *http.Request) bool {
	if c.srv.accept.allow(time.Now()) {
		return true
	}
	c.srv.M.Rejected("accept_rate")
	c.srv.M.httpReqs("accept_rate", http.StatusServiceUnavailable).Inc()
	c.shutdown(causeHTTPError, serviceUnavailable(jitteredRetryAfter(c.srv.cfg.RetryAfter), "edgeplane: too many new connections, retry later", c.corsHeaders(req, false)))
	return false
}

// corsHeaders are the CORS response headers for a browser request: only
// an Origin that --allowed-origins names (a pattern or "*" included) is
// reflected, with credentials, as ASP.NET Core's CORS policy does with
// WithOrigins(...).AllowCredentials(). Without --allowed-origins nothing
// is reflected: a page of another origin cannot read negotiate with the
// user's credentials (same-origin pages need no CORS).
func (c *Conn) corsHeaders(req *http.Request, preflight bool) string {
	if req == nil || len(c.srv.cfg.AllowedOrigins) == 0 {
		return ""
	}
	origin := req.Header.Get("Origin")
	if origin == "" || !originAllowed(c.srv.cfg.AllowedOrigins, origin) {
		return ""
	}
	h := "Access-Control-Allow-Origin: " + origin + "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
	if preflight {
		h += "Access-Control-Allow-Methods: POST, GET, DELETE, OPTIONS\r\nAccess-Control-Allow-Headers: " +
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
	b.WriteString(reasonPhrase(code))
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

// httpError answers an error as ASP.NET Core does: the status with its
// standard reason phrase and an empty body. The SignalR clients show a
// non-empty body as the error message in place of the status text, so
// the client reports "Unauthorized: Status code '401'" as it does against
// ASP.NET. The detail, for operators, is in the X-Edgeplane-Error header,
// which no client shows. req (nil if not parsed) gives the CORS headers a
// browser needs to read the status at all.
func (c *Conn) httpError(req *http.Request, route string, code int, detail string) {
	if route == "" {
		route = "malformed"
	}
	c.respond(route, code, "", nil, errorHeader(detail)+c.corsHeaders(req, false))
}

// reasonPhrase is the status text ASP.NET Core (Kestrel) sends, which the
// clients surface: Go's own differs for 413.
func reasonPhrase(code int) string {
	if code == http.StatusRequestEntityTooLarge {
		return "Payload Too Large"
	}
	return http.StatusText(code)
}

// ErrorHeader is the response header carrying an error's detail for
// operators (curl -i, proxy logs); clients never show it.
const ErrorHeader = "X-Edgeplane-Error"

// maxErrorDetail bounds the detail echoed in ErrorHeader.
const maxErrorDetail = 256

// errorHeader is the ErrorHeader line for detail: printable ASCII only,
// bounded (the detail may quote what the client sent).
func errorHeader(detail string) string {
	if detail == "" {
		return ""
	}
	if len(detail) > maxErrorDetail {
		detail = detail[:maxErrorDetail]
	}
	b := []byte(detail)
	for i, ch := range b {
		if ch < 0x20 || ch > 0x7e {
			b[i] = '?'
		}
	}
	return ErrorHeader + ": " + string(b) + "\r\n"
}
