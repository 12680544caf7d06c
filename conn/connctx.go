package conn

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/auth"
)

// The connect request's context for the upstream's connected event
// (backplane.ConnectContext). It is built at the upgrade, only when an
// upstream is configured, kept in the connection's pooled buffers until
// the SignalR handshake completes and the event is sent, and never held
// by an established connection.

// contextDropHeaders are left out of the context: credentials, and the
// WebSocket handshake's own headers (the app did not send them).
var contextDropHeaders = []string{
	"Authorization", "Proxy-Authorization",
	"Connection", "Upgrade",
	"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Protocol",
}

// connectContext builds the context of an upgrade request within budget
// bytes (counted as the JSON it becomes, roughly): the remote address
// always, then the query string, the claims and the headers, by name, as
// long as they fit. req.Header is taken over (the request is not used
// afterwards).
func (c *Conn) connectContext(req *http.Request, claims *auth.Claims, budget int) *backplane.ConnectContext {
	cc := &backplane.ConnectContext{RemoteAddr: c.pc.RemoteAddr().String()}
	budget -= len(cc.RemoteAddr)
	if q := stripCredentials(req.URL.RawQuery); q != "" {
		if len(q) <= budget {
			cc.Query = q
			budget -= len(q)
		} else {
			cc.Truncated = true
		}
	}
	if claims != nil && len(claims.Raw) > 0 {
		if len(claims.Raw) <= budget {
			cc.Claims = claims.Raw
			budget -= len(claims.Raw)
		} else {
			cc.Truncated = true
		}
	}
	h := req.Header
	for _, k := range contextDropHeaders {
		delete(h, k)
	}
	if !c.srv.cfg.ContextCookies {
		delete(h, "Cookie")
	}
	if req.Host != "" {
		h["Host"] = []string{req.Host}
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	budget -= 2 // {}
	for _, k := range names {
		size := len(k) + 6 // "k":[],
		for _, v := range h[k] {
			size += len(v) + 3 // "v",
		}
		if size > budget {
			delete(h, k)
			cc.Truncated = true
			continue
		}
		budget -= size
	}
	if len(h) > 0 {
		cc.Headers = h
	}
	return cc
}

// takeConnectContext hands over the connect request's context kept since
// the upgrade (nil if none) and lets the buffers go.
func (c *Conn) takeConnectContext() *backplane.ConnectContext {
	if c.bufs == nil {
		return nil
	}
	cc := c.bufs.connect
	c.bufs.connect = nil
	c.releaseBufs()
	return cc
}

// stripCredentials removes the access_token and id (connection token)
// parameters from a raw query string, keeping the rest as sent. Names are
// compared as ASP.NET Core does, ignoring case.
func stripCredentials(raw string) string {
	if raw == "" {
		return ""
	}
	var b strings.Builder
	for part := range strings.SplitSeq(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if part == "" || strings.EqualFold(name, "access_token") || strings.EqualFold(name, "id") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
	}
	return b.String()
}
