package node_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"github.com/edgeplane/edgeplane/poller"
)

// The SSE and Long Polling transports against a node, with Go's HTTP/1.1
// client (keep-alive, a socket per concurrent request).

const rs = "\x1e"

type httpClient struct {
	t     *testing.T
	base  string // http://addr/chat
	admin string
	hc    *http.Client
	token string
}

func newHTTPClient(t *testing.T, n *node.Node) *httpClient {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	c := &httpClient{t: t, base: "http://" + n.Addr().String() + "/chat", admin: "http://" + n.AdminAddr().String(), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	resp, body := c.do("POST", c.base+"/negotiate?negotiateVersion=1", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("negotiate: %d", resp.StatusCode)
	}
	var neg struct {
		ConnectionToken     string
		AvailableTransports []struct {
			Transport       string
			TransferFormats []string
		}
	}
	if err := json.Unmarshal([]byte(body), &neg); err != nil {
		t.Fatal(err)
	}
	c.token = neg.ConnectionToken
	return c
}

func (c *httpClient) do(method, url, accept, body string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (c *httpClient) url() string { return c.base + "?id=" + c.token }

func (c *httpClient) poll() (int, string) {
	c.t.Helper()
	resp, body := c.do("GET", c.url(), "", "")
	return resp.StatusCode, body
}

func (c *httpClient) post(body string) int {
	c.t.Helper()
	resp, _ := c.do("POST", c.url(), "", body)
	return resp.StatusCode
}

func (c *httpClient) broadcast(target string) {
	c.t.Helper()
	resp, err := http.Post(c.admin+"/api/hubs/chat/:send", "application/json", strings.NewReader(`{"target":"`+target+`","arguments":["x"]}`))
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		c.t.Fatalf("REST send: %d", resp.StatusCode)
	}
}

// connectLongPoll opens a long-polling connection: first poll, handshake.
func connectLongPoll(t *testing.T, n *node.Node) *httpClient {
	c := newHTTPClient(t, n)
	if code, body := c.poll(); code != 200 || body != "" {
		t.Fatalf("first poll: %d %q, want 200 and nothing", code, body)
	}
	if code := c.post(`{"protocol":"json","version":1}` + rs); code != 200 {
		t.Fatalf("handshake POST: %d", code)
	}
	if code, body := c.poll(); code != 200 || body != "{}"+rs {
		t.Fatalf("poll after handshake: %d %q, want the handshake response", code, body)
	}
	return c
}

func TestNegotiateListsTransports(t *testing.T) {
	for _, tc := range []struct {
		transports, protocols []string
		want                  string
	}{
		{nil, nil, `[{"transport":"WebSockets","transferFormats":["Text","Binary"]},{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text","Binary"]}]`},
		{[]string{"LongPolling", "sse"}, nil, `[{"transport":"LongPolling","transferFormats":["Text","Binary"]},{"transport":"ServerSentEvents","transferFormats":["Text"]}]`},
		{nil, []string{"messagepack"}, `[{"transport":"WebSockets","transferFormats":["Binary"]},{"transport":"LongPolling","transferFormats":["Binary"]}]`},
	} {
		n := nodetest.Start(t, node.Config{Conn: conn.Config{Transports: tc.transports, Protocols: tc.protocols}})
		resp, err := http.Post("http://"+n.Addr().String()+"/chat/negotiate?negotiateVersion=1", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var neg struct{ AvailableTransports json.RawMessage }
		json.NewDecoder(resp.Body).Decode(&neg)
		resp.Body.Close()
		if got := string(neg.AvailableTransports); got != tc.want {
			t.Errorf("transports %v protocols %v: availableTransports %s, want %s", tc.transports, tc.protocols, got, tc.want)
		}
	}
}

func TestLongPollingReceivesBroadcasts(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := connectLongPoll(t, n)
	testutil.WaitUntil(t, 5*time.Second, "connection registered", func() bool { return n.Router().Hub("chat").Len() == 1 })
	// Queued between polls: both in the next poll.
	c.broadcast("a")
	c.broadcast("b")
	code, body := c.poll()
	if code != 200 || body != `{"type":1,"target":"a","arguments":["x"]}`+rs+`{"type":1,"target":"b","arguments":["x"]}`+rs {
		t.Fatalf("poll: %d %q", code, body)
	}
	// Held poll answered by a broadcast.
	done := make(chan string, 1)
	go func() { _, b := c.poll(); done <- b }()
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return heldPolls(n) == 1 })
	c.broadcast("c")
	if got := <-done; got != `{"type":1,"target":"c","arguments":["x"]}`+rs {
		t.Fatalf("held poll got %q", got)
	}
}

func heldPolls(n *node.Node) int { return n.Server().HeldPolls() }

func TestLongPollTimeoutAnswersEmpty(t *testing.T) {
	n := nodetest.Start(t, node.Config{Conn: conn.Config{PollTimeout: time.Second}})
	c := connectLongPoll(t, n)
	code, body := c.poll() // nothing to send: answered empty at the poll time-out
	if code != 200 || body != "" {
		t.Fatalf("timed-out poll: %d %q, want 200 and nothing", code, body)
	}
	if code := c.post(`{"type":6}` + rs); code != 200 {
		t.Fatalf("connection gone after a timed-out poll: POST %d", code)
	}
}

func TestLongPollSupersededGets204(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := connectLongPoll(t, n)
	first := make(chan int, 1)
	go func() { code, _ := c.poll(); first <- code }()
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return heldPolls(n) == 1 })
	second := make(chan int, 1)
	go func() { code, _ := c.poll(); second <- code }()
	if code := <-first; code != http.StatusNoContent {
		t.Fatalf("superseded poll: %d, want 204", code)
	}
	c.broadcast("a")
	if code := <-second; code != 200 {
		t.Fatalf("newer poll: %d, want 200", code)
	}
}

func TestLongPollDeleteEndsConnection(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := connectLongPoll(t, n)
	held := make(chan int, 1)
	go func() { code, _ := c.poll(); held <- code }()
	testutil.WaitUntil(t, 5*time.Second, "poll held", func() bool { return heldPolls(n) == 1 })
	resp, _ := c.do("DELETE", c.url(), "", "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %d, want 202", resp.StatusCode)
	}
	if code := <-held; code != http.StatusNoContent {
		t.Fatalf("poll held at DELETE: %d, want 204", code)
	}
	if code := c.post(`{"type":6}` + rs); code != http.StatusNotFound {
		t.Fatalf("POST after DELETE: %d, want 404", code)
	}
	if code, _ := c.poll(); code != http.StatusNotFound {
		t.Fatalf("poll after DELETE: %d, want 404", code)
	}
	testutil.WaitUntil(t, 5*time.Second, "connection left its hub", func() bool { return n.Router().Hub("chat").Len() == 0 })
}

func TestHTTPTransportStatusCodes(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := newHTTPClient(t, n)
	if code := c.post(`{"protocol":"json","version":1}` + rs); code != http.StatusNotFound {
		t.Errorf("POST before any GET: %d, want 404", code)
	}
	if resp, _ := c.do("POST", c.base, "", "x"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST without id: %d, want 400", resp.StatusCode)
	}
	if resp, _ := c.do("GET", c.base+"?id=bogus", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET with a bad id: %d, want 404", resp.StatusCode)
	}
	if resp, _ := c.do("PUT", c.url(), "", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d, want 405", resp.StatusCode)
	}
	if code, _ := c.poll(); code != 200 {
		t.Fatalf("first poll: %d", code)
	}
	if resp, _ := c.do("GET", c.url(), "text/event-stream", ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("SSE on a long-polling connection: %d, want 400", resp.StatusCode)
	}
	only := nodetest.Start(t, node.Config{Conn: conn.Config{Transports: []string{"WebSockets"}}})
	o := newHTTPClient(t, only)
	if code, _ := o.poll(); code != http.StatusNotFound {
		t.Errorf("poll on a WebSockets-only node: %d, want 404", code)
	}
}

func TestHTTPTransportKeepAlive(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := connectLongPoll(t, n)
	var reused atomic.Int32
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused.Add(1)
		}
	}}
	for range 3 {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", c.url(), strings.NewReader(`{"type":6}`+rs))
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	if reused.Load() != 3 {
		t.Fatalf("%d of 3 POSTs reused a kept-alive socket", reused.Load())
	}
}

func TestLongPollLimits(t *testing.T) {
	n := nodetest.Start(t, node.Config{Conn: conn.Config{MaxMessageBytes: 1024, MaxMessageRate: 5}})
	c := connectLongPoll(t, n)
	if code := c.post(`{"type":1,"target":"m","arguments":["` + strings.Repeat("x", 2000) + `"]}` + rs); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST over --max-message-bytes: %d, want 413", code)
	}
	d := connectLongPoll(t, n)
	if code := d.post(strings.Repeat(`{"type":6}`+rs, 20)); code != 200 {
		t.Fatalf("POST: %d", code)
	}
	code, body := d.poll()
	if code != 200 || !strings.Contains(body, `"type":7`) {
		t.Fatalf("poll after exceeding the message rate: %d %q, want the Close message", code, body)
	}
	if code, _ := d.poll(); code != http.StatusNotFound {
		t.Fatalf("poll after the close: %d, want 404", code)
	}
}

func TestLongPollSlowClientBounded(t *testing.T) {
	n := nodetest.Start(t, node.Config{PollerConfig: pollerQueue(4096)})
	c := connectLongPoll(t, n)
	testutil.WaitUntil(t, 5*time.Second, "registered", func() bool { return n.Router().Hub("chat").Len() == 1 })
	for i := 0; i < 200 && n.Router().Hub("chat").Len() == 1; i++ {
		c.broadcast(strings.Repeat("t", 100))
	}
	testutil.WaitUntil(t, 5*time.Second, "slow client dropped", func() bool { return n.Router().Hub("chat").Len() == 0 })
}

func TestLongPollClientThatStopsPollingIsReaped(t *testing.T) {
	n := nodetest.Start(t, node.Config{Conn: conn.Config{ReconnectWindow: time.Second}})
	c := connectLongPoll(t, n)
	testutil.WaitUntil(t, 10*time.Second, "connection reaped", func() bool { return n.Router().Hub("chat").Len() == 0 })
	if code := c.post(`{"type":6}` + rs); code != http.StatusNotFound {
		t.Fatalf("POST after reaping: %d, want 404", code)
	}
}

func TestSSEReceivesEvents(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := newHTTPClient(t, n)
	req, _ := http.NewRequest("GET", c.url(), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" ||
		resp.Header.Get("Cache-Control") != "no-cache, no-store" || resp.Header.Get("Pragma") != "no-cache" {
		t.Fatalf("SSE response: %d %v", resp.StatusCode, resp.Header)
	}
	r := bufio.NewReader(resp.Body)
	line := func() string {
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		return s
	}
	if l := line(); l != ":\r\n" {
		t.Fatalf("first line %q, want a comment", l)
	}
	if code := c.post(`{"protocol":"json","version":1}` + rs); code != 200 {
		t.Fatalf("handshake POST: %d", code)
	}
	if l, blank := line(), line(); l != "data: {}"+rs+"\r\n" || blank != "\r\n" {
		t.Fatalf("handshake response event %q %q", l, blank)
	}
	testutil.WaitUntil(t, 5*time.Second, "registered", func() bool { return n.Router().Hub("chat").Len() == 1 })
	c.broadcast("a")
	if l := line(); l != `data: {"type":1,"target":"a","arguments":["x"]}`+rs+"\r\n" {
		t.Fatalf("event %q", l)
	}
	line()
	if resp2, _ := c.do("GET", c.url(), "text/event-stream", ""); resp2.StatusCode != http.StatusBadRequest {
		t.Errorf("second SSE GET: %d, want 400", resp2.StatusCode)
	}
	resp.Body.Close() // the client ends SSE by dropping the socket
	testutil.WaitUntil(t, 5*time.Second, "connection gone with its stream", func() bool { return n.Router().Hub("chat").Len() == 0 })
}

func TestSSERefusesMessagePack(t *testing.T) {
	n := nodetest.Start(t, node.Config{})
	c := newHTTPClient(t, n)
	nc, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "GET /chat?id="+c.token+" HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	r := bufio.NewReader(nc)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("SSE GET: %v", err)
	}
	if code := c.post(`{"protocol":"messagepack","version":1}` + rs); code != 200 {
		t.Fatalf("handshake POST: %d", code)
	}
	all, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(all), `"error":"Cannot use the 'messagepack' protocol on the current transport.`) {
		t.Fatalf("stream: %q, want the handshake error", all)
	}
}

func pollerQueue(n int) poller.Config { return poller.Config{MaxQueueBytes: n} }

// TestLongPollLosesNoBroadcastRacingPolls: 200 broadcasts sent back to
// back while the client polls in a loop on one kept-alive socket, so that
// broadcasts answer held polls, queue between polls, and race the next
// poll on the socket the answer came on: every one arrives, once, in
// order, with no poll left unanswered.
func TestLongPollLosesNoBroadcastRacingPolls(t *testing.T) {
	const msgs = 200
	n := nodetest.Start(t, node.Config{})
	c := connectLongPoll(t, n)
	c.hc.Timeout = 5 * time.Second // a poll the node lost fails the test rather than hanging it
	testutil.WaitUntil(t, 5*time.Second, "connection registered", func() bool { return n.Router().Hub("chat").Len() == 1 })
	type result struct {
		got []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for len(r.got) < msgs {
			resp, err := c.hc.Get(c.url())
			if err != nil {
				r.err = err
				break
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				r.err = fmt.Errorf("poll: %d %q", resp.StatusCode, b)
				break
			}
			for _, rec := range strings.Split(string(b), rs) {
				if rec == "" {
					continue
				}
				var m struct{ Target string }
				if err := json.Unmarshal([]byte(rec), &m); err != nil {
					r.err = fmt.Errorf("record %q: %v", rec, err)
					break
				}
				r.got = append(r.got, m.Target)
			}
		}
		done <- r
	}()
	for i := range msgs {
		c.broadcast(strconv.Itoa(i))
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("after %d of %d broadcasts (last %q): %v", len(r.got), msgs, r.got[max(0, len(r.got)-1):], r.err)
	}
	for i, target := range r.got {
		if target != strconv.Itoa(i) {
			t.Fatalf("broadcast %d arrived as %q: got %q", i, target, r.got)
		}
	}
}
