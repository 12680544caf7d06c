package conn

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestTokenRoundTrip(t *testing.T) {
	s := &tokenSigner{key: []byte("fleet-key"), ttl: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	for _, hub := range []string{"chat", "", "a-very-long-hub-name/with/odd ✓ chars"} {
		t.Run(hub, func(t *testing.T) {
			id := newConnID()
			tok := s.issue(hub, id, now)
			if len(tok) != b64.EncodedLen(tokenLen) {
				t.Fatalf("token length %d, want %d", len(tok), b64.EncodedLen(tokenLen))
			}
			if strings.ContainsAny(tok, "+/=") {
				t.Fatalf("token %q is not unpadded base64url", tok)
			}
			for _, at := range []time.Time{now, now.Add(time.Minute - time.Nanosecond), now.Add(time.Minute), now.Add(-time.Hour)} {
				gotID, exp, err := s.verify(hub, tok, at)
				if err != nil {
					t.Fatalf("verify at %v: %v", at.Sub(now), err)
				}
				if gotID != id {
					t.Fatalf("id = %x, want %x", gotID, id)
				}
				if !exp.Equal(now.Add(time.Minute)) {
					t.Fatalf("exp = %v, want %v", exp, now.Add(time.Minute))
				}
			}
			// A second signer with the same key (another node) accepts it.
			other := &tokenSigner{key: []byte("fleet-key"), ttl: time.Hour}
			if gotID, _, err := other.verify(hub, tok, now); err != nil || gotID != id {
				t.Fatalf("same key, other node: %v", err)
			}
		})
	}
	if a, b := newConnID(), newConnID(); a == b {
		t.Fatal("newConnID returned the same id twice")
	}
	if got := encodeID([idLen]byte{}); got != "AAAAAAAAAAAAAAAAAAAAAA" {
		t.Fatalf("encodeID(zero) = %q", got)
	}
}

func TestTokenRejected(t *testing.T) {
	s := &tokenSigner{key: []byte("fleet-key"), ttl: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	id := newConnID()
	tok := s.issue("chat", id, now)
	for _, tc := range []struct {
		name   string
		signer *tokenSigner
		hub    string
		tok    string
		at     time.Time
		want   error
	}{
		{"wrong hub", s, "other", tok, now, ErrBadToken},
		{"hub prefix", s, "cha", tok, now, ErrBadToken},
		{"different key", &tokenSigner{key: []byte("other-key"), ttl: time.Minute}, "chat", tok, now, ErrBadToken},
		{"empty key", &tokenSigner{ttl: time.Minute}, "chat", tok, now, ErrBadToken},
		{"empty", s, "chat", "", now, ErrBadToken},
		{"one short", s, "chat", tok[:len(tok)-1], now, ErrBadToken},
		{"one long", s, "chat", tok + "A", now, ErrBadToken},
		{"padded", s, "chat", tok + "==", now, ErrBadToken},
		{"connection id only", s, "chat", encodeID(id), now, ErrBadToken},
		{"std alphabet", s, "chat", strings.NewReplacer("-", "+", "_", "/").Replace(tok[:len(tok)-2]) + "+/", now, ErrBadToken},
		{"bad base64 char", s, "chat", "!" + tok[1:], now, ErrBadToken},
		{"bad base64 space", s, "chat", tok[:20] + " " + tok[21:], now, ErrBadToken},
		{"expired by 1s", s, "chat", tok, now.Add(time.Minute + time.Second), ErrTokenExpired},
		{"expired by 1ns", s, "chat", tok, now.Add(time.Minute + time.Nanosecond), ErrTokenExpired},
		{"expired long ago", s, "chat", tok, now.Add(24 * time.Hour), ErrTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotID, _, err := tc.signer.verify(tc.hub, tc.tok, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if gotID != ([idLen]byte{}) {
				t.Fatalf("rejected token still returned id %x", gotID)
			}
		})
	}
	// An expired token signed with another key is a bad token, not an
	// expired one: the signature is checked first.
	if _, _, err := (&tokenSigner{key: []byte("k2")}).verify("chat", tok, now.Add(time.Hour)); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired + wrong key: %v", err)
	}
}

// TestTokenTamper changes every character of the token to every other
// base64url character, and every bit of the decoded token: none verifies.
func TestTokenTamper(t *testing.T) {
	s := &tokenSigner{key: []byte("fleet-key"), ttl: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	tok := s.issue("chat", newConnID(), now)
	for pos := 0; pos < len(tok); pos++ {
		for _, c := range []byte(b64Alphabet) {
			if c == tok[pos] {
				continue
			}
			bad := tok[:pos] + string(c) + tok[pos+1:]
			if _, _, err := s.verify("chat", bad, now); !errors.Is(err, ErrBadToken) {
				t.Fatalf("char %d %q→%q: err = %v, want ErrBadToken", pos, tok[pos], c, err)
			}
		}
	}
	raw, err := b64.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			mod := append([]byte(nil), raw...)
			mod[i] ^= 1 << bit
			if _, _, err := s.verify("chat", b64.EncodeToString(mod), now); !errors.Is(err, ErrBadToken) {
				t.Fatalf("byte %d bit %d flipped: err = %v, want ErrBadToken", i, bit, err)
			}
		}
	}
}

// TestTokenNewlines: the base64 decoder skips CR and LF, so a 54-byte
// string of 52 token characters and 2 newlines decodes to 39 bytes and
// leaves the 40th zero. For the 1 in 256 tokens whose last byte is 0 that
// string must still be rejected.
func TestTokenNewlines(t *testing.T) {
	s := &tokenSigner{key: []byte("fleet-key"), ttl: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	var tok string
	for i := 0; ; i++ {
		if i == 100_000 {
			t.Fatal("no token with a zero last byte found")
		}
		var id [idLen]byte
		binary.BigEndian.PutUint64(id[:], uint64(i))
		tok = s.issue("chat", id, now)
		raw, err := b64.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		if raw[tokenLen-1] == 0 {
			break
		}
	}
	if _, _, err := s.verify("chat", tok, now); err != nil {
		t.Fatalf("genuine token: %v", err)
	}
	for _, bad := range []string{
		tok[:52] + "\n\n",
		tok[:52] + "\r\n",
		"\n" + tok[:26] + "\n" + tok[26:52],
	} {
		if _, _, err := s.verify("chat", bad, now); !errors.Is(err, ErrBadToken) {
			t.Fatalf("%q: err = %v, want ErrBadToken", bad, err)
		}
	}
}

// TestTokenFlags: a stateful-reconnect token carries its flag under the
// signature, one byte longer; every bit of it is checked, a long token
// without flags is not another encoding of the short one, and open
// returns an expired token's contents (resume) where verify does not.
func TestTokenFlags(t *testing.T) {
	s := &tokenSigner{key: []byte("fleet-key"), ttl: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	id := newConnID()
	tok := s.issueFlags("chat", id, now, tokStateful)
	if len(tok) != b64.EncodedLen(flaggedLen) || len(s.issue("chat", id, now)) != b64.EncodedLen(tokenLen) {
		t.Fatalf("token lengths %d and %d", len(tok), len(s.issue("chat", id, now)))
	}
	ti, err := s.open("chat", tok, now)
	if err != nil || ti.id != id || ti.flags != tokStateful || !ti.exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("open: %+v, %v", ti, err)
	}
	if plain, err := s.open("chat", s.issue("chat", id, now), now); err != nil || plain.flags != 0 {
		t.Fatalf("plain token: flags %d, %v", plain.flags, err)
	}
	if gotID, _, err := s.verify("chat", tok, now); err != nil || gotID != id {
		t.Fatalf("verify of a flagged token: %v", err)
	}
	later := now.Add(time.Hour)
	if ti, err := s.open("chat", tok, later); !errors.Is(err, ErrTokenExpired) || ti.id != id || ti.flags != tokStateful {
		t.Fatalf("open expired: %+v, %v", ti, err)
	}
	if gotID, _, err := s.verify("chat", tok, later); !errors.Is(err, ErrTokenExpired) || gotID != ([idLen]byte{}) {
		t.Fatalf("verify expired: %x, %v", gotID, err)
	}
	raw, err := b64.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			mod := append([]byte(nil), raw...)
			mod[i] ^= 1 << bit
			if _, err := s.open("chat", b64.EncodeToString(mod), now); !errors.Is(err, ErrBadToken) {
				t.Fatalf("byte %d bit %d flipped: err = %v, want ErrBadToken", i, bit, err)
			}
		}
	}
	// Long form with a zero flags byte, correctly signed: refused.
	var b [flaggedLen]byte
	copy(b[:], raw[:idLen+8])
	copy(b[idLen+9:], mac(s.key, "chat", b[:idLen+9]))
	if _, err := s.open("chat", b64.EncodeToString(b[:]), now); !errors.Is(err, ErrBadToken) {
		t.Fatalf("zero flags: %v", err)
	}
}
