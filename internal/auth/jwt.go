package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors.
var (
	ErrMalformed = errors.New("jwt: malformed token")
	ErrAlgorithm = errors.New("jwt: unsupported algorithm (want HS256 or HS512)")
	ErrSignature = errors.New("jwt: bad signature")
	ErrExpired   = errors.New("jwt: token expired")
	ErrNotYet    = errors.New("jwt: token not valid yet")
	// ErrNoExpiry: the token has no exp claim. A token that never expires
	// cannot be taken back short of changing the key, so none is accepted.
	ErrNoExpiry = errors.New("jwt: token has no exp claim")
)

// Claims are the registered and SignalR claims edgeplane reads.
type Claims struct {
	Subject string `json:"sub"`
	NameID  string `json:"nameid"`
	// ASRSUserID is the user id the Azure SignalR SDK's negotiate puts in
	// the client access tokens it signs (asrs.s.uid).
	ASRSUserID string   `json:"asrs.s.uid"`
	Exp        *int64   `json:"exp"`
	Nbf        *int64   `json:"nbf"`
	Audience   Audience `json:"aud"`
	// Raw is the token's payload, a JSON object with every claim (for the
	// upstream's connect context). It is set by Verify.
	Raw []byte `json:"-"`
}

// UserID is the user a token identifies: asrs.s.uid (a token from the
// Azure SignalR SDK's negotiate) if set, else nameid, else sub.
func (c *Claims) UserID() string {
	if c.ASRSUserID != "" {
		return c.ASRSUserID
	}
	if c.NameID != "" {
		return c.NameID
	}
	return c.Subject
}

// leeway tolerates clock skew between token issuer and node.
const leeway = 30 * time.Second

var b64 = base64.RawURLEncoding

// Verify checks an HS256 or HS512 token (Azure SignalR's SDKs sign with
// either, AccessTokenAlgorithm) against key and returns its claims. The
// token must carry an exp claim and be within its validity (exp and nbf,
// with a leeway for clock skew); its audience is for the caller to check
// (Claims.CheckREST, Claims.CheckClient).
func Verify(token string, key []byte, now time.Time) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, ErrMalformed
	}
	hdrJSON, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	newHash := sha256.New
	switch hdr.Alg {
	case "HS256":
	case "HS512":
		newHash = sha512.New
	default:
		return nil, ErrAlgorithm
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	if b64.EncodeToString(sig) != parts[2] { // the decoder skips CR/LF and ignores trailing bits
		return nil, fmt.Errorf("%w: signature: not canonical base64url", ErrMalformed)
	}
	m := hmac.New(newHash, key)
	m.Write([]byte(parts[0]))
	m.Write([]byte{'.'})
	m.Write([]byte(parts[1]))
	if !hmac.Equal(sig, m.Sum(nil)) {
		return nil, ErrSignature
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	c.Raw = payload
	if c.Exp == nil {
		return nil, ErrNoExpiry
	}
	if now.After(time.Unix(*c.Exp, 0).Add(leeway)) {
		return nil, ErrExpired
	}
	if c.Nbf != nil && now.Add(leeway).Before(time.Unix(*c.Nbf, 0)) {
		return nil, ErrNotYet
	}
	return &c, nil
}

// Sign makes an HS256 token with the given claims (a JSON object). It is
// used by tests, examples, edgebench and the REST API's :generateToken.
func Sign(claims map[string]any, key []byte) (string, error) {
	return SignAlg("HS256", claims, key)
}

// SignAlg is Sign with the algorithm named: "HS256" or "HS512".
func SignAlg(alg string, claims map[string]any, key []byte) (string, error) {
	newHash := sha256.New
	switch alg {
	case "HS256":
	case "HS512":
		newHash = sha512.New
	default:
		return "", ErrAlgorithm
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jwt: encode claims: %w", err)
	}
	s := b64.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + b64.EncodeToString(payload)
	m := hmac.New(newHash, key)
	m.Write([]byte(s))
	return s + "." + b64.EncodeToString(m.Sum(nil)), nil
}

// FromRequest extracts a bearer token from an Authorization header value
// or, failing that, the access_token query value.
func FromRequest(authorization, accessTokenQuery string) string {
	if t, ok := strings.CutPrefix(authorization, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return accessTokenQuery
}
