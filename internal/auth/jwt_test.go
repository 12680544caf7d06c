package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	key := []byte("secret-key")
	now := time.Unix(1_800_000_000, 0)
	good, err := Sign(map[string]any{"nameid": "alice", "sub": "s", "exp": now.Add(time.Hour).Unix()}, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(good, key, now)
	if err != nil || c.UserID() != "alice" {
		t.Fatalf("Verify good: %v %+v", err, c)
	}
	subOnly, _ := Sign(map[string]any{"sub": "bob"}, key)
	if c, err := Verify(subOnly, key, now); err != nil || c.UserID() != "bob" {
		t.Fatalf("sub fallback: %v", err)
	}
	expired, _ := Sign(map[string]any{"exp": now.Add(-time.Hour).Unix()}, key)
	notYet, _ := Sign(map[string]any{"nbf": now.Add(time.Hour).Unix()}, key)
	parts := strings.Split(good, ".")
	none := b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "." + parts[2]
	tampered := parts[0] + "." + b64.EncodeToString([]byte(`{"nameid":"mallory"}`)) + "." + parts[2]
	for _, tc := range []struct {
		name, tok string
		key       []byte
		want      error
	}{
		{"wrong key", good, []byte("other"), ErrSignature},
		{"expired", expired, key, ErrExpired},
		{"not yet", notYet, key, ErrNotYet},
		{"alg none", none, key, ErrAlgorithm},
		{"tampered", tampered, key, ErrSignature},
		{"two parts", "a.b", key, ErrMalformed},
		{"garbage", "!!.!!.!!", key, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.tok, tc.key, now); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if FromRequest("Bearer abc", "q") != "abc" || FromRequest("", "q") != "q" {
		t.Fatal("FromRequest")
	}
}

// TestVerifyLeeway: exp and nbf tolerate exactly 30 s of clock skew, no
// more: a token expired 30 s ago still verifies, one expired 31 s ago does
// not, and likewise for a token valid from 30 or 31 s in the future.
func TestVerifyLeeway(t *testing.T) {
	key := []byte("secret-key")
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   error
	}{
		{"expired now", map[string]any{"exp": now.Unix()}, nil},
		{"expired 30s ago", map[string]any{"exp": now.Add(-30 * time.Second).Unix()}, nil},
		{"expired 31s ago", map[string]any{"exp": now.Add(-31 * time.Second).Unix()}, ErrExpired},
		{"valid from now", map[string]any{"nbf": now.Unix()}, nil},
		{"valid in 30s", map[string]any{"nbf": now.Add(30 * time.Second).Unix()}, nil},
		{"valid in 31s", map[string]any{"nbf": now.Add(31 * time.Second).Unix()}, ErrNotYet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Sign(tc.claims, key)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Verify(tok, key, now)
			if !errors.Is(err, tc.want) || (err == nil) != (c != nil) {
				t.Fatalf("Verify = %+v, %v; want error %v", c, err, tc.want)
			}
		})
	}
}
