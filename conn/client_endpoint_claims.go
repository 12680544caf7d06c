package conn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgeplane/edgeplane/internal/auth"
)

// The Azure SignalR system claims (asrs.s.*) of a client access token
// that mean something on an edgeplane node, as the SDK's negotiate writes
// them (ClaimsUtility.BuildJwtClaims; values are strings, numbers are
// taken too):
//
//   - asrs.s.htt: the transports the client may use, HttpTransportType
//     flags (1 WebSockets, 2 Server-Sent Events, 4 Long Polling).
//     Negotiate lists only those; a WebSocket upgrade the token does not
//     allow gets 404, as ASP.NET Core answers a transport it does not
//     serve.
//   - asrs.s.cht: the SignalR handshake time-out in seconds (1 to 30, as
//     the SDK allows; other values leave the node's).
//   - asrs.s.coae "true" with asrs.s.aeo (unix seconds): close the
//     connection when the user's authentication expires
//     (CloseOnAuthenticationExpiration): a SignalR Close with
//     allowReconnect (the client's accessTokenFactory may get a fresh
//     token), then WebSocket 1000. Without aeo the token's exp is the
//     expiry. A token already past it is refused with 401.
//
// The user id is asrs.s.uid, else nameid, else sub (auth.Claims.UserID).
// The others (sticky server, diagnostic client, detailed errors, long
// polling's ttl, identity types) name things a serverless node does not
// have and are ignored; they reach the upstream with the other claims.
//
// A connection whose token asks for its own handshake time-out or an
// expiry keeps them in Server.policies, keyed by the connection and
// flagged in Conn.flags (flTokenPolicy): the others pay nothing.

// HttpTransportType flags (Microsoft.AspNetCore.Http.Connections).
const (
	transportWebSockets       = 1
	transportServerSentEvents = 2
	transportLongPolling      = 4
)

// transportFlag is the HttpTransportType flag of a negotiate transport
// name (0 for a name it does not know).
func transportFlag(name string) int64 {
	switch name {
	case "WebSockets":
		return transportWebSockets
	case "ServerSentEvents":
		return transportServerSentEvents
	case "LongPolling":
		return transportLongPolling
	}
	return 0
}

// flTokenPolicy marks a connection with an entry in Server.policies.
const flTokenPolicy uint32 = 1 << 30

// flTokenPolicy shares Conn.flags with the others: this fails to compile
// when another flag takes its bit.
var _ = [1]struct{}{}[flTokenPolicy&(flAckDue<<1-1|flCauseMask|flProtoMask|flRelay|flRelayOpen|flRelayBin|flSSE|flLongPoll)]

// Client token claim limits.
const maxHandshakeClaim = 30 // seconds, the SDK's MaxCustomHandshakeTimeout

// tokenPolicy is what a client access token's claims ask of its
// connection.
type tokenPolicy struct {
	transports   int64 // HttpTransportType flags allowed; 0: the claim is absent, any
	handshakeSec int64 // SignalR handshake time-out; 0: the node's
	expires      int64 // unix seconds to close the connection at; 0: never
}

// connPolicy is a connection's entry in Server.policies, in wheel
// seconds.
type connPolicy struct {
	handshakeSec int64 // 0: the node's
	closeAt      int64 // 0: never
}

// tokenPolicyOf reads the claims of a verified client token (nil: the
// node is open, no policy).
func tokenPolicyOf(cl *auth.Claims) (tokenPolicy, error) {
	var p tokenPolicy
	if cl == nil || len(cl.Raw) == 0 {
		return p, nil
	}
	var raw struct {
		HTT  json.RawMessage `json:"asrs.s.htt"`
		CHT  json.RawMessage `json:"asrs.s.cht"`
		COAE json.RawMessage `json:"asrs.s.coae"`
		AEO  json.RawMessage `json:"asrs.s.aeo"`
	}
	if err := json.Unmarshal(cl.Raw, &raw); err != nil {
		return p, fmt.Errorf("%w: claims: %v", ErrUnauthorized, err)
	}
	if raw.HTT != nil {
		v, err := claimInt(raw.HTT)
		if err != nil || v <= 0 || v > transportWebSockets|transportServerSentEvents|transportLongPolling {
			return p, fmt.Errorf("%w: asrs.s.htt %s is not a set of transports (1 WebSockets, 2 ServerSentEvents, 4 LongPolling)", ErrUnauthorized, raw.HTT)
		}
		p.transports = v
	}
	if raw.CHT != nil {
		if v, err := claimInt(raw.CHT); err == nil && v >= 1 && v <= maxHandshakeClaim {
			p.handshakeSec = v
		}
	}
	if raw.COAE != nil {
		s, _ := claimString(raw.COAE)
		if strings.EqualFold(s, "true") {
			switch {
			case raw.AEO != nil:
				v, err := claimInt(raw.AEO)
				if err != nil || v <= 0 {
					return p, fmt.Errorf("%w: asrs.s.aeo %s is not a time (unix seconds)", ErrUnauthorized, raw.AEO)
				}
				p.expires = v
			case cl.Exp != nil:
				p.expires = *cl.Exp
			}
		}
	}
	return p, nil
}

// claimString is a claim's value as a string: a JSON string as it is, a
// number or boolean as its text.
func claimString(v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] != '{' && v[0] != '[' && v[0] != 'n' {
		return string(v), nil
	}
	return "", fmt.Errorf("not a string, number or boolean: %s", v)
}

// claimInt is a claim's value as an integer ("30" or 30).
func claimInt(v json.RawMessage) (int64, error) {
	s, err := claimString(v)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}

// allows reports whether the token lets the client use the transport.
func (p tokenPolicy) allows(flag int64) bool {
	return p.transports == 0 || p.transports&flag != 0
}

// check refuses a token whose authentication has expired already.
func (p tokenPolicy) check(now time.Time) error {
	if p.expires != 0 && now.Unix() >= p.expires {
		return fmt.Errorf("%w: authentication expired at %s (asrs.s.aeo)", ErrUnauthorized, time.Unix(p.expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// negotiateTransports is negotiate's list for a client with policy p.
func (s *Server) negotiateTransports(p tokenPolicy) []transport {
	if p.transports == 0 {
		return s.transports
	}
	out := make([]transport, 0, len(s.transports))
	for _, t := range s.transports {
		if p.allows(transportFlag(t.Transport)) {
			out = append(out, t)
		}
	}
	return out
}

// checkPolicy reads and checks the client token's policy for a new
// connection on transport (tWebSockets, tSSE, tLongPoll); false means the
// request was answered (route: its metric label).
func (c *Conn) checkPolicy(req *http.Request, claims *auth.Claims, transport, route string) (tokenPolicy, bool) {
	p, err := tokenPolicyOf(claims)
	if err == nil {
		err = p.check(time.Now())
	}
	if err != nil {
		c.unauthorized(req, route, err)
		return p, false
	}
	if !p.allows(transportFlag(transport)) {
		c.httpError(req, route, http.StatusNotFound, "the access token does not allow the "+transport+" transport (asrs.s.htt)")
		return p, false
	}
	return p, true
}

// applyPolicy keeps a new connection's handshake time-out and expiry, if
// its token asks for either.
func (c *Conn) applyPolicy(p tokenPolicy) {
	if p.handshakeSec == 0 && p.expires == 0 {
		return
	}
	now := c.srv.wheel.Now()
	var cp connPolicy
	cp.handshakeSec = p.handshakeSec
	if p.expires != 0 {
		cp.closeAt = now + max(1, p.expires-time.Now().Unix())
	}
	c.srv.policies.Store(c, cp)
	c.flags.Or(flTokenPolicy)
	if cp.handshakeSec != 0 && cp.handshakeSec < c.srv.handshakeSec {
		// By the keep-alive interval at the latest, as at the open
		// (server.go), so the first Ping is not late.
		c.srv.wheel.add(c, max(now+1, int64(c.opened)+min(cp.handshakeSec, c.srv.keepAliveSec)))
	}
}

// policy is the connection's entry in Server.policies (zero if none).
func (c *Conn) policy() connPolicy {
	if c.flags.Load()&flTokenPolicy == 0 {
		return connPolicy{}
	}
	v, _ := c.srv.policies.Load(c)
	cp, _ := v.(connPolicy)
	return cp
}

// handshakeSec is the connection's handshake time-out in seconds.
func (c *Conn) handshakeSec() int64 {
	if hs := c.policy().handshakeSec; hs != 0 {
		return hs
	}
	return c.srv.handshakeSec
}

// dropPolicy forgets a finished connection's policy.
func (c *Conn) dropPolicy() {
	if c.flags.And(^flTokenPolicy)&flTokenPolicy != 0 {
		c.srv.policies.Delete(c)
	}
}
