package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// functionsUpstream plays an Azure Functions app's SignalR trigger: it
// accepts a request only if X-ASRS-Signature has an entry equal to
// "sha256=" + hex HMAC-SHA256(access key, connection id), compared
// case-insensitively (SignalRRequestResolver.ValidateSignature), and
// answers an invocation with an id the way the extension does: its
// CompletionMessage serialized with the client's protocol, framed (JSON
// with its record separator; MessagePack, whose invocations arrive as
// application/x-msgpack, behind its VarInt length), the first argument
// as the result, as it came.
type functionsUpstream struct {
	key string
	srv *httptest.Server

	mu       sync.Mutex
	events   []string // category/event connection user
	bad      int      // requests refused: signature, headers
	release  chan struct{}
	blocking bool
}

func newFunctionsUpstream(t *testing.T, key string) *functionsUpstream {
	f := &functionsUpstream{key: key, release: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.unblock()
		f.srv.Close()
	})
	return f
}

func (f *functionsUpstream) unblock() {
	f.mu.Lock()
	if !f.blocking {
		f.blocking = true
		close(f.release)
	}
	f.mu.Unlock()
}

func (f *functionsUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	conn := r.Header.Get("X-ASRS-Connection-Id")
	m := hmac.New(sha256.New, []byte(f.key))
	m.Write([]byte(conn))
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	valid := false
	for _, s := range strings.Split(r.Header.Get("X-ASRS-Signature"), ",") {
		valid = valid || strings.EqualFold(strings.TrimSpace(s), want)
	}
	cat, ev := r.Header.Get("X-ASRS-Category"), r.Header.Get("X-ASRS-Event")
	if !valid || r.Header.Get("X-ASRS-Hub") != "chat" || r.URL.Path != "/api/chat/"+cat+"/"+ev {
		f.mu.Lock()
		f.bad++
		f.mu.Unlock()
		http.Error(w, "bad signature or headers", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	f.events = append(f.events, cat+"/"+ev+" "+conn+" "+r.Header.Get("X-ASRS-User-Id"))
	f.mu.Unlock()
	if cat != "messages" {
		return
	}
	if r.Header.Get("Content-Type") == "application/x-msgpack" {
		f.serveMessagePack(w, ev, body)
		return
	}
	var inv struct {
		InvocationID string            `json:"invocationId"`
		Arguments    []json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(body, &inv); err != nil {
		http.Error(w, "not an invocation", http.StatusBadRequest)
		return
	}
	switch ev {
	case "Fail":
		http.Error(w, "function failed", http.StatusInternalServerError)
		return
	case "Slow":
		<-f.release
	}
	if inv.InvocationID == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	result := json.RawMessage("null")
	if len(inv.Arguments) > 0 {
		result = inv.Arguments[0]
	}
	rec, _ := json.Marshal(map[string]any{"type": 3, "invocationId": inv.InvocationID, "result": result})
	w.Write(append(rec, 0x1e))
}

// serveMessagePack answers a MessagePack client's invocation: body is
// its record, unframed.
func (f *functionsUpstream) serveMessagePack(w http.ResponseWriter, ev string, body []byte) {
	m, err := hubproto.MessagePack.Parse(body)
	if err != nil || m.Type != hubproto.TypeInvocation || m.Target != ev {
		f.mu.Lock()
		f.bad++
		f.mu.Unlock()
		http.Error(w, "not an unframed MessagePack invocation", http.StatusBadRequest)
		return
	}
	if ev == "Fail" {
		http.Error(w, "function failed", http.StatusInternalServerError)
		return
	}
	if m.InvocationID == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var result []byte // the first argument, as the client encoded it
	if _, rest, err := msgp.ReadArrayHeaderBytes(m.Arguments); err == nil && len(rest) > 0 {
		if after, err := msgp.Skip(rest); err == nil {
			result = rest[:len(rest)-len(after)]
		}
	}
	rec, err := hubproto.MessagePack.AppendCompletion(nil, m.InvocationID, result)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Write(rec)
}

func (f *functionsUpstream) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events)
}

// TestWebhookUpstream: unmodified @microsoft/signalr clients on a node
// with a webhook upstream, received by a Functions-like upstream that
// checks signatures as the Functions extension does: connected,
// invocations (their result comes back from the upstream's Completion;
// a failing function is an error to the caller) and disconnected arrive
// signed, with the user.
func TestWebhookUpstream(t *testing.T) {
	const key = "webhook-e2e-access-key-0123456789abcdef"
	up := newFunctionsUpstream(t, key)
	n := startNode(t, "epoll", "--hub", "chat", "--access-key", key,
		"--upstream", up.srv.URL+"/api/{hub}/{category}/{event};hub=chat")
	alice := clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"})
	js := startJS(t, "http://"+n.client, []jsClientSpec{
		{Name: "a", AccessToken: alice, Invoke: map[string]any{"target": "Echo", "args": []any{map[string]any{"hello": []int{1, 2}}}}},
		{Name: "b", AccessToken: alice, Invoke: map[string]any{"target": "Fail", "args": []any{1}}},
	})
	testutil.WaitUntil(t, 10*time.Second, "both invocations answered", func() bool {
		return len(js.find("a", "invokeOk")) == 1 && len(js.find("b", "invokeError")) == 1
	})
	if got := string(js.find("a", "invokeOk")[0].Args[0]); got != `{"hello":[1,2]}` {
		t.Errorf("Echo's result %s, want the upstream's", got)
	}
	if e := *js.find("b", "invokeError")[0].Error; !strings.Contains(e, "Invocation failed, status code 500") {
		t.Errorf("Fail's error %q", e)
	}
	a, b := js.connID("a"), js.connID("b")
	js.stdin.Write([]byte("stop\n"))
	testutil.WaitUntil(t, 10*time.Second, "6 events at the upstream", func() bool { return len(up.list()) == 6 })
	got := up.list()
	for _, want := range []string{
		"connections/connected " + a + " alice", "messages/Echo " + a + " alice", "connections/disconnected " + a + " alice",
		"connections/connected " + b + " alice", "messages/Fail " + b + " alice", "connections/disconnected " + b + " alice",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("upstream lacks %q; got %q", want, got)
		}
	}
	for _, c := range []string{a, b} { // each connection's events in order
		var seq []string
		for _, e := range got {
			if strings.Contains(e, " "+c+" ") {
				seq = append(seq, strings.Fields(e)[0])
			}
		}
		if len(seq) != 3 || seq[0] != "connections/connected" || seq[2] != "connections/disconnected" {
			t.Errorf("%s's events out of order: %q", c, seq)
		}
	}
	up.mu.Lock()
	bad := up.bad
	up.mu.Unlock()
	if bad != 0 {
		t.Errorf("%d requests failed the signature check", bad)
	}
	testutil.WaitUntil(t, 10*time.Second, "5 ok requests and 1 http_error counted", func() bool {
		return n.metric(`edgeplane_webhook_requests_total{upstream="`+up.srv.URL+`",outcome="ok"}`) == 5 &&
			n.metric(`edgeplane_webhook_requests_total{upstream="`+up.srv.URL+`",outcome="http_error"}`) == 1
	})
}

// TestWebhookSlowAndDeadUpstream: a webhook upstream that stops
// answering costs the node its queue and no more: invocations beyond it
// are refused at once (an error to the caller, counted), while sends to
// the clients keep flowing; an upstream nobody listens on answers every
// invocation with an error.
func TestWebhookSlowAndDeadUpstream(t *testing.T) {
	const key = "webhook-e2e-access-key-0123456789abcdef"
	up := newFunctionsUpstream(t, key)
	n := startNode(t, "epoll", "--hub", "chat", "--access-key", key,
		"--upstream", up.srv.URL+"/api/{hub}/{category}/{event};category=messages",
		"--upstream-workers", "1", "--upstream-queue", "2", "--upstream-timeout", "1m")
	tok := clientToken(t, key, n, "chat", map[string]any{"nameid": "carol"})
	var specs []jsClientSpec
	for _, name := range []string{"s1", "s2", "s3", "s4", "s5", "s6"} {
		specs = append(specs, jsClientSpec{Name: name, AccessToken: tok, Targets: []string{"t"}, Invoke: map[string]any{"target": "Slow", "args": []any{name}}, InvokeAsync: true})
	}
	js := startJS(t, "http://"+n.client, specs)
	// One invocation in flight and two queued; the other three refused.
	testutil.WaitUntil(t, 10*time.Second, "three refused invocations", func() bool { return len(js.find("", "invokeError")) == 3 })
	for _, e := range js.find("", "invokeError") {
		if !strings.Contains(*e.Error, "queue full") {
			t.Errorf("%s: %q", e.Name, *e.Error)
		}
	}
	if v := n.metric(`edgeplane_webhook_dropped_total{upstream="` + up.srv.URL + `"}`); v != 3 {
		t.Errorf("dropped = %v, want 3", v)
	}
	// Client traffic is not held up by the stuck upstream.
	if c, body := n.restAPI("POST", "/api/hubs/chat/users/carol/:send", `{"target":"t","arguments":["still here"]}`, key); c != 202 {
		t.Fatalf("send: %d %s", c, body)
	}
	for _, s := range specs {
		name := s.Name
		testutil.WaitUntil(t, 10*time.Second, name+" to receive the send", func() bool { return slices.Contains(js.received(name), "still here") })
	}
	up.unblock()
	testutil.WaitUntil(t, 10*time.Second, "the three queued invocations answered", func() bool { return len(js.find("", "invokeOk")) == 3 })

	// A dead upstream.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	d := startNode(t, "epoll", "--hub", "chat", "--access-key", key, "--upstream", dead+"/{event}")
	js2 := startJS(t, "http://"+d.client, []jsClientSpec{{Name: "x", AccessToken: clientToken(t, key, d, "chat", map[string]any{"nameid": "x"}), Invoke: map[string]any{"target": "Echo", "args": []any{1}}}})
	testutil.WaitUntil(t, 10*time.Second, "the error answer", func() bool { return len(js2.find("x", "invokeError")) == 1 })
	if e := *js2.find("x", "invokeError")[0].Error; !strings.Contains(e, "the upstream did not answer") {
		t.Errorf("dead upstream: %q", e)
	}
	if v := d.metric(`edgeplane_webhook_requests_total{upstream="` + dead + `",outcome="failed"}`); v < 2 {
		t.Errorf("failed requests = %v, want the connected event's tries and the invocation", v)
	}
}
