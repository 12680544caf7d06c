package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

// The Node harness: a script of test/compat runs unmodified
// @microsoft/signalr clients under Node. It takes its spec (JSON) as its
// one argument, prints one JSON event per line on stdout, reads commands
// on stdin and stops its clients when stdin ends.

func compatDir(t *testing.T) string {
	dir, err := filepath.Abs("../compat")
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"signalr", "signalr-protocol-msgpack"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@microsoft", pkg)); err != nil {
			t.Fatalf("@microsoft/%s is not installed in %s: run `make test` (it runs npm ci there): %v", pkg, dir, err)
		}
	}
	return dir
}

// nodeJS is one running script and the journal of its events (E, decoded
// from each line), in arrival order.
type nodeJS[E any] struct {
	t      *testing.T
	script string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	events []E
	done   chan struct{}
}

// startNodeJS runs `node script spec` in test/compat. On cleanup it closes
// the script's stdin, gives it 10s to exit and then kills it.
func startNodeJS[E any](t *testing.T, script string, spec any) *nodeJS[E] {
	t.Helper()
	arg, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	j := &nodeJS[E]{t: t, script: script, done: make(chan struct{})}
	j.cmd = exec.Command("node", script, string(arg))
	j.cmd.Dir = compatDir(t)
	j.cmd.Stderr = os.Stderr
	out, err := j.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if j.stdin, err = j.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := j.cmd.Start(); err != nil {
		t.Fatalf("start node (is Node.js installed?): %v", err)
	}
	go func() {
		defer close(j.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e E
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("bad line from %s: %q", script, sc.Text())
				continue
			}
			j.mu.Lock()
			j.events = append(j.events, e)
			j.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		j.stdin.Close()
		select {
		case <-j.done:
		case <-time.After(10 * time.Second):
			j.cmd.Process.Kill()
		}
		j.cmd.Wait()
	})
	return j
}

// find lists the events match accepts, in arrival order.
func (j *nodeJS[E]) find(match func(E) bool) []E {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []E
	for _, e := range j.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// first waits up to within for an event match accepts and returns the
// first such event.
func (j *nodeJS[E]) first(within time.Duration, what string, match func(E) bool) E {
	j.t.Helper()
	var got E
	testutil.WaitUntil(j.t, within, j.script+": "+what, func() bool {
		found := j.find(match)
		if len(found) == 0 {
			return false
		}
		got = found[0]
		return true
	})
	return got
}

// writeLine writes one command line to the script's stdin.
func (j *nodeJS[E]) writeLine(line string) {
	j.t.Helper()
	if _, err := io.WriteString(j.stdin, line+"\n"); err != nil {
		j.t.Fatalf("command to %s: %v", j.script, err)
	}
}

// jsEvent is an event of a script that runs named clients (clients.js,
// resume.js, asrs.js).
type jsEvent struct {
	Name         string            `json:"name"`
	Event        string            `json:"event"`
	ConnectionID string            `json:"connectionId"`
	Target       string            `json:"target"`
	Args         []json.RawMessage `json:"args"`
	Error        *string           `json:"error"`
	// Stateful (resume.js, connected): the client got stateful reconnect.
	Stateful bool `json:"stateful"`
	// Tag (asrs.js, invokeOk and invokeError): the invoke command's tag.
	Tag string `json:"tag"`
}

// jsJournal is a script that runs named clients, with helpers by client
// name.
type jsJournal struct {
	*nodeJS[jsEvent]
}

// startClientsJS starts script and waits up to readyWithin for its
// "ready" event; it fails the test on any client that could not connect.
func startClientsJS(t *testing.T, script string, spec any, readyWithin time.Duration) jsJournal {
	t.Helper()
	j := jsJournal{startNodeJS[jsEvent](t, script, spec)}
	j.first(readyWithin, "JS clients ready", func(e jsEvent) bool { return e.Event == "ready" })
	for _, e := range j.find("", "error") {
		t.Fatalf("client %s failed to connect: %s", e.Name, *e.Error)
	}
	return j
}

// find lists the events named event of client name (any client if name
// is empty), in arrival order.
func (j jsJournal) find(name, event string) []jsEvent {
	return j.nodeJS.find(func(e jsEvent) bool { return (name == "" || e.Name == name) && e.Event == event })
}

// received lists the first argument of every message a client got, in the
// order they arrived.
func (j jsJournal) received(name string) []string {
	var out []string
	for _, e := range j.find(name, "message") {
		var s string
		if len(e.Args) > 0 {
			json.Unmarshal(e.Args[0], &s)
		}
		out = append(out, s)
	}
	return out
}

// receivedUpTo waits until every named client has received marker and
// returns what each received before it, in order. Messages from one sender
// to one connection arrive in the order sent: a message sent before the
// marker and received by nobody it was meant for shows as missing, one
// received by a client it was not meant for as extra.
func (j jsJournal) receivedUpTo(marker string, names ...string) map[string][]string {
	j.t.Helper()
	out := make(map[string][]string, len(names))
	testutil.WaitUntil(j.t, 15*time.Second, "marker "+marker, func() bool {
		for _, name := range names {
			got := j.received(name)
			i := slices.Index(got, marker)
			if i < 0 {
				return false
			}
			out[name] = got[:i]
		}
		return true
	})
	return out
}
