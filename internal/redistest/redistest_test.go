package redistest

import (
	"testing"
	"time"
)

func TestServerKillRestart(t *testing.T) {
	s := Start(t)
	if r, err := s.Do("SET", "k", "v"); err != nil || r != "+OK" {
		t.Fatalf("SET = %q, %v", r, err)
	}
	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatalf("PING answered after Kill")
	}
	s.Restart()
	if r, err := s.Do("GET", "k"); err != nil || r != "$-1" {
		t.Fatalf("GET after restart = %q, %v; want empty data", r, err)
	}
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("cluster up in %v: %v", time.Since(start), c.Addrs())
	for _, s := range c.Servers {
		if r, err := s.Do("CLUSTER", "INFO"); err != nil || r[0] != '$' {
			t.Fatalf("CLUSTER INFO on %s = %q, %v", s.Addr(), r, err)
		}
	}
}

// TestClusterReplicasFailover: 3 masters with a replica each; CLUSTER
// FAILOVER on a replica makes it the master of its old master's slots, and
// a killed master is replaced by its replica.
func TestClusterReplicasFailover(t *testing.T) {
	start := time.Now()
	c := StartClusterReplicas(t, 3, 1)
	t.Logf("3+3 cluster up in %v", time.Since(start).Round(time.Millisecond))
	if len(c.Servers) != 6 {
		t.Fatalf("%d servers, want 6", len(c.Servers))
	}
	slot := c.Slot(t, "chat:all")
	m := c.MasterOf(t, slot)
	r := c.ReplicaOf(t, m)
	c.Failover(t, r)
	if got := c.MasterOf(t, slot); got != r {
		t.Fatalf("slot %d served by %s after CLUSTER FAILOVER on %s", slot, got.Addr(), r.Addr())
	}
	// The old master is now r's replica; kill r: the old master takes over.
	if back := c.ReplicaOf(t, r); back != m {
		t.Fatalf("replica of %s is %s, want the old master %s", r.Addr(), back.Addr(), m.Addr())
	}
	start = time.Now()
	r.Kill()
	c.WaitMaster(t, m, 20*time.Second)
	t.Logf("replica took over a killed master in %v", time.Since(start).Round(time.Millisecond))
	if got := c.MasterOf(t, slot); got != m {
		t.Fatalf("slot %d served by %s after killing %s", slot, got.Addr(), r.Addr())
	}
}
