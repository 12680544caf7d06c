package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/bench"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestMain lets the test binary be edgebench: the tests run it as a
// command, and it re-executes itself as the load-client children.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		main()
		os.Exit(0)
	}
	testutil.Main(m)
}

// buildEdgeplane builds the node into a temporary directory.
func buildEdgeplane(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edgeplane")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/edgeplane/edgeplane/cmd/edgeplane").CombinedOutput(); err != nil {
		t.Fatalf("go build edgeplane: %v\n%s", err, out)
	}
	return bin
}

// edgebench runs the test binary as edgebench in dir and returns its exit
// code and standard output.
func edgebench(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("edgebench %v: %v", args, err)
	}
	t.Logf("edgebench %s:\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	return cmd.ProcessState.ExitCode(), out.String()
}

func readFanout(t *testing.T, path string) *bench.FanoutReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.FanoutReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Systems) != 1 {
		t.Fatalf("%d systems in the report", len(rep.Systems))
	}
	return &rep
}

// A node that admits fewer connections than asked for (--max-conns) gives
// a short run: the table and the JSON say how many connected, how many
// attempts failed with 503 and the first errors, and edgebench exits
// non-zero unless --allow-short.
func TestShortRunSaysSoAndExitsNonZero(t *testing.T) {
	ep := buildEdgeplane(t)
	dir := t.TempDir()
	work := t.TempDir() // the working directory must stay empty
	args := func(json string, extra ...string) []string {
		return append([]string{"fanout", "--conns", "30", "--edgeplane", ep, "--edgeplane-args", "--max-conns 12",
			"--no-baseline", "--no-floor", "--messages", "1", "--sizes", "64", "--interval", "10ms", "--quiet",
			"--json", filepath.Join(dir, json)}, extra...)
	}
	code, out := edgebench(t, work, args("short.json")...)
	if code == 0 {
		t.Fatalf("a short run exited 0")
	}
	if !strings.Contains(out, "SHORT: edgeplane-epoll: 12 of 30 requested connections open") {
		t.Fatalf("the summary does not say the run is short:\n%s", out)
	}
	rep := readFanout(t, filepath.Join(dir, "short.json"))
	c := rep.Systems[0].Connect
	if c.Requested != 30 || c.Connected != 12 || c.Rejected503 == 0 || c.GivenUp != 18 || len(c.FirstErrors) == 0 ||
		!strings.Contains(c.FirstErrors[0], "503") || rep.Systems[0].Members != 12 {
		t.Fatalf("connect summary in the JSON: %+v (members %d)", c, rep.Systems[0].Members)
	}
	if !strings.Contains(out, "first errors: "+c.FirstErrors[0]) {
		t.Fatalf("the table does not show the first errors:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "short.log")); err != nil {
		t.Fatalf("no log next to the JSON: %v", err)
	}

	code, out = edgebench(t, work, args("accepted.json", "--allow-short")...)
	if code != 0 || !strings.Contains(out, "SHORT: edgeplane-epoll: 12 of 30") {
		t.Fatalf("--allow-short: exit %d, output:\n%s", code, out)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Fatalf("edgebench left files in the working directory: %v", ents)
	}
}

// A node with a low descriptor limit is never asked for more than its
// room: the connections beyond it are not attempted, and the run says it
// is short by them.
func TestLowDescriptorLimitIsShortByUnplaced(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("no prlimit")
	}
	ep := buildEdgeplane(t)
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "edgeplane-lowfd")
	script := "#!/bin/sh\nexec prlimit --nofile=400 " + ep + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out := edgebench(t, dir, "fanout", "--conns", "200", "--edgeplane", wrapper, "--no-baseline", "--no-floor",
		"--messages", "1", "--sizes", "64", "--interval", "10ms", "--quiet", "--json", filepath.Join(dir, "lowfd.json"))
	if code == 0 || !strings.Contains(out, "SHORT: edgeplane-epoll") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	rep := readFanout(t, filepath.Join(dir, "lowfd.json"))
	c := rep.Systems[0].Connect
	// 400 descriptors less the node's own, its reserve of 64 and the
	// bench's slack of 256 leave room for fewer than 80.
	if c.Unplaced == 0 || len(c.PerNode) != 1 || c.PerNode[0]+c.Unplaced != 200 || c.PerNode[0] > 80 ||
		c.Connected != c.PerNode[0] || c.Failures != 0 {
		t.Fatalf("connect summary: %+v", c)
	}
}

// A missing binary that is not the default one is an error naming the
// command that builds it, before anything starts.
func TestMissingEdgeplaneIsAnError(t *testing.T) {
	dir := t.TempDir()
	code, _ := edgebench(t, dir, "density", "--edgeplane", filepath.Join(dir, "nope"), "--sizes", "10", "--quiet")
	if code == 0 {
		t.Fatal("a missing edgeplane binary exited 0")
	}
	self, _ := os.Executable()
	cmd := exec.Command(self, "density", "--edgeplane", filepath.Join(dir, "nope"), "--sizes", "10", "--quiet")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "go build -o "+filepath.Join(dir, "nope")+" ./cmd/edgeplane") {
		t.Fatalf("the error does not say how to build it:\n%s", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left behind: %v", ents)
	}
}

// edgebench scale at a tiny size: a fleet of nodes on a Redis it starts
// itself, every connection placed evenly and open, every broadcast
// through Redis delivered to every client.
func TestScaleTiny(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("no redis-server (make deps-redis)")
	}
	ep := buildEdgeplane(t)
	dir := t.TempDir()
	code, out := edgebench(t, dir, "scale", "--edgeplane", ep, "--nodes", "3", "--per-node", "20", "--messages", "3",
		"--interval", "10ms", "--settle", "100ms", "--idle-window", "500ms", "--quiet", "--json", filepath.Join(dir, "scale.json"))
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "scale.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.ScaleReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Connect.Connected != 60 || rep.Connect.Short() || len(rep.Fleet) != 3 || rep.Expected != 180 || rep.Delivered != 180 ||
		rep.Lost != 0 || rep.Completion.N != 3 || rep.Reach.N != 180 || rep.RSSPerConn <= 0 {
		t.Fatalf("report: %+v", rep)
	}
	for i, n := range rep.Fleet {
		if n.Planned != 20 || n.Connections != 20 || !n.Alive {
			t.Fatalf("node %d: %+v", i, n)
		}
	}
	if !strings.Contains(out, "delivered/expected") || !strings.Contains(out, "180/180") {
		t.Fatalf("table:\n%s", out)
	}
}

// --transport makes one system per transport and poller, named -sse and
// -lp, and refuses the combinations the transports cannot do.
func TestTransportSystems(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := common{edgeplane: self, pollers: "epoll", transports: "websockets,sse,lp", msgpack: "0", stateful: "off", noBaseline: true}
	specs, err := c.systems()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		got = append(got, s.Name+":"+s.Transport)
	}
	if want := "edgeplane-epoll: edgeplane-epoll-sse:sse edgeplane-epoll-lp:longpolling"; strings.Join(got, " ") != want {
		t.Fatalf("systems %q, want %q", strings.Join(got, " "), want)
	}
	for _, bad := range []common{
		{edgeplane: self, pollers: "epoll", transports: "sse", msgpack: "0,0.5", stateful: "off"},
		{edgeplane: self, pollers: "epoll", transports: "longpolling", msgpack: "0", stateful: "on"},
		{edgeplane: self, pollers: "epoll", transports: "smoke-signals", msgpack: "0", stateful: "off"},
	} {
		if _, err := bad.systems(); err == nil {
			t.Errorf("--transport %s --msgpack %s --stateful %s accepted", bad.transports, bad.msgpack, bad.stateful)
		}
	}
}
