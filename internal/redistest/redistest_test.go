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
