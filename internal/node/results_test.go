package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestRESTInvokeOnOneNode: without Redis (the in-memory backplane), the
// REST API's :invoke reaches the client as an Invocation with an id,
// and the client's Completion answers the request; a client's error is
// a 400 carrying it. The whole path is the node's: the receiver records
// the result the client owes before delivering, and the Memory
// backplane's return channel brings the Completion to the admin handler.
func TestRESTInvokeOnOneNode(t *testing.T) {
	n := nodetest.Start(t, node.Config{Hubs: []node.Hub{{Name: "chat"}}})
	admin := "http://" + n.AdminAddr().String()
	ws := dialJSON(t, "ws://"+n.Addr().String()+"/chat", 20*time.Second)
	var id string
	testutil.WaitUntil(t, 5*time.Second, "the connection to register", func() bool {
		n.Router().Hub("chat").Each(func(e *fanout.Entry) { id = e.ID() })
		return id != ""
	})
	type answer struct {
		code int
		body string
	}
	invoke := func(body string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			resp, err := http.Post(admin+"/api/hubs/chat/connections/"+id+"/:invoke?timeout=10", "application/json", strings.NewReader(body))
			if err != nil {
				ch <- answer{0, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- answer{resp.StatusCode, string(b)}
		}()
		return ch
	}
	// The client answers what it is asked.
	for _, tc := range []struct {
		reply func(invID string) string
		code  int
		want  string
	}{
		{func(i string) string { return `{"type":3,"invocationId":"` + i + `","result":{"n":42}}` }, 200, `{"result":{"n":42},"protocol":"json"}`},
		{func(i string) string { return `{"type":3,"invocationId":"` + i + `","error":"no can do"}` }, 400, "no can do"},
	} {
		done := invoke(`{"target":"ask","arguments":[1]}`)
		_, msg, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var inv struct {
			Type         int    `json:"type"`
			InvocationID string `json:"invocationId"`
			Target       string `json:"target"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSuffix(string(msg), "\x1e")), &inv); err != nil || inv.Type != 1 || inv.InvocationID == "" || inv.Target != "ask" {
			t.Fatalf("client got %q (%v), want an Invocation of ask with an id", msg, err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte(tc.reply(inv.InvocationID)+"\x1e")); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-done:
			if a.code != tc.code || !strings.Contains(a.body, tc.want) {
				t.Errorf(":invoke answered %d %s, want %d with %s", a.code, a.body, tc.code, tc.want)
			}
		case <-time.After(15 * time.Second):
			t.Fatal(":invoke did not answer")
		}
	}
}
