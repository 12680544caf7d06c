package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// FloorRunConfig configures RunFloor.
type FloorRunConfig struct {
	// Conns idle connections to the floor server.
	Conns int
	// Sizes of the record each client receives; default 64 and 4096.
	Sizes []int
	// Modes of the write loop; default write and writev.
	Modes []string
	// Messages per (mode, size); default 10.
	Messages int
	// Interval is the least time between broadcast starts; default 1 s.
	Interval time.Duration
	// IdleWindow for the keep-alive CPU; default 30 s.
	IdleWindow time.Duration
	// Settle after connecting, before the kernel memory is read; default 5 s.
	Settle time.Duration
	// Writers threads of the write loop; default the server's GOMAXPROCS.
	Writers int
	// Self is the edgebench binary (the floor server and the clients).
	Self          string
	Log, Progress io.Writer
}

// FloorCase is one (mode, size) of the floor's broadcasts.
type FloorCase struct {
	Mode      string `json:"mode"`
	Size      int    `json:"size"`
	Messages  int    `json:"messages"`
	Expected  uint64 `json:"expected_deliveries"`
	Delivered uint64 `json:"delivered"`
	// Completion: per message, send until the last client has it.
	Completion Summary `json:"completion"`
	Latency    Summary `json:"latency"`
	// LoopWallMs: the write loop's own time per broadcast (first write to
	// last), median; WriteCPUus: the writer threads' CPU per write, all
	// messages (the exact cost of one non-blocking write to a loopback
	// socket, the receiver's TCP work included).
	LoopWallMs float64 `json:"loop_wall_ms_p50"`
	WriteCPUus float64 `json:"write_cpu_us"`
	// ServerCPUus and ClientCPUus: the processes' CPU from /proc per
	// delivery over the broadcasts, idle rate removed from the server's.
	ServerCPUus float64 `json:"server_cpu_us_per_delivery"`
	ClientCPUus float64 `json:"client_cpu_us_per_delivery"`
	ShortWrites int     `json:"short_writes"`
	Hist        *Hist   `json:"latency_hist,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// FloorReport is the result of RunFloor.
type FloorReport struct {
	Machine Machine        `json:"machine"`
	When    time.Time      `json:"when"`
	Conns   int            `json:"conns"`
	Writers int            `json:"writers"`
	Connect ConnectSummary `json:"connect"`
	// Kernel memory per connection: KernelBothEnds is the socket slab
	// growth per connection (both loopback ends), KernelPerConn the
	// server end's half; ConnsPerGiBKernel = 2³⁰ / KernelPerConn, the
	// most connections a GiB can hold whatever the server.
	Kernel            KernelMem `json:"kernel_after"`
	KernelBothEnds    float64   `json:"kernel_both_ends_per_conn"`
	KernelPerConn     float64   `json:"kernel_per_conn"`
	ConnsPerGiBKernel float64   `json:"conns_per_gib_kernel_only"`
	TCPMemPerConn     float64   `json:"tcp_buffer_bytes_per_conn"`
	ServerRSSPerConn  float64   `json:"floor_server_rss_per_conn"`
	// Idle: the keep-alive system calls alone. IdleCPUPct is the server's
	// CPU over the window in % of a core; PingsPerSec the reads of client
	// pings plus the server's ping writes per second; IdleCPUusPerPing
	// their cost each.
	IdleCPUPct       float64     `json:"idle_cpu_pct_of_core"`
	IdleWindowSec    float64     `json:"idle_window_sec"`
	PingsPerSec      float64     `json:"ping_syscalls_per_sec"`
	IdleCPUusPerPing float64     `json:"idle_cpu_us_per_ping_syscall"`
	Cases            []FloorCase `json:"cases"`
	Error            string      `json:"error,omitempty"`
}

// Shortfalls reports a floor run that did not open every connection.
func (r *FloorReport) Shortfalls() []string {
	if r.Connect.Short() {
		return []string{fmt.Sprintf("floor: %d of %d requested connections open (%s)", r.Connect.Connected, r.Conns, r.Connect)}
	}
	return nil
}

// Errors lists what could not be measured.
func (r *FloorReport) Errors() []string {
	var out []string
	if r.Error != "" {
		out = append(out, "floor: "+r.Error)
	}
	for _, c := range r.Cases {
		if c.Error != "" {
			out = append(out, fmt.Sprintf("floor %s %d B: %s", c.Mode, c.Size, c.Error))
		}
	}
	return out
}

// RunFloor measures the kernel's floor on this machine with the load
// client: kernel memory per idle connection, the keep-alive system calls'
// CPU, and broadcasts as raw write loops.
func RunFloor(ctx context.Context, cfg FloorRunConfig) (*FloorReport, error) {
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []int{64, 4096}
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []string{FloorWrite, FloorWritev}
	}
	if cfg.Messages <= 0 {
		cfg.Messages = 10
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.IdleWindow <= 0 {
		cfg.IdleWindow = 30 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	rep := &FloorReport{Machine: ReadMachine(), When: time.Now(), Conns: cfg.Conns}
	err := runFloor(ctx, cfg, rep)
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, ctx.Err()
}

func runFloor(ctx context.Context, cfg FloorRunConfig, rep *FloorReport) error {
	k0, kerr := ReadKernelMem()
	var extra []string
	if cfg.Writers > 0 {
		extra = []string{"--writers", strconv.Itoa(cfg.Writers)}
	}
	srv, err := StartServer(ctx, ServerConfig{Spec: SystemSpec{Name: "floor", Kind: KindFloor}, Self: cfg.Self, Stderr: cfg.Log, ExtraArgs: extra})
	if err != nil {
		return err
	}
	defer srv.Stop()
	rep.Writers = cfg.Writers
	p0, err := ReadProc(srv.PID())
	if err != nil {
		return err
	}
	room, err := srv.Room()
	if err != nil {
		return err
	}
	f, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: []string{srv.Listen}, Room: []int{room}, Conns: cfg.Conns, Concurrency: 256,
		Retry: []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second}, Stderr: cfg.Log})
	if err != nil {
		return err
	}
	defer f.Close()
	bar := NewBar(cfg.Progress, "floor connect", cfg.Conns)
	p, err := f.WaitSettled(ctx, connectTimeout(cfg.Conns), bar)
	bar.Done(p.Open, fmt.Sprintf("fail %d  503 %d", p.Failures, p.Rejected503))
	rep.Connect, _ = f.Summary()
	if err != nil {
		return err
	}
	open := float64(rep.Connect.Connected)
	if open == 0 {
		return fmt.Errorf("bench: no connection to the floor server opened")
	}
	sleepCtx(ctx, cfg.Settle)
	k1, err := ReadKernelMem()
	if kerr == nil && err == nil && k0.Source == k1.Source {
		rep.Kernel = k1
		rep.KernelBothEnds = float64(k1.SocketSlab-k0.SocketSlab) / open
		rep.KernelPerConn = rep.KernelBothEnds / 2
		rep.TCPMemPerConn = float64(k1.TCPMemPages-k0.TCPMemPages) * 4096 / open
		if rep.KernelPerConn > 0 {
			rep.ConnsPerGiBKernel = float64(1<<30) / rep.KernelPerConn
		}
	}
	if p1, err := ReadProc(srv.PID()); err == nil {
		rep.ServerRSSPerConn = float64(p1.RSS-p0.RSS) / open
	}

	// Idle: the keep-alive system calls, both ways.
	m0, err := srv.Metrics()
	if err != nil {
		return err
	}
	pct, secs, err := idleCPU(ctx, srv, cfg.IdleWindow, NewBar(cfg.Progress, "floor idle CPU", int(cfg.IdleWindow.Seconds())))
	if err != nil {
		return err
	}
	m1, err := srv.Metrics()
	if err != nil {
		return err
	}
	rep.IdleCPUPct, rep.IdleWindowSec = pct, secs
	calls := m1["floor_reads_total"] - m0["floor_reads_total"] + m1["floor_pings_out_total"] - m0["floor_pings_out_total"]
	rep.PingsPerSec = calls / secs
	if calls > 0 {
		rep.IdleCPUusPerPing = pct / 100 * secs / calls * 1e6
	}

	client := &http.Client{Timeout: 60 * time.Second}
	for _, mode := range cfg.Modes {
		for _, size := range cfg.Sizes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			rep.Cases = append(rep.Cases, floorCase(ctx, cfg, srv, f, client, mode, size, rep.Connect.Connected, rep.IdleCPUPct))
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func floorCase(ctx context.Context, cfg FloorRunConfig, srv *Server, f *Fleet, client *http.Client, mode string, size, members int, idlePct float64) FloorCase {
	c := FloorCase{Mode: mode, Size: size, Messages: cfg.Messages, Expected: uint64(members) * uint64(cfg.Messages)}
	if err := f.Reset(); err != nil {
		c.Error = err.Error()
		return c
	}
	sent := make([]int64, cfg.Messages)
	var walls Hist
	var cpuNs int64
	var writes int
	var scpu, ccpu float64
	bar := NewBar(cfg.Progress, fmt.Sprintf("floor %s %dB", mode, size), cfg.Messages)
	for seq := 0; seq < cfg.Messages && ctx.Err() == nil; seq++ {
		start := time.Now()
		cpu0, ccpu0 := serversCPU([]*Server{srv}), f.CPUSec()
		sent[seq] = start.UnixNano()
		body := `{"target":"bench","arguments":` + InvocationArgs("bench", int64(seq), sent[seq], size) + `}`
		resp, err := client.Post("http://"+srv.Admin+"/api/hubs/chat/:send?mode="+mode, "application/json", bytes.NewBufferString(body))
		if err != nil {
			c.Error = err.Error()
			return c
		}
		var st FloorStats
		derr := json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || derr != nil {
			c.Error = fmt.Sprintf("bench: floor send: status %d, %v", resp.StatusCode, derr)
			return c
		}
		walls.Record(time.Duration(st.WallNs))
		cpuNs += st.CPUNs
		writes += st.Writes
		c.ShortWrites += st.Short
		want := uint64(members) * uint64(seq+1)
		deadline := start.Add(15 * time.Second)
		for f.Progress().Deliveries < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		window := time.Since(start).Seconds()
		scpu += serversCPU([]*Server{srv}) - cpu0 - idlePct/100*window
		ccpu += f.CPUSec() - ccpu0
		bar.Update(seq+1, "")
		if rest := cfg.Interval - time.Since(start); rest > 0 {
			sleepCtx(ctx, rest)
		}
	}
	bar.Done(cfg.Messages, "")
	st, err := f.Stats()
	if err != nil {
		c.Error = err.Error()
		return c
	}
	c.Delivered = st.Deliveries
	if st.Latency != nil {
		c.Latency = st.Latency.Summary()
		c.Hist = st.Latency
	}
	var comp Hist
	for seq, s := range sent {
		if t, ok := st.SeqLast[strconv.Itoa(seq)]; ok && s != 0 {
			comp.Record(time.Duration(t - s))
		}
	}
	c.Completion = comp.Summary()
	c.LoopWallMs = walls.Percentile(50) / 1000
	if writes > 0 {
		c.WriteCPUus = float64(cpuNs) / float64(writes) / 1000
	}
	if c.Delivered > 0 {
		c.ServerCPUus = scpu / float64(c.Delivered) * 1e6
		c.ClientCPUus = ccpu / float64(c.Delivered) * 1e6
	}
	return c
}
