package conn

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Connection tokens are self-validating, so that any node of a fleet
// sharing the key accepts the WebSocket that follows a negotiate on another
// node (no sticky sessions):
//
//	token = base64url( connID[16] | expiry[8, unix seconds] | HMAC-SHA256(key, hub | connID | expiry)[:16] )
//
// or, for a connection that negotiated stateful reconnect (resume.go),
// one byte of flags more, signed with the rest:
//
//	token = base64url( connID[16] | expiry[8] | flags[1] | HMAC-SHA256(key, hub | connID | expiry | flags)[:16] )
//
// (54 or 55 characters: a node that does not know the flags answers 404
// to the longer token, which clients take as any failed connect). The
// connection id given to the client and used for targeting is
// base64url(connID).
//
// A token connects once on the whole fleet. Locally, a live id is in the
// hub's registry and a departed one in the Server's used set until its
// token expires. Fleet-wide, with a Config.TokenClaims (the Redis
// backplane), the upgrade claims the id (SET NX, until the token expires)
// before it answers: the first claim gets 101, every later one 409. The
// claim is asynchronous: the event loop hands it to one goroutine that
// writes the claims waiting in one pipeline, and the answer is sent from
// there. When the claim cannot be made (Redis down, or slower than
// claimTimeout), the upgrade goes ahead unchecked (fail open, counted as
// edgeplane_token_claims_total{result="unchecked"}): a Redis outage must
// not turn into a connection outage; the local checks still hold, and the
// window is bounded by the token's lifetime.

const (
	idLen    = 16
	macLen   = 16
	tokenLen = idLen + 8 + macLen
	// flaggedLen is the length of a token with a flags byte.
	flaggedLen = tokenLen + 1
)

// Token flags.
const (
	// tokStateful: the connection negotiated stateful reconnect.
	tokStateful uint8 = 1 << iota
)

// Strict: a token has exactly one encoding (no malleable trailing bits).
var b64 = base64.RawURLEncoding.Strict()

// tokenSigner signs and checks connection tokens. key is the key it was
// built with; setKey replaces it (a key the fleet agreed on), and tokens
// signed with the key before are still accepted for one token lifetime.
type tokenSigner struct {
	key     []byte
	ttl     time.Duration
	adopted atomic.Pointer[adoptedKey]
}

// adoptedKey is a key set after the signer was built, and the one it
// replaced.
type adoptedKey struct {
	key, prev []byte
	prevUntil time.Time
}

// keys returns the signing key and, while it is still accepted, the one
// before it.
func (s *tokenSigner) keys(now time.Time) (cur, prev []byte) {
	a := s.adopted.Load()
	if a == nil {
		return s.key, nil
	}
	if now.Before(a.prevUntil) {
		return a.key, a.prev
	}
	return a.key, nil
}

// setKey makes key the signing key from now on; it reports whether it
// changed. Tokens signed with the previous key stay valid until they
// expire.
func (s *tokenSigner) setKey(key []byte, now time.Time) bool {
	cur, _ := s.keys(now)
	if hmac.Equal(cur, key) {
		return false
	}
	s.adopted.Store(&adoptedKey{key: key, prev: cur, prevUntil: now.Add(s.ttl + time.Second)})
	return true
}

// newConnID returns a fresh random connection id (raw bytes).
func newConnID() [idLen]byte {
	var id [idLen]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return id
}

func encodeID(id [idLen]byte) string { return b64.EncodeToString(id[:]) }

func mac(key []byte, hub string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(hub))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:macLen]
}

// issue returns the token for a new connection id on hub.
func (s *tokenSigner) issue(hub string, id [idLen]byte, now time.Time) string {
	return s.issueFlags(hub, id, now, 0)
}

// issueFlags returns the token for a new connection id on hub carrying
// flags (tok*); without flags it is the plain 40-byte token.
func (s *tokenSigner) issueFlags(hub string, id [idLen]byte, now time.Time, flags uint8) string {
	var b [flaggedLen]byte
	copy(b[:idLen], id[:])
	binary.BigEndian.PutUint64(b[idLen:idLen+8], uint64(now.Add(s.ttl).Unix()))
	body := b[:idLen+8]
	if flags != 0 {
		b[idLen+8] = flags
		body = b[:idLen+9]
	}
	key, _ := s.keys(now)
	n := copy(b[len(body):], mac(key, hub, body))
	return b64.EncodeToString(b[:len(body)+n])
}

// tokenInfo is what a genuine token says.
type tokenInfo struct {
	id    [idLen]byte
	exp   time.Time
	flags uint8
}

// verify checks a token for hub and returns its connection id and expiry.
func (s *tokenSigner) verify(hub, token string, now time.Time) (id [idLen]byte, exp time.Time, err error) {
	ti, err := s.open(hub, token, now)
	if err != nil {
		return id, ti.exp, err
	}
	return ti.id, ti.exp, nil
}

// open checks a token's signature for hub and returns what it says. A
// genuine token past its expiry is ErrTokenExpired with the info filled
// in: a stateful connection may resume with its token after that
// (resume.go); nothing else may use it.
func (s *tokenSigner) open(hub, token string, now time.Time) (ti tokenInfo, err error) {
	var b [flaggedLen]byte
	n := tokenLen
	switch len(token) {
	case b64.EncodedLen(tokenLen):
	case b64.EncodedLen(flaggedLen):
		n = flaggedLen
	default:
		return ti, ErrBadToken
	}
	if got, err := b64.Decode(b[:], []byte(token)); err != nil || got != n { // CR/LF are skipped
		return ti, ErrBadToken
	}
	body, sig := b[:n-macLen], b[n-macLen:n]
	cur, prev := s.keys(now)
	if !hmac.Equal(sig, mac(cur, hub, body)) &&
		(prev == nil || !hmac.Equal(sig, mac(prev, hub, body))) {
		return ti, ErrBadToken
	}
	if n == flaggedLen {
		ti.flags = b[idLen+8]
		if ti.flags == 0 {
			return ti, ErrBadToken // one encoding per token: no flags is the short form
		}
	}
	ti.exp = time.Unix(int64(binary.BigEndian.Uint64(b[idLen:idLen+8])), 0)
	copy(ti.id[:], b[:idLen])
	if now.After(ti.exp) {
		return ti, ErrTokenExpired
	}
	return ti, nil
}

// SetTokenKey makes key the connection-token signing key from now on (the
// key the fleet agreed on, see backplane.TokenKeyAgreer). Tokens issued
// with the previous key are still accepted until they expire. It reports
// whether the key changed.
func (s *Server) SetTokenKey(key string) bool {
	return s.signer.setKey([]byte(key), time.Now())
}

// Fleet-wide claims.

const (
	claimQueue   = 4096            // upgrades waiting for their claim; beyond: unchecked
	claimBatch   = 256             // claims per round trip
	claimTimeout = 1 * time.Second // one round trip; then unchecked
)

// pendingClaim is an upgrade waiting for its connection id's claim: the
// 101 response to send if the claim is fresh.
type pendingClaim struct {
	c    *Conn
	hub  string
	id   string
	exp  time.Time
	resp []byte
}

// claimer writes the upgrades' claims in batches from one goroutine and
// answers each upgrade.
type claimer struct {
	to     backplane.TokenClaimer
	log    *slog.Logger
	q      chan pendingClaim
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	fresh, reused, unchecked *metrics.Counter
	lastWarn                 time.Time // claim goroutine only
	failed                   int       // unchecked since lastWarn
}

func newClaimer(to backplane.TokenClaimer, log *slog.Logger, set *metricset.Set) *claimer {
	results := set.CounterVec("edgeplane_token_claims_total", "result",
		"Fleet-wide connection-token claims at upgrade: fresh (101), reused (409: the token connected before, on any node), unchecked (Redis down or slow: connected on the local check alone).")
	cl := &claimer{
		to: to, log: log,
		q:     make(chan pendingClaim, claimQueue),
		done:  make(chan struct{}),
		fresh: results("fresh"), reused: results("reused"), unchecked: results("unchecked"),
	}
	cl.ctx, cl.cancel = context.WithCancel(context.Background())
	go cl.run()
	return cl
}

func (cl *claimer) close() {
	cl.cancel()
	<-cl.done
}

// claim queues c's upgrade; the claim goroutine answers it. With the
// queue full the upgrade goes ahead unchecked.
func (cl *claimer) claim(c *Conn, hub, id string, exp time.Time, resp []byte) {
	c.flags.Or(flClaiming)
	select {
	case cl.q <- pendingClaim{c: c, hub: hub, id: id, exp: exp, resp: resp}:
	default:
		cl.unchecked.Inc()
		c.finishUpgrade(resp)
	}
}

func (cl *claimer) run() {
	defer close(cl.done)
	batch := make([]pendingClaim, 0, claimBatch)
	claims := make([]backplane.TokenClaim, 0, claimBatch)
	for {
		select {
		case p := <-cl.q:
			batch = append(batch[:0], p)
		case <-cl.ctx.Done():
			return
		}
	more:
		for len(batch) < claimBatch {
			select {
			case p := <-cl.q:
				batch = append(batch, p)
			default:
				break more
			}
		}
		claims = claims[:0]
		for _, p := range batch {
			claims = append(claims, backplane.TokenClaim{Hub: p.hub, ConnID: p.id, Expires: p.exp})
		}
		ctx, cancel := context.WithTimeout(cl.ctx, claimTimeout)
		fresh, err := cl.to.ClaimTokens(ctx, claims)
		cancel()
		for i, p := range batch {
			switch {
			case err != nil || len(fresh) != len(batch):
				cl.unchecked.Inc()
				p.c.finishUpgrade(p.resp)
			case fresh[i]:
				cl.fresh.Inc()
				p.c.finishUpgrade(p.resp)
			default:
				cl.reused.Inc()
				p.c.httpError(nil, "connect", http.StatusConflict, ErrTokenReused.Error())
			}
		}
		if err != nil {
			cl.failed += len(batch)
			if now := time.Now(); now.Sub(cl.lastWarn) >= 10*time.Second {
				cl.log.Warn("connection tokens not claimed fleet-wide; upgrades checked on this node only", "upgrades", cl.failed, "err", err)
				cl.lastWarn, cl.failed = now, 0
			}
		}
		clear(batch)
	}
}
