package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	key := []byte("secret-key")
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour).Unix()
	good, err := Sign(map[string]any{"nameid": "alice", "sub": "s", "exp": exp, "role": "admin"}, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(good, key, now)
	if err != nil || c.UserID() != "alice" {
		t.Fatalf("Verify good: %v %+v", err, c)
	}
	if !strings.Contains(string(c.Raw), `"role":"admin"`) {
		t.Fatalf("Raw payload %q lacks the other claims", c.Raw)
	}
	subOnly, _ := Sign(map[string]any{"sub": "bob", "exp": exp}, key)
	if c, err := Verify(subOnly, key, now); err != nil || c.UserID() != "bob" {
		t.Fatalf("sub fallback: %v", err)
	}
	expired, _ := Sign(map[string]any{"exp": now.Add(-time.Hour).Unix()}, key)
	notYet, _ := Sign(map[string]any{"exp": exp, "nbf": now.Add(time.Hour).Unix()}, key)
	noExp, _ := Sign(map[string]any{"nameid": "alice", "aud": "http://edge/chat"}, key)
	badAud, _ := Sign(map[string]any{"exp": exp, "aud": 5}, key)
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
		{"no exp", noExp, key, ErrNoExpiry},
		{"aud not a string", badAud, key, ErrMalformed},
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

// TestAudience: REST tokens are bound to the request URL, client tokens to
// the hub's client endpoint, each matched as leniently as Azure SignalR's
// SDKs write them and no further; neither opens the other.
func TestAudience(t *testing.T) {
	key := []byte("secret-key")
	now := time.Unix(1_800_000_000, 0)
	claims := func(aud any) *Claims {
		t.Helper()
		m := map[string]any{"exp": now.Add(time.Hour).Unix()}
		if aud != nil {
			m["aud"] = aud
		}
		tok, err := Sign(m, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Verify(tok, key, now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const host, sendPath = "edge.example.com:9090", "/api/hubs/chat/:send"
	for _, tc := range []struct {
		name string
		aud  any
		ok   bool
	}{
		{"exact", "http://edge.example.com:9090/api/hubs/chat/:send", true},
		{"management SDK form: https, no port, query, lower-case hub", "https://edge.example.com/api/hubs/chat/:send?api-version=2022-06-01", true},
		{"trailing slash and case", "HTTP://EDGE.example.com/API/hubs/Chat/:send/", true},
		{"one of several", []string{"http://other/x", "http://edge.example.com/api/hubs/chat/:send"}, true},
		{"no aud", nil, false},
		{"empty aud", "", false},
		{"another path", "http://edge.example.com/api/hubs/chat/groups/g/:send", false},
		{"a prefix of the path", "http://edge.example.com/api/hubs/chat", false},
		{"another host", "http://evil.example.com/api/hubs/chat/:send", false},
		{"relative", "/api/hubs/chat/:send", false},
		{"a client token", "http://edge.example.com/chat", false},
		{"an Azure client token", "https://edge.example.com/client/?hub=chat", false},
	} {
		t.Run("rest/"+tc.name, func(t *testing.T) {
			err := claims(tc.aud).CheckREST(host, sendPath)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrAudience) {
				t.Fatalf("CheckREST(aud %v) = %v, want ok %v", tc.aud, err, tc.ok)
			}
		})
	}
	for _, tc := range []struct {
		name string
		aud  any
		ok   bool
	}{
		{"edgeplane form", "http://edge.example.com:8080/chat", true},
		{"https, no port, trailing slash, case", "https://Edge.Example.com/Chat/", true},
		{"Azure form", "https://edge.example.com/client/?hub=chat", true},
		{"Azure form, hub case", "https://edge.example.com/client/?hub=CHAT&asrs.op=%2Fchat", true},
		{"no aud", nil, false},
		{"another hub", "http://edge.example.com/news", false},
		{"Azure form, another hub", "http://edge.example.com/client/?hub=news", false},
		{"another host", "http://evil.example.com/chat", false},
		{"a REST token", "http://edge.example.com/api/hubs/chat/:send", false},
		{"the bare endpoint", "http://edge.example.com", false},
	} {
		t.Run("client/"+tc.name, func(t *testing.T) {
			err := claims(tc.aud).CheckClient("edge.example.com", "chat")
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrAudience) {
				t.Fatalf("CheckClient(aud %v) = %v, want ok %v", tc.aud, err, tc.ok)
			}
		})
	}
	// IPv6 hosts: brackets and port are not part of the name.
	if err := claims("http://[::1]:8080/chat").CheckClient("[::1]:9999", "chat"); err != nil {
		t.Fatalf("IPv6: %v", err)
	}
	// Hosts are compared by name, so one without a Host header matches nothing.
	if err := claims("http:///chat").CheckClient("", "chat"); err == nil {
		t.Fatal("empty host matched")
	}
}

func TestCheckKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{strings.Repeat("k", MinKeyBytes), true},
		{"a-random-secret-of-thirty-two-b!", true},
		{strings.Repeat("k", MinKeyBytes-1), false},
		{"short", false},
		{"change-me-to-a-long-random-secret", false}, // deploy/edgeplane.env.example
	} {
		err := CheckKey(tc.key)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrWeakKey) {
			t.Errorf("CheckKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
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
		{"valid from now", map[string]any{"nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}, nil},
		{"valid in 30s", map[string]any{"nbf": now.Add(30 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()}, nil},
		{"valid in 31s", map[string]any{"nbf": now.Add(31 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()}, ErrNotYet},
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

// TestHS512: Azure SignalR's SDKs sign with HS512 when
// AccessTokenAlgorithm says so. A token signed here by hand (not by
// SignAlg) verifies, and the header's alg decides the hash: an HS512
// signature under an HS256 header, or the reverse, is refused.
func TestHS512(t *testing.T) {
	key := []byte("secret-key")
	now := time.Unix(1_800_000_000, 0)
	payload := b64.EncodeToString([]byte(fmt.Sprintf(`{"nameid":"alice","exp":%d}`, now.Add(time.Hour).Unix())))
	sign := func(alg string, h func() hash.Hash) string {
		s := b64.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + payload
		m := hmac.New(h, key)
		m.Write([]byte(s))
		return s + "." + b64.EncodeToString(m.Sum(nil))
	}
	if c, err := Verify(sign("HS512", sha512.New), key, now); err != nil || c.UserID() != "alice" {
		t.Fatalf("HS512 token: %v", err)
	}
	if _, err := Verify(sign("HS256", sha512.New), key, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("HS512 signature under an HS256 header: %v, want ErrSignature", err)
	}
	if _, err := Verify(sign("HS512", sha256.New), key, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("HS256 signature under an HS512 header: %v, want ErrSignature", err)
	}
	if _, err := Verify(sign("HS384", sha512.New384), key, now); !errors.Is(err, ErrAlgorithm) {
		t.Fatalf("HS384: %v, want ErrAlgorithm", err)
	}
	tok, err := SignAlg("HS512", map[string]any{"nameid": "bob", "exp": now.Add(time.Hour).Unix()}, key)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Verify(tok, key, now); err != nil || c.UserID() != "bob" {
		t.Fatalf("SignAlg HS512: %v", err)
	}
}

// signHS512 signs claims as the Azure SignalR SDK does with
// AccessTokenAlgorithm.HS512.
func signHS512(tb testing.TB, claims map[string]any, key []byte) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	s := b64.EncodeToString([]byte(`{"alg":"HS512","kid":"123","typ":"JWT"}`)) + "." + b64.EncodeToString(payload)
	m := hmac.New(sha512.New, key)
	m.Write([]byte(s))
	return s + "." + b64.EncodeToString(m.Sum(nil))
}

// TestVerifyAzureSDKTokens: HS512 tokens verify (and not with another
// key or as HS256); asrs.s.uid is the user id before nameid; a server
// token's audience is the hub's /server/ endpoint only.
func TestVerifyAzureSDKTokens(t *testing.T) {
	key := []byte("secret-key")
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour).Unix()
	tok := signHS512(t, map[string]any{"asrs.s.uid": "alice", "nameid": "a-name", "exp": exp, "aud": "http://edge/client/?hub=chathub"}, key)
	c, err := Verify(tok, key, now)
	if err != nil || c.UserID() != "alice" || c.CheckClient("edge:8080", "chathub") != nil {
		t.Fatalf("HS512 client token: %+v %v", c, err)
	}
	if _, err := Verify(tok, []byte("other"), now); !errors.Is(err, ErrSignature) {
		t.Fatalf("HS512 with another key: %v", err)
	}
	parts := strings.Split(tok, ".")
	as256 := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	if _, err := Verify(as256, key, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("an HS512 signature passed as HS256: %v", err)
	}
	for _, alg := range []string{"HS384", "RS256", "none", ""} {
		bad := b64.EncodeToString([]byte(`{"alg":"`+alg+`"}`)) + "." + parts[1] + "." + parts[2]
		if _, err := Verify(bad, key, now); !errors.Is(err, ErrAlgorithm) {
			t.Fatalf("alg %q: %v", alg, err)
		}
	}
	for _, tc := range []struct {
		aud string
		ok  bool
	}{
		{"http://edge/server/?hub=chathub", true},
		{"https://EDGE:443/server?hub=ChatHub", true},
		{"http://edge/server/?hub=other", false},
		{"http://edge/client/?hub=chathub", false},
		{"http://edge/chathub", false},
		{"http://evil/server/?hub=chathub", false},
	} {
		tok := signHS512(t, map[string]any{"nameid": "srv", "exp": exp, "aud": tc.aud}, key)
		c, err := Verify(tok, key, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.CheckServer("edge:8080", "chathub"); (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrAudience) {
			t.Errorf("CheckServer(aud %s) = %v, want ok %v", tc.aud, err, tc.ok)
		}
	}
}
