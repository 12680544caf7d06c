package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/auth"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeplane-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "edgeplane")
	build := exec.Command("go", "build", "-o", binPath, "github.com/edgeplane/edgeplane/cmd/edgeplane")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build edgeplane:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

type node struct {
	t      *testing.T
	cmd    *exec.Cmd
	client string // host:port
	admin  string
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
}

var startedRE = regexp.MustCompile(`msg="edgeplane node started" listen=(\S+) admin=(\S+)`)

// startNode runs the real binary on random loopback ports.
func startNode(t *testing.T, backend string, args ...string) *node {
	t.Helper()
	return startNodeWrapped(t, nil, backend, args...)
}

// startNodeWrapped runs the binary under a wrapper command (e.g. prlimit).
func startNodeWrapped(t *testing.T, wrapper []string, backend string, args ...string) *node {
	t.Helper()
	all := append([]string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--poller", backend, "--log-level", "debug"}, args...)
	argv := append(append(append([]string{}, wrapper...), binPath), all...)
	n := &node{t: t, cmd: exec.Command(argv[0], argv[1:]...), exited: make(chan struct{})}
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			n.log.WriteString(line + "\n")
			n.mu.Unlock()
			if m := startedRE.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		n.cmd.Wait()
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() || os.Getenv("EDGEPLANE_NODE_LOGS") != "" {
			t.Logf("node log:\n%s", n.logs())
		}
	})
	select {
	case a := <-addrs:
		n.client, n.admin = a[0], a[1]
	case <-n.exited:
		t.Fatalf("node exited at start:\n%s", n.logs())
	case <-time.After(15 * time.Second):
		t.Fatalf("node did not start:\n%s", n.logs())
	}
	return n
}

func (n *node) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// api calls the admin port; token may be "".
func (n *node) api(method, path, body, token string) (int, string) {
	n.t.Helper()
	req, err := http.NewRequest(method, "http://"+n.admin+path, strings.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one sample from /metrics (-1 if absent).
func (n *node) metric(name string) float64 {
	n.t.Helper()
	_, body := n.api("GET", "/metrics", "", "")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				n.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return -1
}

// token signs claims with key, adding exp (an hour) unless claims has one.
func token(t *testing.T, key string, claims map[string]any) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	s, err := auth.Sign(claims, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clientToken is a client access token for hub on n: its audience is the
// hub's client URL, http://{client address}/{hub} (the port does not
// count, so it opens the hub on every node of this host).
func clientToken(t *testing.T, key string, n *node, hub string, claims map[string]any) string {
	t.Helper()
	claims["aud"] = "http://" + n.client + "/" + hub
	return token(t, key, claims)
}

// restAPI calls the REST API with a REST token for the request's URL (its
// audience), signed with key.
func (n *node) restAPI(method, path, body, key string) (int, string) {
	n.t.Helper()
	u, _, _ := strings.Cut(path, "?")
	return n.api(method, path, body, token(n.t, key, map[string]any{"aud": "http://" + n.admin + u}))
}

// ---- raw client ----

type negotiation struct {
	ConnectionID    string `json:"connectionId"`
	ConnectionToken string `json:"connectionToken"`
}

func (n *node) negotiate(t *testing.T, hub, accessToken string) negotiation {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+n.client+"/"+hub+"/negotiate?negotiateVersion=1", nil)
	if accessToken != "" {
		req.Header.Set("Authorization", "Bearer "+accessToken)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("negotiate: %d %s", resp.StatusCode, b)
	}
	var neg negotiation
	if err := json.NewDecoder(resp.Body).Decode(&neg); err != nil {
		t.Fatal(err)
	}
	return neg
}

type rawConn struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	host string // the Host header: the address dialled
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c), host: addr}
}

// upgrade sends a WebSocket upgrade request for path and returns the
// response status code.
func (r *rawConn) upgrade(path string, headers ...string) int {
	r.t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + r.host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	r.write([]byte(req + "\r\n"))
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("upgrade %s: %v", path, err)
	}
	if resp.StatusCode != 101 {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// frame builds a masked client frame with explicit first byte.
func frame(b0 byte, payload []byte, masked bool) []byte {
	var out []byte
	out = append(out, b0)
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	n := len(payload)
	switch {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xFFFF:
		out = append(out, mbit|126, byte(n>>8), byte(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func textFrame(s string) []byte { return frame(0x81, []byte(s), true) }

// sendText writes a masked text frame.
func (r *rawConn) sendText(s string) { r.write(textFrame(s)) }

type srvFrame struct {
	op      byte
	payload []byte
}

// readFrame reads one server frame (unmasked).
func (r *rawConn) readFrame(d time.Duration) (srvFrame, error) {
	r.c.SetReadDeadline(time.Now().Add(d))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return srvFrame{}, err
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return srvFrame{}, err
		}
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return srvFrame{}, err
		}
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		return srvFrame{}, err
	}
	return srvFrame{op: h[0] & 0x0F, payload: p}, nil
}

// connect does negotiate-less upgrade + SignalR handshake on hub.
func (n *node) connect(t *testing.T, path string, headers ...string) *rawConn {
	t.Helper()
	r := dialRaw(t, n.client)
	if code := r.upgrade(path, headers...); code != 101 {
		t.Fatalf("upgrade %s: status %d", path, code)
	}
	r.sendText(`{"protocol":"json","version":1}` + "\x1e")
	f, err := r.readFrame(5 * time.Second)
	if err != nil || string(f.payload) != "{}\x1e" {
		t.Fatalf("handshake response %q, %v", f.payload, err)
	}
	return r
}

// expectRecord reads frames until one contains want (skipping pings).
func (r *rawConn) expectRecord(want string, d time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := r.readFrame(time.Until(deadline))
		if err != nil {
			r.t.Fatalf("waiting for %q: %v", want, err)
		}
		if strings.Contains(string(f.payload), want) {
			return string(f.payload)
		}
	}
}

// expectClose reads until a close frame and returns its code and the
// records seen before it.
func (r *rawConn) expectClose(d time.Duration) (code int, before string) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := r.readFrame(time.Until(deadline))
		if err != nil {
			r.t.Fatalf("waiting for close frame: %v (seen %q)", err, before)
		}
		if f.op == 0x8 {
			if len(f.payload) >= 2 {
				code = int(binary.BigEndian.Uint16(f.payload))
			}
			return code, before
		}
		before += string(f.payload)
	}
}

// expectEOF asserts the server closes the TCP connection.
func (r *rawConn) expectEOF(d time.Duration) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(d))
	if _, err := io.Copy(io.Discard, r.br); err != nil {
		r.t.Fatalf("expected EOF, got %v", err)
	}
}
