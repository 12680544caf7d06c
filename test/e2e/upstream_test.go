package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/redistest"
)

var (
	appOnce sync.Once
	appPath string
	appErr  error
)

// appBinary builds examples/upstream once, beside the node binary.
func appBinary(t *testing.T) string {
	t.Helper()
	appOnce.Do(func() {
		appPath = filepath.Join(filepath.Dir(binPath), "upstream-app")
		out, err := exec.Command("go", "build", "-o", appPath, "github.com/edgeplane/edgeplane/examples/upstream").CombinedOutput()
		if err != nil {
			appErr = err
			appPath = string(out)
		}
	})
	if appErr != nil {
		t.Fatalf("build examples/upstream: %v\n%s", appErr, appPath)
	}
	return appPath
}

// appProc is a running examples/upstream app server.
type appProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
}

func (a *appProc) logs() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

// startApp runs the example app server and waits until its consumer group
// exists.
func startApp(t *testing.T, args ...string) *appProc {
	t.Helper()
	a := &appProc{cmd: exec.Command(appBinary(t), args...), exited: make(chan struct{})}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			a.mu.Lock()
			a.log.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			if strings.Contains(sc.Text(), `msg="consuming upstream"`) {
				once.Do(func() { close(ready) })
			}
		}
		a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("app log:\n%s", a.logs())
		}
	})
	select {
	case <-ready:
	case <-a.exited:
		t.Fatalf("app exited at start:\n%s", a.logs())
	case <-time.After(15 * time.Second):
		t.Fatalf("app did not start:\n%s", a.logs())
	}
	return a
}

// upstreamEntries reads a whole stream: entry type → entries.
func upstreamEntries(t *testing.T, rdb *redis.Client, stream string) map[string][]map[string]any {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", stream, err)
	}
	out := map[string][]map[string]any{}
	for _, m := range msgs {
		typ, _ := m.Values["type"].(string)
		out[typ] = append(out[typ], m.Values)
	}
	return out
}

// entryFor finds the entry of a connection among entries.
func entryFor(entries []map[string]any, connID string) map[string]any {
	for _, e := range entries {
		if e["connectionId"] == connID {
			return e
		}
	}
	return nil
}

// checkFields asserts an entry has exactly the fields named (values given
// are compared; "*" means any value, "+" any non-empty value).
func checkFields(t *testing.T, what string, e map[string]any, want map[string]string) {
	t.Helper()
	if e == nil {
		t.Errorf("%s: no entry", what)
		return
	}
	for k, w := range want {
		v, ok := e[k]
		s, _ := v.(string)
		switch {
		case !ok:
			t.Errorf("%s: field %q missing in %v", what, k, e)
		case w == "*":
		case w == "+" && s == "":
			t.Errorf("%s: field %q is empty", what, k)
		case w != "+" && s != w:
			t.Errorf("%s: field %q = %q, want %q", what, k, s, w)
		}
	}
	for k := range e {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected field %q = %v", what, k, e[k])
		}
	}
}

// TestUpstreamExampleApp: an unmodified @microsoft/signalr client invokes a
// hub method; the node appends it to the Redis Stream chat:upstream; the
// example app server (examples/upstream) reads it with a consumer group and
// publishes a Completion on chat:connection:{id}; the client's invoke
// resolves with the result. Broadcasts from the app reach every client;
// connected/disconnected entries carry the documented fields. A hub method
// of the app reads what the client's connect request said: a custom
// header, the User-Agent and a query value set by the client, its claims;
// credentials (Authorization, access_token, the connection token) never
// reach the app.
func TestUpstreamExampleApp(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		const key = "upstream-access-key-0123456789-abcdef"
		const server = "node-up-1"
		n := startNode(t, backend, "--redis", rs.URL(), "--hub", "chat", "--access-key", key, "--server-name", server)
		app := startApp(t, "--redis", rs.URL(), "--hub", "chat", "--group", "app")
		tok := func(user string) string { return clientToken(t, key, n, "chat", map[string]any{"nameid": user}) }

		// A raw client already connected sees the app's broadcast.
		watcher := n.connect(t, "/chat", "Authorization: Bearer "+tok("watcher"))

		js := startJS(t, "http://"+n.client, []jsClientSpec{
			{Name: "echo", AccessToken: tok("alice"), Targets: []string{"broadcast"}, Invoke: map[string]any{"target": "Echo", "args": []any{"hi"}}},
			{Name: "echoObj", AccessToken: tok("alice"), Targets: []string{"broadcast"}, Invoke: map[string]any{"target": "Echo", "args": []any{map[string]any{"n": []int{1, 2}}}}},
			{Name: "bc", AccessToken: tok("bob"), Targets: []string{"broadcast"}, Invoke: map[string]any{"target": "Broadcast", "args": []any{"news", 7}}},
			{Name: "bad", AccessToken: tok("carol"), Targets: []string{"broadcast"}, Invoke: map[string]any{"target": "Nope", "args": []any{}}},
			{Name: "ctx", AccessToken: tok("dave"), Targets: []string{"broadcast"}, Invoke: map[string]any{"target": "WhoAmI", "args": []any{}},
				Headers: map[string]string{"X-Custom-Header": "hello"}, Query: "room=42&lang=fr"},
		})
		// startJS returns once every invoke settled.
		for name, want := range map[string]string{"echo": `"hi"`, "echoObj": `{"n":[1,2]}`, "bc": `null`} {
			ok := js.find(name, "invokeOk")
			if len(ok) != 1 || len(ok[0].Args) != 1 {
				t.Fatalf("client %s: invokeOk events %+v, errors %+v", name, ok, js.find(name, "invokeError"))
			}
			if got := string(ok[0].Args[0]); got != want {
				t.Errorf("client %s: invoke resolved with %s, want %s", name, got, want)
			}
		}
		if e := js.find("bad", "invokeError"); len(e) != 1 || !strings.Contains(*e[0].Error, "unknown method Nope") {
			t.Errorf("client bad: invokeError %+v", e)
		}
		if ok := js.find("ctx", "invokeOk"); len(ok) != 1 || len(ok[0].Args) != 1 {
			t.Errorf("client ctx: WhoAmI %+v, errors %+v", ok, js.find("ctx", "invokeError"))
		} else {
			var who struct {
				UserID        string              `json:"userId"`
				RemoteAddress string              `json:"remoteAddress"`
				Query         map[string][]string `json:"query"`
				Headers       map[string][]string `json:"headers"`
				Claims        map[string]any      `json:"claims"`
			}
			raw := string(ok[0].Args[0])
			if err := json.Unmarshal(ok[0].Args[0], &who); err != nil {
				t.Fatalf("WhoAmI result %s: %v", raw, err)
			}
			if who.UserID != "dave" || who.Claims["nameid"] != "dave" || !strings.HasPrefix(who.RemoteAddress, "127.0.0.1:") {
				t.Errorf("WhoAmI user/claims/address: %s", raw)
			}
			if h := who.Headers["X-Custom-Header"]; len(h) != 1 || h[0] != "hello" {
				t.Errorf("WhoAmI: the custom header is %q: %s", h, raw)
			}
			if ua := who.Headers["User-Agent"]; len(ua) != 1 || !strings.HasPrefix(ua[0], "Microsoft SignalR/") {
				t.Errorf("WhoAmI: User-Agent %q: %s", ua, raw)
			}
			if q := who.Query; len(q["room"]) != 1 || q["room"][0] != "42" || q["lang"][0] != "fr" || q["id"] != nil || q["access_token"] != nil {
				t.Errorf("WhoAmI: query %v: %s", q, raw)
			}
			if who.Headers["Authorization"] != nil || strings.Contains(raw, "Bearer") {
				t.Errorf("WhoAmI: credentials reached the app: %s", raw)
			}
		}
		watcher.expectRecord(`"target":"broadcast","arguments":["news",7]`, 5*time.Second)
		testutil.WaitUntil(t, 5*time.Second, "bc receives its broadcast", func() bool { return len(js.find("bc", "message")) == 1 })
		if m := js.find("bc", "message")[0]; m.Target != "broadcast" || len(m.Args) != 2 || string(m.Args[0]) != `"news"` {
			t.Errorf("bc got %+v", m)
		}

		ids := map[string]string{}
		for _, name := range []string{"echo", "echoObj", "bc", "bad", "ctx"} {
			ids[name] = js.connID(name)
		}
		// Clients stop cleanly: disconnected entries follow.
		js.stdin.Write([]byte("stop\n"))
		select {
		case <-js.done:
		case <-time.After(10 * time.Second):
			t.Fatal("JS clients did not stop")
		}

		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		defer rdb.Close()
		var entries map[string][]map[string]any
		testutil.WaitUntil(t, 10*time.Second, "disconnected entries", func() bool {
			entries = upstreamEntries(t, rdb, "chat:upstream")
			for _, id := range ids {
				if entryFor(entries["disconnected"], id) == nil {
					return false
				}
			}
			return true
		})
		users := map[string]string{"echo": "alice", "echoObj": "alice", "bc": "bob", "bad": "carol", "ctx": "dave"}
		for name, id := range ids {
			base := map[string]string{"type": "connected", "hub": "chat", "connectionId": id, "userId": users[name], "server": server}
			connected := map[string]string{"remoteAddress": "+", "headers": "+", "claims": "+"}
			if name == "ctx" {
				connected["query"] = "room=42&lang=fr"
			}
			for k, v := range base {
				connected[k] = v
			}
			con := entryFor(entries["connected"], id)
			checkFields(t, name+" connected", con, connected)
			if h, _ := con["headers"].(string); strings.Contains(h, "Authorization") || strings.Contains(h, "Sec-Websocket-Key") || !strings.Contains(h, `"User-Agent":["Microsoft SignalR/`) {
				t.Errorf("%s connected: headers %s", name, h)
			}
			// The clients closed cleanly: no reason (as ASP.NET Core reports
			// a disconnect without an exception).
			dis := map[string]string{"reason": ""}
			for k, v := range base {
				dis[k] = v
			}
			dis["type"] = "disconnected"
			checkFields(t, name+" disconnected", entryFor(entries["disconnected"], id), dis)
		}
		inv := entryFor(entries["invocation"], ids["echo"])
		checkFields(t, "echo invocation", inv, map[string]string{
			"type": "invocation", "hub": "chat", "connectionId": ids["echo"], "userId": "alice",
			"invocationId": "+", "target": "Echo", "arguments": `["hi"]`, "server": server,
		})
		// The app consumed and acknowledged everything.
		testutil.WaitUntil(t, 10*time.Second, "no pending entries", func() bool {
			p, err := rdb.XPending(context.Background(), "chat:upstream", "app").Result()
			return err == nil && p.Count == 0
		})
		testutil.WaitUntil(t, 5*time.Second, "app logged the disconnects", func() bool {
			return strings.Count(app.logs(), `msg="client disconnected"`) >= len(ids)
		})
		for name, id := range ids {
			if !strings.Contains(app.logs(), `msg="client connected" connectionId=`+id) {
				t.Errorf("app did not log the connect of %s (%s)", name, id)
			}
		}
		if got := len(entries["invocation"]); got != 5 {
			t.Errorf("%d invocation entries, want 5: %v", got, entries["invocation"])
		}
	})
}
