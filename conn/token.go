package conn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Connection tokens are self-validating, so that any node of a fleet
// sharing the key accepts the WebSocket that follows a negotiate on another
// node (no sticky sessions):
//
//	token = base64url( connID[16] | expiry[8, unix seconds] | HMAC-SHA256(key, hub | connID | expiry)[:16] )
//
// The connection id given to the client and used for targeting is
// base64url(connID).

const (
	idLen    = 16
	macLen   = 16
	tokenLen = idLen + 8 + macLen
)

// Strict: a token has exactly one encoding (no malleable trailing bits).
var b64 = base64.RawURLEncoding.Strict()

// tokenSigner signs and checks connection tokens.
type tokenSigner struct {
	key []byte
	ttl time.Duration
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

func (s *tokenSigner) mac(hub string, body []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(hub))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:macLen]
}

// issue returns the token for a new connection id on hub.
func (s *tokenSigner) issue(hub string, id [idLen]byte, now time.Time) string {
	var b [tokenLen]byte
	copy(b[:idLen], id[:])
	binary.BigEndian.PutUint64(b[idLen:idLen+8], uint64(now.Add(s.ttl).Unix()))
	copy(b[idLen+8:], s.mac(hub, b[:idLen+8]))
	return b64.EncodeToString(b[:])
}

// verify checks a token for hub and returns its connection id and expiry.
func (s *tokenSigner) verify(hub, token string, now time.Time) (id [idLen]byte, exp time.Time, err error) {
	var b [tokenLen]byte
	if b64.EncodedLen(tokenLen) != len(token) {
		return id, exp, ErrBadToken
	}
	if n, err := b64.Decode(b[:], []byte(token)); err != nil || n != tokenLen { // CR/LF are skipped
		return id, exp, ErrBadToken
	}
	if !hmac.Equal(b[idLen+8:], s.mac(hub, b[:idLen+8])) {
		return id, exp, ErrBadToken
	}
	exp = time.Unix(int64(binary.BigEndian.Uint64(b[idLen:idLen+8])), 0)
	if now.After(exp) {
		return id, exp, ErrTokenExpired
	}
	copy(id[:], b[:idLen])
	return id, exp, nil
}
