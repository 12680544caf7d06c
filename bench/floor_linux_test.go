package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
)

// The floor server takes the load client's connections and delivers every
// broadcast with one write (or writev) per socket; edgebench floor reports
// the loop's own CPU per write, kernel memory and the keep-alive calls.
func TestFloorTiny(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	rep, err := RunFloor(context.Background(), FloorRunConfig{Conns: n, Sizes: []int{64, 4096}, Messages: 2,
		Interval: 20 * time.Millisecond, IdleWindow: 1200 * time.Millisecond, Settle: 100 * time.Millisecond, Self: self})
	if err != nil || rep.Error != "" {
		t.Fatalf("floor: %v %q", err, rep.Error)
	}
	if rep.Connect.Connected != n || rep.Connect.Short() || len(rep.Cases) != 4 {
		t.Fatalf("connect %+v, %d cases", rep.Connect, len(rep.Cases))
	}
	for _, c := range rep.Cases {
		if c.Error != "" || c.Delivered != 2*n || c.Expected != 2*n || c.Completion.N != 2 || c.ShortWrites != 0 || c.WriteCPUus <= 0 {
			t.Fatalf("case %s %d: %+v", c.Mode, c.Size, c)
		}
	}
	if rep.Cases[0].Mode != FloorWrite || rep.Cases[2].Mode != FloorWritev {
		t.Fatalf("modes %s, %s", rep.Cases[0].Mode, rep.Cases[2].Mode)
	}
	if rep.Kernel.Source == "" || rep.IdleWindowSec <= 0 {
		t.Fatalf("kernel %+v, idle window %v", rep.Kernel, rep.IdleWindowSec)
	}
	if rep.Shortfalls() != nil || rep.Errors() != nil {
		t.Fatalf("shortfalls %v errors %v", rep.Shortfalls(), rep.Errors())
	}
}

// In fanout the floor is one more system: it joins the group over REST and
// takes broadcasts through Redis in the backplane format, as the nodes do;
// the table then has each system's figures over the floor's.
func TestFanoutFloorThroughRedis(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rd := redistest.Start(t)
	rep, err := RunFanout(context.Background(), FanoutConfig{
		Conns: 30, Sizes: []int{64}, Messages: 2, Interval: 20 * time.Millisecond, Via: []string{"rest", "redis"},
		Redis: rd.URL(), Nodes: 2,
		Systems: []SystemSpec{{Name: "baseline", Kind: KindBaseline}, {Name: "floor", Kind: KindFloor}},
		Self:    self,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Systems {
		if s.Error != "" || s.Members != 30 || len(s.Cases) != 2 || s.Connect.Short() || len(s.Connect.PerNode) != 2 || s.Connect.PerNode[0] != 15 {
			t.Fatalf("%s: error %q members %d cases %d connect %+v", s.Spec.Name, s.Error, s.Members, len(s.Cases), s.Connect)
		}
		for _, c := range s.Cases {
			if c.Error != "" || c.Delivered != 60 {
				t.Fatalf("%s %s: %+v", s.Spec.Name, c.Via, c)
			}
			if s.Spec.Kind == KindFloor && c.WriteCPUus <= 0 {
				t.Fatalf("floor %s: no write CPU: %+v", c.Via, c)
			}
		}
	}
	if _, ok := rep.Systems[1].caseOf("redis", 64); !ok {
		t.Fatal("no floor case to compare with")
	}
}

func TestReadKernelMem(t *testing.T) {
	k, err := ReadKernelMem()
	if err != nil {
		t.Fatal(err)
	}
	if k.Source != KernelSlabinfo && k.Source != KernelMeminfo || k.SocketSlab <= 0 || k.TotalSlab < k.SocketSlab {
		t.Fatalf("%+v", k)
	}
	if _, err := os.Stat("/proc/slabinfo"); err == nil && os.Geteuid() == 0 && k.Source != KernelSlabinfo {
		t.Fatalf("root and /proc/slabinfo exists, yet source %q", k.Source)
	}
}
