package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/faultproxy"
	"github.com/edgeplane/edgeplane/internal/redistest"
)

// The fault scenarios of issue 12, each end to end: two real nodes, real
// redis-server, @microsoft/signalr clients on every node, a steady
// publisher (50 messages a second through the REST API, broadcasts and
// group sends), a fault, a heal, and the accounting of faultScenario.finish.
// They run on the default poller (the fault handling is the backplane's,
// the same for every poller). make test runs short faults with 2 clients a
// node; make test-long (EDGEPLANE_LONG=1) 20 s faults with 10 clients a
// node. Each logs its row of the fault table in docs/OPERATING.md
// (EDGEPLANE_FAULT_REPORT=file appends them to file).

// faultFor is how long a fault lasts; faultClients the clients per node.
func faultFor() time.Duration { return time.Duration(sizeFor(3, 20)) * time.Second }
func faultClients() int       { return sizeFor(2, 10) }

func faultNode(t *testing.T, args ...string) *node {
	return startNode(t, "epoll", append([]string{"--log-level", "info"}, args...)...)
}

// TestFaultBlackholeFailover: Redis goes silent behind a stable address (a
// VIP, DNS name or proxy: every connection blackholed, no reset), then the
// address moves to a second Redis while the old connections stay
// half-open. Both nodes must notice within one health interval, reconnect
// to the new Redis and resubscribe.
func TestFaultBlackholeFailover(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	p := faultproxy.Start(t, a.Addr())
	url := "redis://" + p.Addr()
	nodes := []*node{faultNode(t, "--redis", url), faultNode(t, "--redis", url)}
	s := newFaultScenario(t, "blackhole, then failover to a second Redis", nodes, []int{0, 1}, faultClients(), []string{"g0", "g1"}, []int{0, 1})
	s.inject()
	p.Blackhole()
	time.Sleep(faultFor())
	p.Failover(b.Addr())
	s.healed()
	s.finish()
}

// TestFaultRedisKill: Redis killed (SIGKILL) and restarted empty on the
// same port.
func TestFaultRedisKill(t *testing.T) {
	rs := redistest.Start(t)
	nodes := []*node{faultNode(t, "--redis", rs.URL()), faultNode(t, "--redis", rs.URL())}
	s := newFaultScenario(t, "Redis SIGKILL, restart", nodes, []int{0, 1}, faultClients(), []string{"g0", "g1"}, []int{0, 1})
	s.inject()
	rs.Kill()
	time.Sleep(faultFor())
	rs.Restart()
	s.healed()
	s.finish()
}

// TestFaultRedisStop: Redis paused (SIGSTOP): its sockets stay open and
// answer nothing, as a hung server or a long GC-like stall looks.
func TestFaultRedisStop(t *testing.T) {
	rs := redistest.Start(t)
	nodes := []*node{faultNode(t, "--redis", rs.URL()), faultNode(t, "--redis", rs.URL())}
	s := newFaultScenario(t, "Redis SIGSTOP, SIGCONT", nodes, []int{0, 1}, faultClients(), []string{"g0", "g1"}, []int{0, 1})
	s.inject()
	if err := rs.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(faultFor())
	if err := rs.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	s.healed()
	s.finish()
}

// TestFaultPartitionOneNode: one node is cut off from Redis (blackholed,
// no reset) while the other keeps publishing and delivering; the cut-off
// node turns not ready within one health interval and counts the gap, the
// other loses nothing and stays ready.
func TestFaultPartitionOneNode(t *testing.T) {
	rs := redistest.Start(t)
	p1, p2 := faultproxy.Start(t, rs.Addr()), faultproxy.Start(t, rs.Addr())
	nodes := []*node{faultNode(t, "--redis", "redis://"+p1.Addr()), faultNode(t, "--redis", "redis://"+p2.Addr())}
	s := newFaultScenario(t, "partition of one node from Redis", nodes, []int{1}, faultClients(), []string{"g0", "g1"}, []int{0})
	s.inject()
	p1.Blackhole()
	time.Sleep(faultFor())
	p1.Heal()
	s.healed()
	s.finish()
}

// clusterGroups are group names whose channels fall on every master of a
// 3-master cluster.
func clusterGroups(t *testing.T, cl *redistest.Cluster) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for i := 0; len(out) < 3 && i < 100; i++ {
		g := "g" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		m := cl.MasterOf(t, cl.Slot(t, "chat:group:"+g)).Addr()
		if !seen[m] {
			seen[m] = true
			out = append(out, g)
		}
	}
	return out
}

// TestFaultClusterFailover: CLUSTER FAILOVER of the master serving P:all
// on a 3-master, 3-replica cluster: Redis drops the subscriptions of its
// slots, the nodes subscribe them on the promoted replica.
func TestFaultClusterFailover(t *testing.T) {
	cl := redistest.StartClusterReplicas(t, 3, 1)
	seeds := strings.Join(cl.Addrs(), ",")
	nodes := []*node{faultNode(t, "--redis-cluster", seeds), faultNode(t, "--redis-cluster", seeds)}
	s := newFaultScenario(t, "Redis Cluster: CLUSTER FAILOVER", nodes, []int{0, 1}, faultClients(), clusterGroups(t, cl), []int{0, 1})
	m := cl.MasterOf(t, cl.Slot(t, "chat:all"))
	r := cl.ReplicaOf(t, m)
	s.inject()
	cl.Failover(t, r)
	s.healed()
	s.finish()
}

// TestFaultClusterMasterKill: the master serving P:all is killed; its
// replica takes over after the cluster's node timeout (2 s here).
func TestFaultClusterMasterKill(t *testing.T) {
	cl := redistest.StartClusterReplicas(t, 3, 1)
	seeds := strings.Join(cl.Addrs(), ",")
	nodes := []*node{faultNode(t, "--redis-cluster", seeds), faultNode(t, "--redis-cluster", seeds)}
	s := newFaultScenario(t, "Redis Cluster: master SIGKILL, replica takes over", nodes, []int{0, 1}, faultClients(), clusterGroups(t, cl), []int{0, 1})
	m := cl.MasterOf(t, cl.Slot(t, "chat:all"))
	r := cl.ReplicaOf(t, m)
	s.inject()
	m.Kill()
	cl.WaitMaster(t, r, 30*time.Second)
	s.healed()
	s.finish()
}
