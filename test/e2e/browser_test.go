package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/examples/browser/web"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestBrowserExample opens the example page (examples/browser) in Debian's
// headless chromium, driven by playwright-core (test/browser/drive.js),
// against the real binary. The page is served from another origin than the
// node (--allowed-origins names it), gets its client token from the page
// server and connects through a TCP proxy the test can cut. It must:
// connect (CORS preflight, negotiate, WebSocket with the token in the
// query, permessage-deflate declined), receive a REST broadcast and a user
// send, join a group through the page server's REST call and receive the
// group's messages (and not another group's), come back with
// withAutomaticReconnect() after the node closes its connection (REST
// DELETE: Close with allowReconnect) and after the TCP connection is
// reset, rejoin its group each time and receive again, and send through
// its form.
func TestBrowserExample(t *testing.T) {
	t.Run("json", func(t *testing.T) { testBrowserExample(t, "json") })
	t.Run("messagepack", func(t *testing.T) { testBrowserExample(t, "messagepack") })
	t.Run("sse", func(t *testing.T) { testBrowserExampleOn(t, "json", "sse") })
	t.Run("longpolling", func(t *testing.T) { testBrowserExampleOn(t, "json", "longpolling") })
	t.Run("longpolling-messagepack", func(t *testing.T) { testBrowserExampleOn(t, "messagepack", "longpolling") })
}

func testBrowserExample(t *testing.T, protocol string) { testBrowserExampleOn(t, protocol, "") }

// testBrowserExampleOn runs the example forced onto transport ("": the
// default, WebSockets; "sse"; "longpolling"). The WebSocket checks
// (handshake headers, frames) are for WebSockets only.
func testBrowserExampleOn(t *testing.T, protocol, transport string) {
	chromium, modules := browserDeps(t)
	const key = "browser-access-key-0123456789-abcdef"
	// The page's origin must be known before the node starts.
	page := httptest.NewUnstartedServer(nil)
	origin := "http://" + page.Listener.Addr().String()
	n := startNode(t, "epoll", "--hub", "chat", "--access-key", key, "--allowed-origins", origin)
	px := startProxy(t, n.client)
	page.Config.Handler = web.Handler(web.Config{
		HubURL:      "http://" + px.addr() + "/chat",
		AdminURL:    "http://" + n.admin,
		AccessKey:   key,
		NodeModules: modules,
	})
	page.Start()
	t.Cleanup(page.Close)
	b := startBrowser(t, chromium, origin+"/?protocol="+protocol+"&user=alice&transport="+transport)

	rest := func(path, arg string) {
		t.Helper()
		if c, body := n.restAPI("POST", path, fmt.Sprintf(`{"target":"message","arguments":[%q]}`, arg), key); c != 202 {
			t.Fatalf("POST %s: %d %s", path, c, body)
		}
	}
	// sends sends one message each to everyone, the user, group g1 and
	// group other, then a fence to everyone, and checks what arrived
	// after the previous fence: everything but other's, in order.
	var fence string
	sends := func(round string) {
		t.Helper()
		rest("/api/hubs/chat/:send", "all-"+round)
		rest("/api/hubs/chat/users/alice/:send", "user-"+round)
		rest("/api/hubs/chat/groups/g1/:send", "g1-"+round)
		rest("/api/hubs/chat/groups/other/:send", "other-"+round)
		rest("/api/hubs/chat/:send", "fence-"+round)
		got := b.messagesBetween(fence, "fence-"+round)
		if want := []string{"all-" + round, "user-" + round, "g1-" + round}; !slices.Equal(got, want) {
			t.Fatalf("round %s: the page received %q, want %q", round, got, want)
		}
		fence = "fence-" + round
	}

	// Connect.
	id1 := b.waitPage(1, "connected").ConnectionID
	if id1 == "" {
		t.Fatal("connected without a connection id")
	}
	if transport == "" {
		b.checkHandshake(origin, "http://"+px.addr()+"/chat")
	}

	// A broadcast and a user send arrive before the page joins a group.
	rest("/api/hubs/chat/:send", "all-0")
	rest("/api/hubs/chat/users/alice/:send", "user-0")
	rest("/api/hubs/chat/groups/g1/:send", "g1-0")
	rest("/api/hubs/chat/:send", "fence-0")
	if got, want := b.messagesBetween("", "fence-0"), []string{"all-0", "user-0"}; !slices.Equal(got, want) {
		t.Fatalf("before joining: the page received %q, want %q", got, want)
	}
	fence = "fence-0"

	// Join g1 through the page's form: the page server calls the REST API.
	b.do(map[string]any{"op": "fill", "selector": "#group", "value": "g1"})
	b.do(map[string]any{"op": "click", "selector": "#join-form button"})
	if e := b.waitPage(1, "joined"); e.Group != "g1" || e.ConnectionID != id1 {
		t.Fatalf("joined %q as %q, want g1 as %q", e.Group, e.ConnectionID, id1)
	}
	sends("1")

	// The node closes the connection (Close with allowReconnect): the
	// client reconnects as a new connection and the page rejoins g1.
	if c, body := n.restAPI("DELETE", "/api/hubs/chat/connections/"+id1, "", key); c != 200 {
		t.Fatalf("DELETE connection: %d %s", c, body)
	}
	id2 := b.waitReconnect(2, id1)
	sends("2")

	// The TCP connection is reset under the client (browser: 1006).
	if k := px.reset(); k == 0 {
		t.Fatal("the proxy held no connection to reset")
	}
	id3, reconnects := id2, 1
	if transport == "longpolling" {
		// Chromium sends a poll again whose kept-alive socket was reset
		// before any answer (an idempotent GET): the connection lives
		// on, with its id and its group.
	} else {
		id3, reconnects = b.waitReconnect(3, id2), 2
	}
	sends("3")

	// The page sends to everyone through its form (page server → REST).
	b.do(map[string]any{"op": "fill", "selector": "#text", "value": "from-page 你好"})
	b.do(map[string]any{"op": "click", "selector": "#send-form button"})
	b.waitMessage("from-page 你好")

	if e := b.find("page", "reconnecting"); len(e) != reconnects {
		t.Errorf("%d reconnecting events, want %d", len(e), reconnects)
	}
	for _, ev := range []string{"closed", "error"} {
		for _, e := range b.find("page", ev) {
			t.Errorf("page %s: %s", ev, e.errorText())
		}
	}
	for _, e := range b.find("driver", "pageerror") {
		t.Errorf("page error: %s", e.errorText())
	}
	if transport == "" {
		b.checkFrames(protocol, 3)
	} else if n := len(b.find("ws", "created")); n != 0 {
		t.Errorf("forced onto %s, the page opened %d WebSockets", transport, n)
	}
	t.Logf("%s: connections %s, %s, %s", protocol, id1, id2, id3)
}

// browserDeps finds chromium and the npm packages the browser test needs,
// failing (not skipping) with what installs them.
func browserDeps(t *testing.T) (chromium, modules string) {
	t.Helper()
	chromium = os.Getenv("EDGEPLANE_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is not installed: run `make deps` (it installs Debian's chromium with apt-get), or set EDGEPLANE_CHROMIUM: %v", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("Node.js is not installed: run `make deps`: %v", err)
	}
	modules, err := filepath.Abs("../../examples/browser/node_modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(modules, "@microsoft/signalr/dist/browser/signalr.js"),
		filepath.Join(modules, "@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.js"),
		"../browser/node_modules/playwright-core/package.json",
	} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("npm packages of the browser test are missing: run `make deps` (npm ci in examples/browser and test/browser): %v", err)
		}
	}
	return chromium, modules
}

// ---- TCP proxy ----

// tcpProxy forwards loopback connections to target; reset cuts them all.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[*net.TCPConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.reset()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		a, b := c.(*net.TCPConn), s.(*net.TCPConn)
		p.mu.Lock()
		p.conns[a], p.conns[b] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(a, b)
		go p.pipe(b, a)
	}
}

// pipe copies src to dst; when src ends, it ends dst's writing side.
func (p *tcpProxy) pipe(dst, src *net.TCPConn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.CloseWrite()
	p.mu.Lock()
	delete(p.conns, src)
	p.mu.Unlock()
}

// reset closes every proxied connection with a TCP RST on both sides and
// returns how many it cut.
func (p *tcpProxy) reset() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.SetLinger(0)
		c.Close()
	}
	k := len(p.conns)
	clear(p.conns)
	return k
}

// ---- the browser ----

// browser is test/browser/drive.js: one page in headless chromium.
type browser struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	mu     sync.Mutex
	events []browserEvent
	lines  []string
	nextID int
	done   chan struct{}
}

// browserEvent is one line from drive.js (fields by source, see there).
type browserEvent struct {
	Source       string            `json:"source"`
	Event        string            `json:"event"`
	ID           int               `json:"id"`
	ConnectionID string            `json:"connectionId"`
	Group        string            `json:"group"`
	Args         []json.RawMessage `json:"args"`
	Error        *string           `json:"error"`
	WS           string            `json:"ws"`
	URL          string            `json:"url"`
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Opcode       int               `json:"opcode"`
	Payload      string            `json:"payload"`
}

func (e browserEvent) errorText() string {
	if e.Error == nil {
		return "(none)"
	}
	return *e.Error
}

// header looks a header up case-insensitively.
func (e browserEvent) header(name string) (string, bool) {
	for k, v := range e.Headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func startBrowser(t *testing.T, chromium, url string) *browser {
	t.Helper()
	spec, _ := json.Marshal(map[string]string{"url": url, "executablePath": chromium})
	b := &browser{t: t, done: make(chan struct{})}
	b.cmd = exec.Command("node", "drive.js", string(spec))
	b.cmd.Dir = "../browser"
	b.cmd.Stderr = &b.stderr
	// Its own process group: chromium and its helpers end with it.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start node drive.js: %v", err)
	}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			var e browserEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = browserEvent{Source: "driver", Event: "badline"}
			}
			b.mu.Lock()
			b.events = append(b.events, e)
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		b.stdin.Close()
		select {
		case <-b.done:
		case <-time.After(15 * time.Second):
			t.Errorf("drive.js did not exit after its stdin closed")
		}
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		b.cmd.Wait()
		if t.Failed() {
			b.mu.Lock()
			t.Logf("browser events:\n%s\ndrive.js stderr:\n%s", strings.Join(b.lines, "\n"), b.stderr.String())
			b.mu.Unlock()
		}
	})
	b.waitFor(60*time.Second, "the page to load in chromium", func() bool {
		return len(b.find("driver", "loaded")) > 0
	})
	return b
}

// waitFor waits for cond, failing early if drive.js gave up or exited.
func (b *browser) waitFor(d time.Duration, what string, cond func() bool) {
	b.t.Helper()
	testutil.WaitUntil(b.t, d, what, func() bool {
		if cond() {
			return true
		}
		if f := b.find("driver", "fatal"); len(f) > 0 {
			b.t.Fatalf("drive.js failed while waiting for %s: %s", what, f[0].errorText())
		}
		select {
		case <-b.done:
			b.t.Fatalf("drive.js exited while waiting for %s", what)
		default:
		}
		return false
	})
}

func (b *browser) find(source, event string) []browserEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []browserEvent
	for _, e := range b.events {
		if e.Source == source && e.Event == event {
			out = append(out, e)
		}
	}
	return out
}

// waitPage waits for the page's k-th event of a kind and returns it.
func (b *browser) waitPage(k int, event string) browserEvent {
	b.t.Helper()
	b.waitFor(15*time.Second, fmt.Sprintf("page event %s #%d", event, k), func() bool {
		for _, bad := range []string{"error", "closed"} {
			if e := b.find("page", bad); len(e) > 0 && event != bad {
				b.t.Fatalf("waiting for page event %s #%d: the page reported %s: %s", event, k, bad, e[0].errorText())
			}
		}
		return len(b.find("page", event)) >= k
	})
	return b.find("page", event)[k-1]
}

// waitReconnect waits for the k-th connection (the (k-1)-th reconnect)
// and for the page to have rejoined g1 with it; it returns its id.
func (b *browser) waitReconnect(k int, prev string) string {
	b.t.Helper()
	id := b.waitPage(k-1, "reconnected").ConnectionID
	if id == "" || id == prev {
		b.t.Fatalf("reconnected as %q after %q: want a new connection id", id, prev)
	}
	if e := b.waitPage(k, "joined"); e.Group != "g1" || e.ConnectionID != id {
		b.t.Fatalf("rejoined %q as %q, want g1 as %q", e.Group, e.ConnectionID, id)
	}
	return id
}

// messages lists the first argument of every message the page showed,
// in order.
func (b *browser) messages() []string {
	var out []string
	for _, e := range b.find("page", "message") {
		var s string
		if len(e.Args) > 0 {
			json.Unmarshal(e.Args[0], &s)
		}
		out = append(out, s)
	}
	return out
}

func (b *browser) waitMessage(m string) {
	b.t.Helper()
	b.waitFor(10*time.Second, "message "+m, func() bool { return slices.Contains(b.messages(), m) })
}

// messagesBetween waits for message to and returns what the page received
// after message from ("": from the start) and before to.
func (b *browser) messagesBetween(from, to string) []string {
	b.t.Helper()
	b.waitMessage(to)
	got := b.messages()
	i := 0
	if from != "" {
		i = slices.Index(got, from) + 1
	}
	return got[i:slices.Index(got, to)]
}

// do runs a page operation (fill, click) and waits for it.
func (b *browser) do(cmd map[string]any) {
	b.t.Helper()
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.mu.Unlock()
	cmd["id"] = id
	line, _ := json.Marshal(cmd)
	if _, err := b.stdin.Write(append(line, '\n')); err != nil {
		b.t.Fatalf("drive.js stdin: %v", err)
	}
	var res browserEvent
	b.waitFor(15*time.Second, fmt.Sprintf("%v", cmd), func() bool {
		for _, ev := range []string{"done", "failed"} {
			for _, e := range b.find("driver", ev) {
				if e.ID == id {
					res = e
					return true
				}
			}
		}
		return false
	})
	if res.Event == "failed" {
		b.t.Fatalf("%v: %s", cmd, res.errorText())
	}
}

// checkHandshake checks the first WebSocket's upgrade as chromium saw it:
// it went to the hub with the token in the query (a browser cannot set
// Authorization) and the page's Origin, offered permessage-deflate, and
// got a 101 that declines it.
func (b *browser) checkHandshake(origin, hubURL string) {
	b.t.Helper()
	b.waitFor(5*time.Second, "the WebSocket handshake in DevTools", func() bool {
		return len(b.find("ws", "request")) > 0 && len(b.find("ws", "response")) > 0
	})
	req, resp := b.find("ws", "request")[0], b.find("ws", "response")[0]
	wsURL := "ws" + strings.TrimPrefix(hubURL, "http")
	if !strings.HasPrefix(req.URL, wsURL+"?") || !strings.Contains(req.URL, "access_token=") {
		b.t.Errorf("WebSocket URL %q: want %s?…access_token=…", req.URL, wsURL)
	}
	if o, _ := req.header("Origin"); o != origin {
		b.t.Errorf("WebSocket request Origin %q, want %q", o, origin)
	}
	if x, _ := req.header("Sec-WebSocket-Extensions"); !strings.Contains(x, "permessage-deflate") {
		b.t.Errorf("chromium offered extensions %q, expected permessage-deflate", x)
	}
	if resp.Status != 101 {
		b.t.Errorf("WebSocket handshake status %d, want 101", resp.Status)
	}
	if x, ok := resp.header("Sec-WebSocket-Extensions"); ok {
		b.t.Errorf("the 101 accepted extensions %q: the node implements none", x)
	}
}

// checkFrames checks the frames of the page's hub WebSockets (want of
// them): JSON records travel in text frames; with MessagePack every frame
// after the handshake response is binary. Each carried the handshake
// response first.
func (b *browser) checkFrames(protocol string, want int) {
	b.t.Helper()
	frames := map[string][]browserEvent{}
	var order []string
	for _, e := range b.find("ws", "frameReceived") {
		if _, ok := frames[e.WS]; !ok {
			order = append(order, e.WS)
		}
		frames[e.WS] = append(frames[e.WS], e)
	}
	if len(order) != want {
		b.t.Errorf("frames on %d WebSockets, want %d", len(order), want)
	}
	for _, ws := range order {
		fs := frames[ws]
		if protocol == "json" && fs[0].Payload != "{}\x1e" {
			b.t.Errorf("WebSocket %s: first frame %q, want the handshake response {}␞", ws, fs[0].Payload)
		}
		for i, f := range fs[1:] {
			if op := map[string]int{"json": 1, "messagepack": 2}[protocol]; f.Opcode != op {
				b.t.Errorf("WebSocket %s frame %d: opcode %d, want %d for %s", ws, i+1, f.Opcode, op, protocol)
			}
		}
	}
}
