package conn

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestPostWhileAnotherPostIs409: a POST that arrives while another POST
// of the same connection is being processed (on another socket) gets 409
// and the connection stays; once the first is done, POSTs go through.
func TestPostWhileAnotherPostIs409(t *testing.T) {
	s := newTestServer(t, Config{})
	_, negBody := exchange(t, s, negotiateReq("/chat/negotiate?negotiateVersion=1", ""))
	var n struct{ ConnectionToken string }
	if err := json.Unmarshal([]byte(negBody), &n); err != nil {
		t.Fatal(err)
	}
	target := "/chat?id=" + n.ConnectionToken
	if resp, _ := exchange(t, s, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	post := func(body string) int {
		resp, _ := exchange(t, s, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		return resp.StatusCode
	}
	var id [idLen]byte
	ti, err := s.signer.open("chat", n.ConnectionToken, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id = ti.id
	lc := s.httpConns.get(encodeID(id))
	if lc == nil {
		t.Fatal("no connection after the first poll")
	}
	lc.sink().posting.Store(true) // another POST in progress
	if code := post("{\"protocol\":\"json\",\"version\":1}\x1e"); code != http.StatusConflict {
		t.Fatalf("concurrent POST: %d, want 409", code)
	}
	lc.sink().posting.Store(false)
	if code := post("{\"protocol\":\"json\",\"version\":1}\x1e"); code != http.StatusOK {
		t.Fatalf("POST after the other finished: %d, want 200 (the connection stays)", code)
	}
}
