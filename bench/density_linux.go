package bench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DensityConfig configures RunDensity.
type DensityConfig struct {
	// Sizes are the connection counts, ascending; connections are added to
	// reach each size in turn.
	Sizes   []int
	Systems []SystemSpec
	// Edgeplane and Self are the binaries (see ServerConfig).
	Edgeplane, Self string
	// IdleWindow is the idle-CPU window at the largest size; default 60 s.
	IdleWindow time.Duration
	// IdleAtEverySize measures idle CPU at every size, not only the largest.
	IdleAtEverySize bool
	// Settle is the wait after the connections are open, before sampling;
	// default 5 s.
	Settle time.Duration
	// Concurrency: connection attempts in flight per client process;
	// default 256.
	Concurrency   int
	SkipNegotiate bool
	// Log receives server logs; Progress receives progress bars (nil: none).
	Log, Progress io.Writer
	// ProfileDir, if set, receives a heap profile of each server at the
	// largest size (when the server serves /debug/pprof/heap).
	ProfileDir string
	// ServerArgs are extra arguments per server kind.
	ServerArgs map[Kind][]string
}

// DensityPoint is one system at one size.
type DensityPoint struct {
	Conns        int     `json:"conns"`
	Open         int     `json:"open"`
	MessagePack  int     `json:"messagepack"` // connections on MessagePack
	RSS          int64   `json:"rss_bytes"`
	HeapInuse    float64 `json:"heap_inuse_bytes"`
	StackInuse   float64 `json:"stack_inuse_bytes"`
	Goroutines   float64 `json:"goroutines"`
	Threads      int     `json:"threads"`
	OpenFDs      int     `json:"open_fds"`
	BytesPerConn float64 `json:"bytes_per_conn"`       // (RSS_N − RSS_0) / N
	SlopePerConn float64 `json:"slope_bytes_per_conn"` // (RSS_N − RSS_prev) / (N − prev)
	HeapStackPer float64 `json:"heap_stack_per_conn"`  // Go heap+stack growth / N
	ConnsPerGiB  float64 `json:"conns_per_gib"`
	SlabPerConn  float64 `json:"slab_socket_per_conn"` // kernel socket slab growth / N, both ends
	SlabTotalPer float64 `json:"slab_total_per_conn"`
	// KernelSource says where the kernel figures come from (KernelMem).
	KernelSource string `json:"kernel_source,omitempty"`
	// KernelPerConn is the server's share of SlabPerConn: half of it, the
	// two loopback ends being alike (the same caches: socket, inode,
	// dentry, file, epoll item). ConnsPerGiBKernel counts it with the RSS:
	// 2³⁰ / (BytesPerConn + KernelPerConn).
	KernelPerConn     float64 `json:"kernel_per_conn"`
	ConnsPerGiBKernel float64 `json:"conns_per_gib_with_kernel"`
	// TCPMemPerConn is the growth of the sockets' buffer memory
	// (sockstat TCP mem pages × 4096) per connection: data queued, ~0
	// when idle.
	TCPMemPerConn float64 `json:"tcp_buffer_bytes_per_conn"`
	IdleCPUPct    float64 `json:"idle_cpu_pct_of_core,omitempty"`
	IdleWindowSec float64 `json:"idle_window_sec,omitempty"`
	Dropped       int     `json:"dropped"`
	Failures      int     `json:"failures"`
	// Connect is the account of the connections added at this size (how
	// many were asked for, opened, failed, answered 503, and the first
	// errors). A short step ends the system's run.
	Connect ConnectSummary `json:"connect"`
	// Extra holds the node's own gauges (edgeplane_*, baseline_*).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// DensitySystem is one system's run.
type DensitySystem struct {
	Spec       SystemSpec     `json:"spec"`
	RSS0       int64          `json:"rss0_bytes"`
	HeapStack0 float64        `json:"heap_stack0_bytes"`
	Goroutine0 float64        `json:"goroutines0"`
	Points     []DensityPoint `json:"points"`
	// HeapProfile is the profile file at the largest size; HeapTop the
	// head of its `go tool pprof -top` (in-use space).
	HeapProfile string   `json:"heap_profile,omitempty"`
	HeapTop     []string `json:"heap_top,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// DensityReport is the result of RunDensity.
type DensityReport struct {
	Machine Machine         `json:"machine"`
	When    time.Time       `json:"when"`
	Systems []DensitySystem `json:"systems"`
	// PerSize holds, per size, each system's point under its key
	// ("edgeplane" for the first edgeplane system, "edgeplane_<poller>" for
	// each, "baseline", "floor") and "ratio" (baseline bytes per connection
	// over each other system's).
	PerSize []map[string]any `json:"per_size"`
}

// RunDensity measures idle-connection density of every system.
func RunDensity(ctx context.Context, cfg DensityConfig) (*DensityReport, error) {
	if cfg.IdleWindow <= 0 {
		cfg.IdleWindow = 60 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 256
	}
	sizes := append([]int(nil), cfg.Sizes...)
	sort.Ints(sizes)
	rep := &DensityReport{Machine: ReadMachine(), When: time.Now()}
	for _, spec := range cfg.Systems {
		sys, err := densityOne(ctx, cfg, spec, sizes)
		if err != nil {
			sys.Error = err.Error()
		}
		rep.Systems = append(rep.Systems, sys)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	rep.PerSize = densityPerSize(rep.Systems, sizes)
	return rep, nil
}

func systemKey(s SystemSpec) string {
	switch s.Kind {
	case KindBaseline:
		return "baseline"
	case KindFloor:
		return "floor"
	}
	if s.Poller == "" {
		return "edgeplane"
	}
	return "edgeplane_" + s.Poller
}

func densityPerSize(systems []DensitySystem, sizes []int) []map[string]any {
	var out []map[string]any
	for _, n := range sizes {
		m := map[string]any{"conns": n}
		pts := map[string]DensityPoint{}
		firstEdge := ""
		for _, s := range systems {
			for _, p := range s.Points {
				if p.Conns == n {
					k := systemKey(s.Spec)
					pts[k] = p
					m[k] = p
					if s.Spec.Kind == KindEdgeplane && firstEdge == "" {
						firstEdge = k
					}
				}
			}
		}
		if firstEdge != "" {
			m["edgeplane"] = pts[firstEdge]
		}
		ratio := map[string]float64{}
		if b, ok := pts["baseline"]; ok {
			for k, p := range pts {
				if k != "baseline" && p.BytesPerConn > 0 {
					ratio[k] = b.BytesPerConn / p.BytesPerConn
				}
			}
			if firstEdge != "" && pts[firstEdge].BytesPerConn > 0 {
				ratio["edgeplane"] = b.BytesPerConn / pts[firstEdge].BytesPerConn
			}
		}
		m["ratio"] = ratio
		out = append(out, m)
	}
	return out
}

type sample struct {
	proc    ProcSample
	metrics map[string]float64
	kmem    KernelMem
}

func takeSample(s *Server) (sample, error) {
	var out sample
	var err error
	if out.proc, err = ReadProc(s.PID()); err != nil {
		return out, err
	}
	if out.metrics, err = s.Metrics(); err != nil {
		return out, err
	}
	out.kmem, _ = ReadKernelMem()
	return out, nil
}

func densityOne(ctx context.Context, cfg DensityConfig, spec SystemSpec, sizes []int) (DensitySystem, error) {
	sys := DensitySystem{Spec: spec}
	srv, err := StartServer(ctx, ServerConfig{Spec: spec, Edgeplane: cfg.Edgeplane, Self: cfg.Self, Stderr: cfg.Log, ExtraArgs: cfg.ServerArgs[spec.Kind]})
	if err != nil {
		return sys, err
	}
	defer srv.Stop()
	time.Sleep(time.Second)
	s0, err := takeSample(srv)
	if err != nil {
		return sys, err
	}
	sys.RSS0 = s0.proc.RSS
	sys.HeapStack0 = s0.metrics["go_memstats_heap_inuse_bytes"] + s0.metrics["go_memstats_stack_inuse_bytes"]
	sys.Goroutine0 = s0.metrics["go_goroutines"]
	var fleets []*Fleet
	defer func() {
		for _, f := range fleets {
			f.Close()
		}
	}()
	prev, prevRSS := 0, s0.proc.RSS
	for i, n := range sizes {
		add := n - prev
		if add <= 0 {
			continue
		}
		room, err := srv.Room()
		if err != nil {
			return sys, err
		}
		f, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: []string{srv.Listen}, Room: []int{room}, Conns: add,
			Concurrency: cfg.Concurrency, Retry: []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second},
			SkipNegotiate: cfg.SkipNegotiate, MessagePack: spec.MessagePack, Stateful: spec.Stateful, Stderr: cfg.Log})
		if err != nil {
			return sys, err
		}
		fleets = append(fleets, f)
		bar := NewBar(cfg.Progress, fmt.Sprintf("%s +%d", spec.Name, add), add)
		p, err := f.WaitSettled(ctx, 3*time.Minute, bar)
		bar.Done(p.Open, fmt.Sprintf("fail %d  503 %d", p.Failures, p.Rejected503))
		if err != nil {
			return sys, err
		}
		step, _ := f.Summary()
		if !srv.Alive() {
			return sys, fmt.Errorf("bench: %s died at %d connections", spec.Name, n)
		}
		time.Sleep(cfg.Settle)
		s, err := takeSample(srv)
		if err != nil {
			return sys, err
		}
		open, dropped, failures, mpConns := 0, 0, 0, 0
		for _, fl := range fleets {
			pp := fl.Progress()
			open += pp.Open
			dropped += pp.Dropped
			failures += pp.Failures
			mpConns += pp.MessagePack
		}
		pt := DensityPoint{
			Conns: n, Open: open, MessagePack: mpConns, RSS: s.proc.RSS, Threads: s.proc.Threads, OpenFDs: s.proc.OpenFDs, Connect: step,
			HeapInuse:  s.metrics["go_memstats_heap_inuse_bytes"],
			StackInuse: s.metrics["go_memstats_stack_inuse_bytes"],
			Goroutines: s.metrics["go_goroutines"],
			Dropped:    dropped, Failures: failures,
		}
		base := float64(open)
		if base <= 0 {
			base = float64(n)
		}
		pt.BytesPerConn = float64(s.proc.RSS-s0.proc.RSS) / base
		pt.SlopePerConn = float64(s.proc.RSS-prevRSS) / float64(n-prev)
		pt.HeapStackPer = (pt.HeapInuse + pt.StackInuse - sys.HeapStack0) / base
		if pt.BytesPerConn > 0 {
			pt.ConnsPerGiB = float64(1<<30) / pt.BytesPerConn
		}
		if s.kmem.Source != "" && s.kmem.Source == s0.kmem.Source {
			pt.KernelSource = s.kmem.Source
			pt.SlabPerConn = float64(s.kmem.SocketSlab-s0.kmem.SocketSlab) / base
			pt.SlabTotalPer = float64(s.kmem.TotalSlab-s0.kmem.TotalSlab) / base
			pt.KernelPerConn = pt.SlabPerConn / 2
			pt.TCPMemPerConn = float64(s.kmem.TCPMemPages-s0.kmem.TCPMemPages) * 4096 / base
			if pt.BytesPerConn+pt.KernelPerConn > 0 {
				pt.ConnsPerGiBKernel = float64(1<<30) / (pt.BytesPerConn + pt.KernelPerConn)
			}
		}
		pt.Extra = map[string]float64{}
		for k, v := range s.metrics {
			if strings.HasPrefix(k, "edgeplane_") || strings.HasPrefix(k, "baseline_") {
				pt.Extra[k] = v
			}
		}
		if step.Short() {
			// The size was not reached: what was measured is kept (per
			// open connection), and no larger size is tried.
			sys.Points = append(sys.Points, pt)
			return sys, nil
		}
		if i == len(sizes)-1 && cfg.ProfileDir != "" {
			path := filepath.Join(cfg.ProfileDir, "heap-"+spec.Name+".pb.gz")
			if err := srv.HeapProfile(path); err == nil {
				sys.HeapProfile = path
				sys.HeapTop = TopOfProfile(path, 25)
			}
		}
		if cfg.IdleAtEverySize || i == len(sizes)-1 {
			pt.IdleCPUPct, pt.IdleWindowSec, err = idleCPU(ctx, srv, cfg.IdleWindow, NewBar(cfg.Progress, spec.Name+" idle CPU", int(cfg.IdleWindow.Seconds())))
			if err != nil {
				return sys, err
			}
		}
		sys.Points = append(sys.Points, pt)
		prev, prevRSS = n, s.proc.RSS
	}
	return sys, nil
}

// idleCPU measures the server's CPU over window, in percent of one core.
func idleCPU(ctx context.Context, srv *Server, window time.Duration, bar *Bar) (pct, secs float64, err error) {
	a, err := ReadProc(srv.PID())
	if err != nil {
		return 0, 0, err
	}
	end := a.At.Add(window)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		bar.Update(int(time.Since(a.At).Seconds()), "")
	}
	b, err := ReadProc(srv.PID())
	if err != nil {
		return 0, 0, err
	}
	secs = b.At.Sub(a.At).Seconds()
	bar.Done(int(secs), fmt.Sprintf("%.2f%% of a core", 100*(b.CPUSec-a.CPUSec)/secs))
	return 100 * (b.CPUSec - a.CPUSec) / secs, secs, nil
}
