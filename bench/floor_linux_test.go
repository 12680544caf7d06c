package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
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
	// The loop's CPU may read 0 at this size: 40 writes take less than
	// the CPU clock's tick. It is never negative.
	for _, c := range rep.Cases {
		if c.Error != "" || c.Delivered != 2*n || c.Expected != 2*n || c.Completion.N != 2 || c.ShortWrites != 0 || c.WriteCPUus < 0 {
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

// In density the floor is one more system under its own key, and the
// table gives the others' idle CPU over its.
func TestDensityWithFloor(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RunDensity(context.Background(), DensityConfig{
		Sizes:      []int{30},
		Systems:    []SystemSpec{{Name: "baseline", Kind: KindBaseline}, {Name: "floor", Kind: KindFloor}},
		Self:       self,
		IdleWindow: 1500 * time.Millisecond,
		Settle:     100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Systems {
		if s.Error != "" || len(s.Points) != 1 || s.Points[0].Open != 30 || s.Points[0].Connect.Short() || s.Points[0].IdleWindowSec <= 0 {
			t.Fatalf("%s: %+v", s.Spec.Name, s)
		}
	}
	ps := rep.PerSize[0]
	if _, ok := ps["floor"].(DensityPoint); !ok {
		t.Fatalf("no floor point: %v", ps)
	}
	if _, ok := ps["edgeplane"]; ok {
		t.Fatalf("the floor took the edgeplane key: %v", ps)
	}
	var buf bytes.Buffer
	WriteDensityTable(&buf, rep)
	if !strings.Contains(buf.String(), "× floor") {
		t.Fatalf("no × floor column:\n%s", buf.String())
	}
	// 30 idle connections may use less than one clock tick (10 ms) of
	// CPU in the window; the ratio is there when both used some.
	if rep.Systems[0].Points[0].IdleCPUPct > 0 && rep.Systems[1].Points[0].IdleCPUPct > 0 {
		var baseRow string
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "baseline ") {
				baseRow = l
			}
		}
		if f := strings.Fields(baseRow); len(f) < 3 || !strings.HasSuffix(f[len(f)-2], "×") {
			t.Fatalf("baseline row has no idle CPU × floor:\n%s", buf.String())
		}
	}
}
