package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const installHint = "install it with `apt-get install -y redis-server` (`make test` does this on a fresh machine)"

// Server is one redis-server process.
type Server struct {
	tb      testing.TB
	Port    int
	Dir     string
	cluster bool
	extra   []string // redis-server arguments given to StartArgs

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is redis://host:port.
func (s *Server) URL() string { return "redis://" + s.Addr() }

func lookPath(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("redistest: %s not found in PATH: %s", name, installHint)
	}
	return p
}

// Start runs a redis-server on a free loopback port; it is stopped at the
// end of the test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, false)
}

// StartArgs is Start with extra redis-server arguments (for example
// "--requirepass", "secret"); Restart keeps them.
func StartArgs(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return start(tb, false, args...)
}

func start(tb testing.TB, cluster bool, extra ...string) *Server {
	tb.Helper()
	lookPath(tb, "redis-server")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(cluster)
		if err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		s := &Server{tb: tb, Port: port, Dir: tb.TempDir(), cluster: cluster, extra: extra}
		if lastErr = s.run(); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// freePort returns a loopback port that was free a moment ago (and, for a
// cluster node, whose bus port +10000 was free too).
func freePort(cluster bool) (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen for a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !cluster {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		bl, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		_ = bl.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

func (s *Server) run() error {
	args := []string{
		"--port", strconv.Itoa(s.Port),
		"--bind", "127.0.0.1",
		"--dir", s.Dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.Dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
			// Replicas sync at once and may always take over (test data
			// is disposable): a failover right after a start works.
			"--repl-diskless-sync-delay", "0",
			"--cluster-replica-validity-factor", "0")
	}
	args = append(args, s.extra...)
	cmd := exec.Command("redis-server", args...)
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.Port, s.logTail())
		default:
		}
		if reply, err := s.Do("PING"); err == nil && (reply == "+PONG" || strings.HasPrefix(reply, "-NOAUTH")) {
			return nil // answering (with a password set, NOAUTH)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server on port %d not answering PING after 10s: %s", s.Port, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Do sends one inline command and returns the first line of the reply (for
// example "+PONG", ":1", "$5"). Enough for health checks; use a Redis
// client for anything else.
func (s *Server) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// take hands over the running process (nil if none) to the caller, who
// stops it.
func (s *Server) take() (*exec.Cmd, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	return cmd, done
}

func (s *Server) kill() {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit.
func (s *Server) Kill() { s.kill() }

// Restart starts the server again on the same port (with no data: nothing
// is persisted). The test fails if it cannot.
func (s *Server) Restart() {
	s.tb.Helper()
	s.kill()
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment
		if err = s.run(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("redistest: restart on port %d: %v", s.Port, err)
}

// Stop terminates the server (SIGTERM, then SIGKILL after 5 s).
func (s *Server) Stop() {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Cluster is a Redis Cluster: masters, each with the same number of
// replicas.
type Cluster struct {
	Servers []*Server // masters first, then replicas, as created
	cli     string
}

// Addrs are every server's host:port (masters first): seeds for a
// cluster client.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		a[i] = s.Addr()
	}
	return a
}

// StartCluster runs n (at least 3) cluster-enabled redis-servers, joins them
// with redis-cli --cluster create --cluster-replicas 0 and waits until every
// node reports cluster_state:ok.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	return StartClusterReplicas(tb, n, 0)
}

// StartClusterReplicas runs masters (at least 3) cluster-enabled
// redis-servers and replicas replicas of each, joins them with redis-cli
// --cluster create --cluster-replicas, and waits until every node reports
// cluster_state:ok and agrees on who serves every slot. Nodes time out
// after 2 s (cluster-node-timeout), so a replica takes over a dead master
// within a few seconds.
func StartClusterReplicas(tb testing.TB, masters, replicas int) *Cluster {
	tb.Helper()
	if masters < 3 {
		tb.Fatalf("redistest: a Redis cluster needs at least 3 masters, got %d", masters)
	}
	c := &Cluster{cli: lookPath(tb, "redis-cli")}
	for i := 0; i < masters*(1+replicas); i++ {
		c.Servers = append(c.Servers, start(tb, true))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command(c.cli, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitStable(tb, 20*time.Second)
	return c
}

// Node is one line of CLUSTER NODES.
type Node struct {
	ID, Addr string
	Master   bool
	MasterID string // of a replica
	Failed   bool   // flagged fail or pfail, or disconnected
	Slots    [][2]int
}

// Nodes is CLUSTER NODES as server s sees it.
func (c *Cluster) Nodes(s *Server) ([]Node, error) {
	out, err := exec.Command(c.cli, "-p", strconv.Itoa(s.Port), "cluster", "nodes").Output()
	if err != nil {
		return nil, fmt.Errorf("redistest: cluster nodes on %s: %w", s.Addr(), err)
	}
	var nodes []Node
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		n := Node{ID: f[0], Addr: strings.Split(f[1], "@")[0], MasterID: f[3]}
		flags := f[2]
		n.Master = strings.Contains(flags, "master")
		n.Failed = strings.Contains(flags, "fail") || f[7] != "connected"
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, _ := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if hi != "" {
				b, _ = strconv.Atoi(hi)
			}
			n.Slots = append(n.Slots, [2]int{a, b})
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// server returns the running server with address addr (nil if none).
func (c *Cluster) server(addr string) *Server {
	for _, s := range c.Servers {
		if s.Addr() == addr && s.running() {
			return s
		}
	}
	return nil
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// view is the slot → master address map of one server, and whether it
// reports cluster_state:ok.
func (c *Cluster) view(s *Server) (owners map[int]string, ok bool, err error) {
	nodes, err := c.Nodes(s)
	if err != nil {
		return nil, false, err
	}
	owners = make(map[int]string)
	for _, n := range nodes {
		if !n.Master {
			continue
		}
		for _, r := range n.Slots {
			for slot := r[0]; slot <= r[1]; slot++ {
				owners[slot] = n.Addr
			}
		}
	}
	info, err := exec.Command(c.cli, "-p", strconv.Itoa(s.Port), "cluster", "info").Output()
	if err != nil {
		return nil, false, err
	}
	return owners, strings.Contains(string(info), "cluster_state:ok"), nil
}

// WaitStable waits until every running server reports cluster_state:ok,
// every slot is served by a running master, and all agree on which.
func (c *Cluster) WaitStable(tb testing.TB, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	var why string
	for {
		why = c.unstable()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: cluster not stable after %v: %s", d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unstable says why the cluster is not stable ("" if it is).
func (c *Cluster) unstable() string {
	var first map[int]string
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		owners, ok, err := c.view(s)
		switch {
		case err != nil:
			return err.Error()
		case !ok:
			return s.Addr() + " is not cluster_state:ok"
		case len(owners) != 16384:
			return fmt.Sprintf("%s sees %d slots served", s.Addr(), len(owners))
		}
		if r, _ := exec.Command(c.cli, "-p", strconv.Itoa(s.Port), "info", "replication").Output(); strings.Contains(string(r), "role:slave") &&
			!strings.Contains(string(r), "master_link_status:up") {
			return s.Addr() + " is a replica not in sync with its master"
		}
		if nodes, err := c.Nodes(s); err == nil {
			for _, n := range nodes {
				if n.Master && !n.Failed && len(n.Slots) == 0 && c.server(n.Addr) != nil {
					return fmt.Sprintf("%s sees %s as a master without slots (a replica not yet known as one)", s.Addr(), n.Addr)
				}
			}
		}
		if first == nil {
			first = owners
			for _, a := range owners {
				if c.server(a) == nil {
					return fmt.Sprintf("%s sees %s, which is not running, serve slots", s.Addr(), a)
				}
			}
			continue
		}
		for slot, a := range owners {
			if first[slot] != a {
				return fmt.Sprintf("slot %d: served by %s or %s", slot, first[slot], a)
			}
		}
	}
	return ""
}

// MasterOf returns the running master that serves slot, as the first
// running server sees it.
func (c *Cluster) MasterOf(tb testing.TB, slot int) *Server {
	tb.Helper()
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		owners, _, err := c.view(s)
		if err != nil {
			tb.Fatal(err)
		}
		if m := c.server(owners[slot]); m != nil {
			return m
		}
		tb.Fatalf("redistest: slot %d is served by %q, not a running server", slot, owners[slot])
	}
	tb.Fatalf("redistest: no server is running")
	return nil
}

// ReplicaOf returns a running replica of master (waiting up to 10 s for
// master to know one).
func (c *Cluster) ReplicaOf(tb testing.TB, master *Server) *Server {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nodes, err := c.Nodes(master)
		if err != nil {
			tb.Fatal(err)
		}
		var id string
		for _, n := range nodes {
			if n.Addr == master.Addr() {
				id = n.ID
			}
		}
		for _, n := range nodes {
			if !n.Master && n.MasterID == id {
				if s := c.server(n.Addr); s != nil {
					return s
				}
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: %s has no running replica", master.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Slot is key's hash slot (CLUSTER KEYSLOT); sharded pub/sub places
// channels the same way.
func (c *Cluster) Slot(tb testing.TB, key string) int {
	tb.Helper()
	for _, s := range c.Servers {
		if !s.running() {
			continue
		}
		r, err := s.Do("CLUSTER", "KEYSLOT", key)
		if err != nil || !strings.HasPrefix(r, ":") {
			tb.Fatalf("redistest: CLUSTER KEYSLOT %s: %q, %v", key, r, err)
		}
		n, err := strconv.Atoi(r[1:])
		if err != nil {
			tb.Fatal(err)
		}
		return n
	}
	tb.Fatalf("redistest: no server is running")
	return 0
}

// Failover runs CLUSTER FAILOVER on replica (a coordinated switch with its
// master, nothing lost) and waits until the cluster is stable with replica
// serving its old master's slots.
func (c *Cluster) Failover(tb testing.TB, replica *Server) {
	tb.Helper()
	if r, err := replica.Do("CLUSTER", "FAILOVER"); err != nil || r != "+OK" {
		tb.Fatalf("redistest: CLUSTER FAILOVER on %s: %q, %v", replica.Addr(), r, err)
	}
	c.WaitMaster(tb, replica, 20*time.Second)
}

// MoveSlot moves an empty slot (no keys; pub/sub channels are not keys) to
// master to, as resharding does: IMPORTING on to, MIGRATING on the owner,
// then NODE on every master; it waits until the cluster is stable again.
func (c *Cluster) MoveSlot(tb testing.TB, slot int, to *Server) {
	tb.Helper()
	from := c.MasterOf(tb, slot)
	if from == to {
		tb.Fatalf("redistest: slot %d is already on %s", slot, to.Addr())
	}
	id := func(s *Server) string {
		nodes, err := c.Nodes(s)
		if err != nil {
			tb.Fatal(err)
		}
		for _, n := range nodes {
			if n.Addr == s.Addr() {
				return n.ID
			}
		}
		tb.Fatalf("redistest: %s not in its own CLUSTER NODES", s.Addr())
		return ""
	}
	sl := strconv.Itoa(slot)
	steps := [][]string{
		{to.Addr(), "IMPORTING", id(from)},
		{from.Addr(), "MIGRATING", id(to)},
		{to.Addr(), "NODE", id(to)},
		{from.Addr(), "NODE", id(to)},
	}
	for _, st := range steps {
		s := c.server(st[0])
		if r, err := s.Do("CLUSTER", "SETSLOT", sl, st[1], st[2]); err != nil || r != "+OK" {
			tb.Fatalf("redistest: CLUSTER SETSLOT %s %s on %s: %q, %v", sl, st[1], s.Addr(), r, err)
		}
	}
	for _, s := range c.Servers {
		if s.running() && s != to && s != from {
			_, _ = s.Do("CLUSTER", "SETSLOT", sl, "NODE", id(to))
		}
	}
	c.WaitStable(tb, 20*time.Second)
}

// WaitMaster waits until s is a master that serves slots and the cluster is
// stable (after a failover, or after its master was killed).
func (c *Cluster) WaitMaster(tb testing.TB, s *Server, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		owners, _, err := c.view(s)
		serves := false
		for _, a := range owners {
			if a == s.Addr() {
				serves = true
				break
			}
		}
		if err == nil && serves && c.unstable() == "" {
			return
		}
		if time.Now().After(deadline) {
			var dump string
			for _, x := range c.Servers {
				if x.running() {
					out, _ := exec.Command(c.cli, "-p", strconv.Itoa(x.Port), "cluster", "nodes").Output()
					dump += "\n" + x.Addr() + ":\n" + string(out) + x.logTail()
				}
			}
			tb.Fatalf("redistest: %s not serving slots in a stable cluster after %v: %v %s%s", s.Addr(), d, err, c.unstable(), dump)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig to the running redis-server, e.g. SIGSTOP and SIGCONT to
// pause it while its sockets stay open.
func (s *Server) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redistest: server on port %d is not running", s.Port)
	}
	return s.cmd.Process.Signal(sig)
}
