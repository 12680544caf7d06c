package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ScaleConfig configures RunScale: a fleet of nodes on one Redis, every
// node filled to PerNode idle connections, then broadcasts to all of them
// through Redis.
type ScaleConfig struct {
	// Nodes and PerNode: the fleet; default 16 × 18,750 (300,000).
	Nodes, PerNode int
	// Redis URL of the backplane; empty: RunScale starts a redis-server
	// (RedisServer, default "redis-server" on PATH) and stops it after,
	// at nice RedisNice (default -10, when allowed): it stands in for a
	// Redis host of its own, and one Redis starved of CPU by 16 nodes and
	// their load clients on two cores would measure the box, not the fleet.
	Redis, RedisServer string
	RedisNice          int
	// Messages broadcasts of Size bytes (the record a client receives);
	// default 10 of 64 B, at least Interval apart (default 2 s), each
	// waiting for every delivery up to Drain (default 60 s).
	Messages int
	Size     int
	Interval time.Duration
	Drain    time.Duration
	// Settle after every connection is open, before memory is read;
	// default 10 s. IdleWindow: the fleet's idle CPU (keep-alives), also
	// taken off the broadcasts' CPU; default 20 s.
	Settle, IdleWindow time.Duration
	// Concurrency: connection attempts in flight per client process;
	// default 64. Retry: delays of the retries of a failed attempt;
	// default 0, 1, 2, 5, 10, 10 s.
	Concurrency int
	Retry       []time.Duration
	// ClientKeepAlive is the load clients' ping interval; default 15 s
	// (the official client's). Both ends of every connection run on this
	// box: at 300,000 connections the 15 s keep-alives alone, 40,000 pings
	// a second each way, take most of two cores, so the scale scenario
	// stretches them (and the nodes' own, --keepalive and
	// --client-timeout) with make bench-scale.
	ClientKeepAlive time.Duration
	// Poller of the nodes (default: the node's); ServerArgs are extra node
	// arguments.
	Poller     string
	ServerArgs []string
	// Edgeplane and Self are the binaries (see ServerConfig).
	Edgeplane, Self string
	Log, Progress   io.Writer
}

// ScaleNode is one node of the fleet.
type ScaleNode struct {
	Admin       string  `json:"admin"`
	Planned     int     `json:"planned"`
	Connections float64 `json:"connections"` // the node's own count (edgeplane_connections)
	RSS0        int64   `json:"rss0_bytes"`
	RSS         int64   `json:"rss_bytes"`
	OpenFDs     int     `json:"open_fds"`
	Alive       bool    `json:"alive"`
	// Closed and Rejected are the node's edgeplane_closed_total and
	// edgeplane_rejected_total by reason at the end of the run: why
	// connections left or were turned away.
	Closed   map[string]float64 `json:"closed,omitempty"`
	Rejected map[string]float64 `json:"rejected,omitempty"`
}

// finalSample reads what each node says about its connections at the end
// of the run, whatever ended it.
func finalSample(servers []*Server, fleet []ScaleNode) {
	for i, s := range servers {
		if i >= len(fleet) {
			return
		}
		n := &fleet[i]
		n.Alive = s.Alive()
		m, err := s.Metrics()
		if err != nil {
			continue
		}
		n.Connections = 0
		for k, v := range m {
			switch {
			case strings.HasPrefix(k, "edgeplane_connections"):
				n.Connections += v
			case strings.HasPrefix(k, "edgeplane_closed_total{") && v > 0:
				if n.Closed == nil {
					n.Closed = map[string]float64{}
				}
				n.Closed[labelValue(k)] += v
			case strings.HasPrefix(k, "edgeplane_rejected_total{") && v > 0:
				if n.Rejected == nil {
					n.Rejected = map[string]float64{}
				}
				n.Rejected[labelValue(k)] += v
			}
		}
	}
}

// labelValue is the first label's value of a series name{label="v",…}.
func labelValue(series string) string {
	_, v, _ := strings.Cut(series, `="`)
	v, _, _ = strings.Cut(v, `"`)
	return v
}

// ScaleReport is the result of RunScale.
type ScaleReport struct {
	Machine Machine    `json:"machine"`
	When    time.Time  `json:"when"`
	Spec    SystemSpec `json:"spec"`
	Nodes   int        `json:"nodes"`
	PerNode int        `json:"per_node"`
	Conns   int        `json:"conns"`
	// NodeArgs are the nodes' extra arguments; ClientKeepAliveSec the
	// clients' ping interval.
	NodeArgs           []string `json:"node_args,omitempty"`
	ClientKeepAliveSec float64  `json:"client_keepalive_sec"`
	// Connect: the connections; ConnectSeconds from the first attempt to
	// the last open.
	Connect        ConnectSummary `json:"connect"`
	ConnectSeconds float64        `json:"connect_seconds"`
	Fleet          []ScaleNode    `json:"fleet"`
	// Memory per connection: RSSPerConn is the nodes' RSS growth over the
	// connections; KernelPerConn the server end's half of the socket slab
	// growth (KernelBothEnds); WithKernel their sum. ConnsPerGiB and
	// ConnsPerGiBKernel: 2³⁰ over RSSPerConn and over WithKernel.
	RSSPerConn        float64   `json:"rss_per_conn"`
	Kernel            KernelMem `json:"kernel_after"`
	KernelBothEnds    float64   `json:"kernel_both_ends_per_conn"`
	KernelPerConn     float64   `json:"kernel_per_conn"`
	WithKernel        float64   `json:"bytes_per_conn_with_kernel"`
	ConnsPerGiB       float64   `json:"conns_per_gib"`
	ConnsPerGiBKernel float64   `json:"conns_per_gib_with_kernel"`
	// IdleCPUPct: the whole fleet's CPU with every connection idle
	// (keep-alives both ways), in % of one core.
	IdleCPUPct float64 `json:"idle_cpu_pct_of_core"`
	// The broadcasts.
	Messages  int    `json:"messages"`
	Size      int    `json:"size"`
	Expected  uint64 `json:"expected_deliveries"`
	Delivered uint64 `json:"delivered"`
	Lost      int64  `json:"lost"`
	// DroppedDuring: established connections lost during the broadcasts.
	DroppedDuring int `json:"dropped_during_broadcasts"`
	// Reach: per delivery, PUBLISH to arrival. Completion: per broadcast,
	// PUBLISH until the last client has it (CompletionMs, each).
	Reach            Summary   `json:"reach"`
	Completion       Summary   `json:"completion"`
	CompletionMs     []float64 `json:"completion_ms"`
	DeliveriesPerSec float64   `json:"deliveries_per_sec"`
	// ServerCPUSec: the nodes' CPU over the broadcasts, idle rate removed;
	// ServerCPUus per delivery. Client likewise, without the idle removal.
	ServerCPUSec float64 `json:"server_cpu_sec"`
	ServerCPUus  float64 `json:"server_cpu_us_per_delivery"`
	ClientCPUSec float64 `json:"client_cpu_sec"`
	ClientCPUus  float64 `json:"client_cpu_us_per_delivery"`
	// RedisCPUSec: Redis's CPU (INFO cpu) over the broadcasts;
	// RedisIdleCPUPct its rate over the idle window (the nodes' health
	// checks, its own housekeeping), for comparison: ten PUBLISHes cost
	// Redis next to nothing, so the two are of the same order.
	RedisCPUSec       float64 `json:"redis_cpu_sec"`
	RedisIdleCPUPct   float64 `json:"redis_idle_cpu_pct_of_core"`
	RedisBroadcastSec float64 `json:"broadcast_phase_sec"`
	Hist              *Hist   `json:"reach_hist,omitempty"`
	Error             string  `json:"error,omitempty"`
}

// Shortfalls reports a scale run that did not open every connection or
// lost deliveries.
func (r *ScaleReport) Shortfalls() []string {
	var out []string
	if r.Connect.Short() {
		out = append(out, fmt.Sprintf("%s fleet: %d of %d requested connections open (%s)", r.Spec.Name, r.Connect.Connected, r.Conns, r.Connect))
	}
	if r.Lost > 0 {
		out = append(out, fmt.Sprintf("%s fleet: %d of %d deliveries lost", r.Spec.Name, r.Lost, r.Expected))
	}
	return out
}

// Errors lists what could not be measured.
func (r *ScaleReport) Errors() []string {
	if r.Error != "" {
		return []string{r.Spec.Name + " fleet: " + r.Error}
	}
	return nil
}

// RunScale measures a fleet of nodes on one Redis: every connection
// opened and idle, then broadcasts to all through Redis.
func RunScale(ctx context.Context, cfg ScaleConfig) (*ScaleReport, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 16
	}
	if cfg.PerNode <= 0 {
		cfg.PerNode = 18750
	}
	if cfg.Messages <= 0 {
		cfg.Messages = 10
	}
	if cfg.Size <= 0 {
		cfg.Size = 64
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 60 * time.Second
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 10 * time.Second
	}
	if cfg.IdleWindow <= 0 {
		cfg.IdleWindow = 20 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.RedisNice == 0 {
		cfg.RedisNice = -10
	}
	if cfg.Retry == nil {
		cfg.Retry = []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 10 * time.Second}
	}
	spec := SystemSpec{Name: "edgeplane", Kind: KindEdgeplane, Poller: cfg.Poller}
	if cfg.Poller != "" {
		spec.Name += "-" + cfg.Poller
	}
	rep := &ScaleReport{Machine: ReadMachine(), When: time.Now(), Spec: spec, Nodes: cfg.Nodes, PerNode: cfg.PerNode,
		Conns: cfg.Nodes * cfg.PerNode, Messages: cfg.Messages, Size: cfg.Size, NodeArgs: cfg.ServerArgs}
	rep.ClientKeepAliveSec = 15
	if cfg.ClientKeepAlive > 0 {
		rep.ClientKeepAliveSec = cfg.ClientKeepAlive.Seconds()
	}
	if err := runScale(ctx, cfg, rep); err != nil {
		rep.Error = err.Error()
	}
	return rep, ctx.Err()
}

func runScale(ctx context.Context, cfg ScaleConfig, rep *ScaleReport) error {
	url := cfg.Redis
	if url == "" {
		stop, u, err := startRedis(ctx, cfg.RedisServer, cfg.RedisNice, cfg.Log)
		if err != nil {
			return err
		}
		defer stop()
		url = u
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("bench: redis url: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("bench: redis %s: %w", url, err)
	}
	k0, kerr := ReadKernelMem()

	var servers []*Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	var addrs []string
	var rooms []int
	bar := NewBar(cfg.Progress, "start nodes", cfg.Nodes)
	for i := 0; i < cfg.Nodes; i++ {
		s, err := StartServer(ctx, ServerConfig{Spec: rep.Spec, Edgeplane: cfg.Edgeplane, Self: cfg.Self, Redis: url,
			Stderr: cfg.Log, ExtraArgs: cfg.ServerArgs})
		if err != nil {
			return err
		}
		servers = append(servers, s)
		addrs = append(addrs, s.Listen)
		room, err := s.Room()
		if err != nil {
			return err
		}
		rooms = append(rooms, room)
		bar.Update(i+1, "")
	}
	bar.Done(cfg.Nodes, "")
	sleepCtx(ctx, time.Second)
	rep.Fleet = make([]ScaleNode, len(servers))
	for i, s := range servers {
		p, err := ReadProc(s.PID())
		if err != nil {
			return err
		}
		rep.Fleet[i] = ScaleNode{Admin: s.Admin, RSS0: p.RSS}
	}

	f, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: addrs, Room: rooms, Conns: rep.Conns, Concurrency: cfg.Concurrency,
		Retry: cfg.Retry, KeepAlive: cfg.ClientKeepAlive, Stderr: cfg.Log})
	if err != nil {
		return err
	}
	defer f.Close()
	// Deferred after the fleet's Close and the nodes' Stop, so it runs
	// first: what the nodes say with every client still there.
	defer finalSample(servers, rep.Fleet)
	bar = NewBar(cfg.Progress, "connect", rep.Conns)
	p, err := f.WaitSettled(ctx, connectTimeout(rep.Conns), bar)
	bar.Done(p.Open, fmt.Sprintf("fail %d  503 %d  given up %d", p.Failures, p.Rejected503, p.GivenUp))
	st, serr := f.Stats()
	rep.Connect, _ = f.Summary()
	if serr == nil && st.LastOpenNano > st.FirstAttemptNano && st.FirstAttemptNano > 0 {
		rep.ConnectSeconds = float64(st.LastOpenNano-st.FirstAttemptNano) / 1e9
	}
	for i := range rep.Fleet {
		if i < len(rep.Connect.PerNode) {
			rep.Fleet[i].Planned = rep.Connect.PerNode[i]
		}
	}
	if err != nil {
		return err
	}
	open := rep.Connect.Connected
	if open == 0 {
		return fmt.Errorf("bench: no connection opened")
	}

	// Memory, idle.
	sleepCtx(ctx, cfg.Settle)
	var grow int64
	for i, s := range servers {
		p, err := ReadProc(s.PID())
		if err != nil {
			return err
		}
		n := &rep.Fleet[i]
		n.RSS, n.OpenFDs = p.RSS, p.OpenFDs
		grow += p.RSS - n.RSS0
	}
	rep.RSSPerConn = float64(grow) / float64(open)
	if k1, err := ReadKernelMem(); kerr == nil && err == nil && k1.Source == k0.Source {
		rep.Kernel = k1
		rep.KernelBothEnds = float64(k1.SocketSlab-k0.SocketSlab) / float64(open)
		rep.KernelPerConn = rep.KernelBothEnds / 2
	}
	rep.WithKernel = rep.RSSPerConn + rep.KernelPerConn
	if rep.RSSPerConn > 0 {
		rep.ConnsPerGiB = float64(1<<30) / rep.RSSPerConn
	}
	if rep.WithKernel > 0 {
		rep.ConnsPerGiBKernel = float64(1<<30) / rep.WithKernel
	}
	cpu0, t0 := serversCPU(servers), time.Now()
	rIdle0, rerr := redisCPU(ctx, rdb)
	ibar := NewBar(cfg.Progress, "idle CPU", int(cfg.IdleWindow.Seconds()))
	for time.Since(t0) < cfg.IdleWindow && ctx.Err() == nil {
		sleepCtx(ctx, 500*time.Millisecond)
		ibar.Update(int(time.Since(t0).Seconds()), "")
	}
	rep.IdleCPUPct = 100 * (serversCPU(servers) - cpu0) / time.Since(t0).Seconds()
	if r1, err := redisCPU(ctx, rdb); err == nil && rerr == nil {
		rep.RedisIdleCPUPct = 100 * (r1 - rIdle0) / time.Since(t0).Seconds()
	}
	ibar.Done(int(time.Since(t0).Seconds()), fmt.Sprintf("%.1f%% of a core", rep.IdleCPUPct))

	// Broadcasts to all, through Redis.
	if err := f.Reset(); err != nil {
		return err
	}
	dropped0 := f.Progress().Dropped
	redis0, _ := redisCPU(ctx, rdb)
	bstart := time.Now()
	sent := make([]int64, cfg.Messages)
	bbar := NewBar(cfg.Progress, fmt.Sprintf("broadcast %d B to %d", cfg.Size, open), cfg.Messages)
	for seq := 0; seq < cfg.Messages && ctx.Err() == nil; seq++ {
		start := time.Now()
		c0, cc0 := serversCPU(servers), f.CPUSec()
		sent[seq] = start.UnixNano()
		rec := []byte(`{"type":1,"target":"bench","arguments":` + InvocationArgs("bench", int64(seq), sent[seq], cfg.Size) + "}\x1e")
		if err := rdb.Publish(ctx, "chat:all", EncodeInvocation(nil, nil, rec)).Err(); err != nil {
			return fmt.Errorf("bench: publish: %w", err)
		}
		want := uint64(open) * uint64(seq+1)
		deadline := start.Add(cfg.Drain)
		for f.Progress().Deliveries < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		window := time.Since(start).Seconds()
		rep.ServerCPUSec += serversCPU(servers) - c0 - rep.IdleCPUPct/100*window
		rep.ClientCPUSec += f.CPUSec() - cc0
		bbar.Update(seq+1, fmt.Sprintf("%.2f s", window))
		if rest := cfg.Interval - time.Since(start); rest > 0 {
			sleepCtx(ctx, rest)
		}
	}
	bbar.Done(cfg.Messages, "")
	if redis1, err := redisCPU(ctx, rdb); err == nil {
		rep.RedisCPUSec = redis1 - redis0
		rep.RedisBroadcastSec = time.Since(bstart).Seconds()
	}
	fs, err := f.Stats()
	if err != nil {
		return err
	}
	rep.Expected = uint64(open) * uint64(cfg.Messages)
	rep.Delivered = fs.Deliveries
	rep.Lost = int64(rep.Expected) - int64(rep.Delivered)
	rep.DroppedDuring = fs.Dropped - dropped0
	if fs.Latency != nil {
		rep.Reach = fs.Latency.Summary()
		rep.Hist = fs.Latency
	}
	var comp Hist
	for seq, s := range sent {
		if t, ok := fs.SeqLast[strconv.Itoa(seq)]; ok && s != 0 {
			comp.Record(time.Duration(t - s))
			rep.CompletionMs = append(rep.CompletionMs, float64(t-s)/1e6)
		}
	}
	rep.Completion = comp.Summary()
	if rep.Completion.P50ms > 0 {
		rep.DeliveriesPerSec = float64(open) / (rep.Completion.P50ms / 1000)
	}
	if rep.Delivered > 0 {
		rep.ServerCPUus = rep.ServerCPUSec / float64(rep.Delivered) * 1e6
		rep.ClientCPUus = rep.ClientCPUSec / float64(rep.Delivered) * 1e6
	}
	return nil
}

// redisCPU reads used_cpu_sys + used_cpu_user from INFO cpu.
func redisCPU(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("bench: redis info: %w", err)
	}
	t := 0.0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			x, _ := strconv.ParseFloat(v, 64)
			t += x
		}
	}
	return t, nil
}

// startRedis starts a redis-server on a free loopback port, without
// persistence, and returns how to stop it and its URL.
func startRedis(ctx context.Context, bin string, nice int, log io.Writer) (stop func(), url string, err error) {
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, "", fmt.Errorf("bench: %s not found (install redis-server, e.g. make deps-redis, or pass --redis URL): %w", bin, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "10000")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("bench: start %s: %w", path, err)
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, nice); err != nil && log != nil {
		fmt.Fprintf(log, "edgebench: redis-server at nice %d: %v (left at the default)\n", nice, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return stop, "redis://" + addr, nil
		}
		select {
		case <-done:
			return nil, "", fmt.Errorf("bench: %s exited at start", path)
		case <-ctx.Done():
			stop()
			return nil, "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, "", fmt.Errorf("bench: %s did not listen on %s in 10 s", path, addr)
		}
	}
}
