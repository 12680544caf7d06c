package conn

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestNegotiateVersions: negotiate answers as ASP.NET Core's dispatcher
// does: version 1 (or higher, capped at 1) with a public connectionId and
// a secret token; version 0 (absent) with negotiateVersion 0 and the
// token as connectionId (v0 clients connect with it); an integer that is
// not one, or a negative one, with 200 {"error": …}, which the clients
// report. The name is matched case-insensitively, as ASP.NET's query
// lookup does.
func TestNegotiateVersions(t *testing.T) {
	s := newTestServer(t, Config{})
	negotiate := func(query string) map[string]any {
		t.Helper()
		fc := &fakeConn{}
		sess := s.OnOpen(fc)
		defer sess.OnClose(nil)
		sess.OnData([]byte("POST /chat/negotiate" + query + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(fc.output())), nil)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: status %d, type %q", query, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return body
	}
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}
	for _, q := range []string{"?negotiateVersion=1", "?negotiateVersion=2", "?NegotiateVersion=1", "?negotiateversion=7&x=1"} {
		b := negotiate(q)
		if !slices.Equal(keys(b), []string{"availableTransports", "connectionId", "connectionToken", "negotiateVersion"}) || b["negotiateVersion"] != 1.0 {
			t.Errorf("%s: %v", q, b)
			continue
		}
		id, _, err := s.signer.verify("chat", b["connectionToken"].(string), time.Now())
		if err != nil || encodeID(id) != b["connectionId"] {
			t.Errorf("%s: connectionId %v does not match the token (%v)", q, b["connectionId"], err)
		}
	}
	for _, q := range []string{"", "?negotiateVersion=0", "?other=1"} {
		b := negotiate(q)
		if !slices.Equal(keys(b), []string{"availableTransports", "connectionId", "negotiateVersion"}) || b["negotiateVersion"] != 0.0 {
			t.Errorf("%q: %v", q, b)
			continue
		}
		if _, _, err := s.signer.verify("chat", b["connectionId"].(string), time.Now()); err != nil {
			t.Errorf("%q: v0 connectionId is not the connection token: %v", q, err)
		}
	}
	for q, want := range map[string]string{
		"?negotiateVersion=abc": "The client requested a non-integer protocol version.",
		"?negotiateVersion=":    "The client requested a non-integer protocol version.",
		"?negotiateVersion=1.5": "The client requested a non-integer protocol version.",
		"?negotiateVersion=-1":  "The client requested version '-1', but the server does not support this version.",
	} {
		if b := negotiate(q); len(b) != 1 || b["error"] != want {
			t.Errorf("%s: %v, want only error %q", q, b, want)
		}
	}
}
