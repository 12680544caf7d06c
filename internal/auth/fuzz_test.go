package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const urlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// FuzzVerify: Verify never panics, returns only its sentinel errors, and
// accepts nothing but a token whose signature is the HMAC of its first two
// parts, each part in its one canonical encoding.
//
//	go test -run XXX -fuzz FuzzVerify -fuzztime 20s ./internal/auth/
func FuzzVerify(f *testing.F) {
	key := []byte("fuzz-key")
	now := time.Unix(1_800_000_000, 0)
	for _, claims := range []map[string]any{
		{"sub": "alice"},
		{"nameid": "bob", "exp": now.Add(time.Hour).Unix()},
		{"nameid": "bob", "exp": now.Add(time.Hour).Unix(), "aud": "http://edge/chat"},
		{"exp": now.Add(time.Hour).Unix(), "aud": []string{"http://a/api/hubs/chat/:send", "x"}},
		{"exp": now.Add(time.Hour).Unix(), "aud": 5},
		{"exp": now.Add(-time.Hour).Unix()},
		{"nbf": now.Add(time.Hour).Unix()},
		{"sub": 5},
		{},
	} {
		tok, err := Sign(claims, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		parts := strings.Split(tok, ".")
		// Regressions: a trailing newline, and a last signature character
		// that differs only in its unused low bits, used to verify.
		f.Add(parts[0] + "." + parts[1] + "." + parts[2] + "\n")
		last := strings.IndexByte(urlAlphabet, parts[2][len(parts[2])-1])
		f.Add(parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(urlAlphabet[last^1]))
		f.Add(b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")
	}
	f.Add(signHS512(f, map[string]any{"nameid": "srv", "exp": now.Add(time.Hour).Unix(), "aud": "http://edge/server/?hub=chat"}, key))
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add("!!.!!.!!")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(tok, key, now)
		if err != nil {
			if c != nil {
				t.Fatal("claims returned with an error")
			}
			known := false
			for _, e := range []error{ErrMalformed, ErrAlgorithm, ErrSignature, ErrExpired, ErrNotYet, ErrNoExpiry} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("error %v is not a sentinel", err)
			}
			return
		}
		if c == nil {
			t.Fatal("nil claims without an error")
		}
		if c.Exp == nil {
			t.Fatalf("accepted a token without exp: %q", tok)
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %d parts", len(parts))
		}
		for i, p := range parts {
			raw, err := b64.DecodeString(p)
			if err != nil {
				t.Fatalf("part %d of accepted token does not decode: %v", i, err)
			}
			if canon := b64.EncodeToString(raw); canon != p {
				t.Fatalf("accepted a non-canonical part %d %q (canonical %q): the token is malleable", i, p, canon)
			}
		}
		hdr, _ := b64.DecodeString(parts[0])
		var h map[string]any
		if err := json.Unmarshal(hdr, &h); err != nil || h["alg"] != "HS256" && h["alg"] != "HS512" {
			t.Fatalf("accepted header %q", hdr)
		}
		sig, _ := b64.DecodeString(parts[2])
		m := hmac.New(sha256.New, key)
		if h["alg"] == "HS512" {
			m = hmac.New(sha512.New, key)
		}
		m.Write([]byte(parts[0] + "." + parts[1]))
		if !hmac.Equal(sig, m.Sum(nil)) {
			t.Fatalf("accepted a token whose signature is not the %s HMAC: %q", h["alg"], tok)
		}
		if _, err := Verify(tok, []byte("another-key"), now); !errors.Is(err, ErrSignature) {
			t.Fatalf("token verified with another key: %v", err)
		}
	})
}
