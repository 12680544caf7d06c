package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const testKey = "webhook-test-access-key-0123456789"

// validSignature checks X-ASRS-Signature as the Functions extension does
// (SignalRRequestResolver.ValidateSignature): some comma-separated entry
// equals "sha256=" + hex HMAC-SHA256(key, connection id), compared
// case-insensitively.
func validSignature(r *http.Request, key string) bool {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(r.Header.Get("X-ASRS-Connection-Id")))
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	for _, s := range strings.Split(r.Header.Get("X-ASRS-Signature"), ",") {
		if strings.EqualFold(strings.TrimSpace(s), want) {
			return true
		}
	}
	return false
}

// received is one request the test upstream got.
type received struct {
	path, conn, hub, category, event, user, query string
	claims                                        []string
	body                                          string
	signed                                        bool
	contentType                                   string
}

type receiver struct {
	mu     sync.Mutex
	got    []received
	answer func(r *http.Request, body []byte) (int, string)
	srv    *httptest.Server
}

func newReceiver(t *testing.T, key string, answer func(r *http.Request, body []byte) (int, string)) *receiver {
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := r.Header
		rc.mu.Lock()
		rc.got = append(rc.got, received{
			path: r.URL.RequestURI(), conn: h.Get("X-ASRS-Connection-Id"), hub: h.Get("X-ASRS-Hub"),
			category: h.Get("X-ASRS-Category"), event: h.Get("X-ASRS-Event"), user: h.Get("X-ASRS-User-Id"),
			query: h.Get("X-ASRS-Client-Query"), claims: h.Values("X-ASRS-User-Claims"), body: string(body),
			signed: validSignature(r, key), contentType: h.Get("Content-Type"),
		})
		rc.mu.Unlock()
		code, out := 200, ""
		if rc.answer != nil {
			code, out = rc.answer(r, body)
		}
		w.WriteHeader(code)
		io.WriteString(w, out)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) list() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// delivered records Deliver calls: the JSON records, and the MessagePack
// ones (nil for a JSON client) at the same index.
type delivered struct {
	mu   sync.Mutex
	recs []string
	mps  [][]byte
}

func (d *delivered) deliver(hub, conn string, rec, mp []byte) {
	d.mu.Lock()
	d.recs = append(d.recs, hub+"/"+conn+" "+string(rec))
	d.mps = append(d.mps, mp)
	d.mu.Unlock()
}

func (d *delivered) messagePack() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.mps)
}

func (d *delivered) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.recs)
}

func newUpstream(t *testing.T, cfg Config) *Upstream {
	t.Helper()
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u
}

func metric(t *testing.T, s *metricset.Set, name string) string {
	t.Helper()
	var b bytes.Buffer
	s.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestWebhookEvents: connected, messages and disconnected reach the
// setting that matches them (first match wins), signed for every key, with
// Azure's headers and bodies; the connected event's claims and query ride
// on the connection's later events; an invocation no setting takes is
// refused.
func TestWebhookEvents(t *testing.T) {
	rc := newReceiver(t, testKey, nil)
	other := newReceiver(t, testKey, nil)
	u := newUpstream(t, Config{
		Settings: []Setting{
			{URLTemplate: other.srv.URL + "/news/{event}", HubPattern: "news"},
			{URLTemplate: rc.srv.URL + "/api/{hub}/{category}/{event}", HubPattern: "chat, talk", EventPattern: "connected,disconnected,Echo,note"},
		},
		AccessKeys: []string{"another-key-0123456789abcdef0123", testKey},
	})
	ctx := &backplane.ConnectContext{Query: "room=42&lang=en", Claims: []byte(`{"nameid":"alice","role":["admin","ops"],"exp":1,"aud":"x"}`)}
	events := []backplane.Event{
		{Kind: backplane.EventConnected, Hub: "chat", ConnID: "c1", UserID: "alice", Context: ctx},
		{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c1", UserID: "alice", Target: "note", Arguments: []byte(`["hi",1]`)},
		{Kind: backplane.EventDisconnected, Hub: "chat", ConnID: "c1", UserID: "alice", Reason: "peer_gone"},
		{Kind: backplane.EventConnected, Hub: "news", ConnID: "n1"},
		// A resumed socket (stateful reconnect) is no event of Azure's.
		{Kind: backplane.EventReconnected, Hub: "news", ConnID: "n1"},
	}
	for i := range events {
		if err := u.Send(&events[i]); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := u.Send(&backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c1", Target: "other", InvocationID: "1"}); !errors.Is(err, ErrNoUpstream) || !errors.Is(err, backplane.ErrNoUpstream) {
		t.Fatalf("an invocation no setting takes: %v", err)
	}
	if err := u.Send(&backplane.Event{Kind: backplane.EventConnected, Hub: "lobby", ConnID: "l1"}); err != nil {
		t.Fatalf("a hub no setting takes: %v", err)
	}
	testutil.WaitUntil(t, 5*time.Second, "3 requests to chat's upstream, 1 to news'", func() bool {
		return len(rc.list()) == 3 && len(other.list()) == 1
	})
	claims := []string{"nameid: alice", "role: admin", "role: ops"}
	want := []received{
		{"/api/chat/connections/connected", "c1", "chat", "connections", "connected", "alice", "room=42&lang=en", claims, `{"type":10}`, true, "application/json"},
		{"/api/chat/messages/note", "c1", "chat", "messages", "note", "alice", "room=42&lang=en", claims, `{"type":1,"target":"note","arguments":["hi",1]}`, true, "application/json"},
		{"/api/chat/connections/disconnected", "c1", "chat", "connections", "disconnected", "alice", "room=42&lang=en", claims, `{"type":11,"error":"peer_gone"}`, true, "application/json"},
	}
	for i, got := range rc.list() {
		if fmt.Sprint(got) != fmt.Sprint(want[i]) {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	if got := other.list()[0]; got.path != "/news/connected" || !got.signed || got.contentType != "application/json" || got.user != "" || got.claims != nil {
		t.Errorf("news request %+v", got)
	}
	// Counted once the answer is read, after the receiver saw the request.
	testutil.WaitUntil(t, 5*time.Second, "3 ok requests to chat's upstream counted", func() bool {
		return metric(t, u.Metrics(), `edgeplane_webhook_requests_total{upstream="`+rc.srv.URL+`",outcome="ok"}`) == "3"
	})
	// n1's events are posted in order: its disconnected comes right after
	// its connected, with nothing for the resume between them.
	if err := u.Send(&backplane.Event{Kind: backplane.EventDisconnected, Hub: "news", ConnID: "n1"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 5*time.Second, "a second request to news' upstream", func() bool { return len(other.list()) >= 2 })
	if got := other.list(); len(got) != 2 || got[1].path != "/news/disconnected" {
		t.Errorf("news requests %+v, want connected then disconnected", got)
	}
}

// TestWebhookInvocationAnswers: a blocking invocation's answer goes back
// to its connection: the upstream's Completion record as is, a JSON value
// as the result, an empty answer as an empty Completion, another status
// or no answer at all as an error Completion.
func TestWebhookInvocationAnswers(t *testing.T) {
	rc := newReceiver(t, testKey, func(r *http.Request, body []byte) (int, string) {
		switch r.Header.Get("X-ASRS-Event") {
		case "framed":
			return 200, `{"type":3,"invocationId":"1","result":"from functions"}` + "\x1e"
		case "value":
			return 200, `{"n":42}`
		case "empty":
			return 204, ""
		case "wrong":
			return 200, `{"type":3,"invocationId":"someone-else","result":1}` + "\x1e"
		case "fail":
			return 500, "boom"
		}
		return 200, ""
	})
	d := &delivered{}
	u := newUpstream(t, Config{Settings: []Setting{{URLTemplate: rc.srv.URL + "/{event}"}}, AccessKeys: []string{testKey}, Deliver: d.deliver})
	for i, target := range []string{"framed", "value", "empty", "wrong", "fail", "fire-and-forget"} {
		id := fmt.Sprint(i + 1)
		if target == "fire-and-forget" {
			id = ""
		}
		if err := u.Send(&backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c", InvocationID: id, Target: target, Arguments: []byte(`[]`)}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitUntil(t, 5*time.Second, "5 answers and 6 requests", func() bool { return len(d.list()) == 5 && len(rc.list()) == 6 })
	want := []string{
		`chat/c {"type":3,"invocationId":"1","result":"from functions"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"2","result":{"n":42}}` + "\x1e",
		`chat/c {"type":3,"invocationId":"3"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"4","error":"Invocation failed: the upstream's answer is not a Completion of this invocation"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"5","error":"Invocation failed, status code 500"}` + "\x1e",
	}
	if got := d.list(); !slices.Equal(got, want) {
		t.Fatalf("answers:\n%q\nwant\n%q", got, want)
	}
	for i, mp := range d.messagePack() {
		if mp != nil {
			t.Errorf("answer %d to a JSON client has a MessagePack form %x", i, mp)
		}
	}
	if got := rc.list()[4]; got.body != `{"type":1,"invocationId":"5","target":"fail","arguments":[]}` {
		t.Errorf("invocation body %q", got.body)
	}

	// A dead upstream: the invocation is answered with an error, posted
	// once.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	d2 := &delivered{}
	u2 := newUpstream(t, Config{Settings: []Setting{{URLTemplate: dead + "/x"}}, Deliver: d2.deliver})
	u2.Send(&backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c", InvocationID: "9", Target: "t"})
	testutil.WaitUntil(t, 10*time.Second, "the error answer", func() bool { return len(d2.list()) == 1 })
	if got := d2.list()[0]; !strings.Contains(got, `"invocationId":"9","error":"Invocation failed: the upstream did not answer"`) {
		t.Fatalf("dead upstream answer %q", got)
	}
	if v := metric(t, u2.Metrics(), `edgeplane_webhook_requests_total{upstream="`+dead+`",outcome="failed"}`); v != "1" {
		t.Errorf("failed requests %q, want 1 (invocations are not retried)", v)
	}
}

// TestWebhookOrderAndRetries: each connection's events arrive in the
// order sent, across workers; a connection event that meets a 5xx is
// posted again (after back-off) and keeps its place.
func TestWebhookOrderAndRetries(t *testing.T) {
	var mu sync.Mutex
	failed := map[string]bool{}
	rc := newReceiver(t, testKey, func(r *http.Request, body []byte) (int, string) {
		key := r.Header.Get("X-ASRS-Connection-Id") + r.Header.Get("X-ASRS-Event")
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-ASRS-Event") == "connected" && !failed[key] {
			failed[key] = true
			return 503, ""
		}
		return 200, ""
	})
	u := newUpstream(t, Config{Settings: []Setting{{URLTemplate: rc.srv.URL + "/"}}, AccessKeys: []string{testKey}, Workers: 4, RetryBackoff: 10 * time.Millisecond})
	const conns, msgs = 20, 10
	for i := range conns {
		c := fmt.Sprintf("c%02d", i)
		u.Send(&backplane.Event{Kind: backplane.EventConnected, Hub: "chat", ConnID: c})
		for j := range msgs {
			u.Send(&backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: c, Target: "m", Arguments: []byte(fmt.Sprintf("[%d]", j))})
		}
		u.Send(&backplane.Event{Kind: backplane.EventDisconnected, Hub: "chat", ConnID: c})
	}
	total := conns * (msgs + 3) // one failed connected each
	testutil.WaitUntil(t, 20*time.Second, "every request", func() bool { return len(rc.list()) == total })
	per := map[string][]string{}
	for _, r := range rc.list() {
		if !r.signed {
			t.Fatalf("unsigned request %+v", r)
		}
		per[r.conn] = append(per[r.conn], r.event+r.body)
	}
	for c, seq := range per {
		want := []string{`connected{"type":10}`, `connected{"type":10}`}
		for j := range msgs {
			want = append(want, fmt.Sprintf(`m{"type":1,"target":"m","arguments":[%d]}`, j))
		}
		want = append(want, `disconnected{"type":11}`)
		if !slices.Equal(seq, want) {
			t.Fatalf("%s got %q", c, seq)
		}
	}
	if v := metric(t, u.Metrics(), `edgeplane_webhook_retries_total{upstream="`+rc.srv.URL+`"}`); v != fmt.Sprint(conns) {
		t.Errorf("retries %q, want %d", v, conns)
	}
}

// TestWebhookSlowUpstream: an upstream that does not answer fills the
// queues; Send then refuses events (never waits) and counts them, and the
// events queued before are delivered once it answers again.
func TestWebhookSlowUpstream(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, testKey, func(r *http.Request, body []byte) (int, string) {
		<-release
		return 200, ""
	})
	u := newUpstream(t, Config{Settings: []Setting{{URLTemplate: rc.srv.URL + "/"}}, Workers: 2, QueueSize: 3, Timeout: time.Minute})
	accepted, refused := 0, 0
	for i := range 50 {
		err := u.Send(&backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: fmt.Sprint("c", i%7), Target: "t"})
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	// Each worker holds one event in flight and three queued.
	if accepted > 2*(3+1) || refused < 50-2*(3+1) {
		t.Fatalf("accepted %d, refused %d with 2 workers of 3 queued each", accepted, refused)
	}
	if v := metric(t, u.Metrics(), `edgeplane_webhook_dropped_total{upstream="`+rc.srv.URL+`"}`); v != fmt.Sprint(refused) {
		t.Errorf("dropped %q, want %d", v, refused)
	}
	close(release)
	testutil.WaitUntil(t, 10*time.Second, "the accepted events", func() bool { return len(rc.list()) == accepted })
}

func TestParseSetting(t *testing.T) {
	s, err := ParseSetting("https://app/api/{hub}/{category}/{event};hub=chat,news;category=messages; event=*")
	if err != nil || s.URLTemplate != "https://app/api/{hub}/{category}/{event}" || s.HubPattern != "chat,news" || s.CategoryPattern != "messages" || s.EventPattern != "*" {
		t.Fatalf("%+v %v", s, err)
	}
	if !s.Match("NEWS", "messages", "x") || s.Match("chat", "connections", "connected") || s.Match("talk", "messages", "x") {
		t.Fatal("Match")
	}
	if got := s.URL("a b", "messages", "Send/x"); got != "https://app/api/a%20b/messages/Send%2Fx" {
		t.Fatalf("URL %q", got)
	}
	for _, bad := range []string{"app/{hub}", "ftp://app/", "https://app/;hub", "https://app/;colour=red"} {
		if _, err := ParseSetting(bad); !errors.Is(err, ErrSetting) {
			t.Errorf("ParseSetting(%q) = %v", bad, err)
		}
	}
}
