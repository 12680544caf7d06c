package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// FanoutConfig configures RunFanout.
type FanoutConfig struct {
	// Conns connections all join one group.
	Conns int
	// Sizes are the approximate sizes of the record each client receives;
	// default 64 and 4096.
	Sizes []int
	// Messages per (path, size) case; default 10.
	Messages int
	// Interval is the least time between two broadcasts' starts; each
	// broadcast also waits until every member has it, so broadcasts never
	// queue behind one another. Default 1 s.
	Interval time.Duration
	// Via: "rest" (POST …/groups/{g}/:send) and/or "redis" (PUBLISH on
	// {hub}:group:{g} in the backplane wire format, needs Redis).
	Via []string
	// Redis URL; when set every server runs with --redis.
	Redis string
	// Nodes per system; default 1 (more than one needs Redis).
	Nodes int
	// Group name prefix; each system uses "<Group>-<system name>"; default "bench".
	Group   string
	Systems []SystemSpec
	// Edgeplane and Self are the binaries (see ServerConfig).
	Edgeplane, Self string
	// Sequential runs one system after the other instead of all at once
	// with alternating messages (the default, fairer on a shared machine).
	Sequential bool
	// Drain bounds the wait for one broadcast's deliveries; default 15 s.
	Drain         time.Duration
	Log, Progress io.Writer
	ServerArgs    map[Kind][]string
}

// FanoutCase is one (path, size) case of one system.
type FanoutCase struct {
	Via       string `json:"via"`
	Size      int    `json:"size"`
	Messages  int    `json:"messages"`
	Expected  uint64 `json:"expected_deliveries"`
	Delivered uint64 `json:"delivered"`
	// Latency: per delivery, send timestamp to arrival.
	Latency Summary `json:"latency"`
	// Completion: per message, send to the last recipient's arrival.
	Completion Summary `json:"completion"`
	// DeliveriesPerSec is the rate of one broadcast: members over the
	// median completion time. OfferedPerSec is deliveries over the whole
	// paced case (bounded by Interval).
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	OfferedPerSec    float64 `json:"offered_deliveries_per_sec"`
	// ServerCPUSec is the servers' CPU over the case less their idle rate
	// (ServerIdleCPUPct, measured for 2 s before the case) over the same time.
	ServerCPUSec     float64 `json:"server_cpu_sec"`
	ServerIdleCPUPct float64 `json:"server_idle_cpu_pct"`
	CPUSecPerMillion float64 `json:"server_cpu_sec_per_million_deliveries"`
	ClientCPUSec     float64 `json:"client_cpu_sec"`
	Dropped          int     `json:"dropped"`
	// WriteCPUus (floor only): the floor's writer threads' own CPU per
	// write, the raw cost of one delivery's system call.
	WriteCPUus float64 `json:"floor_write_cpu_us,omitempty"`
	Hist       *Hist   `json:"latency_hist,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// FanoutSystem is one system's run.
type FanoutSystem struct {
	Spec  SystemSpec `json:"spec"`
	Nodes int        `json:"nodes"`
	// Connect says how many of the requested connections opened, and why
	// the others did not; Members is how many of them joined the group.
	Connect ConnectSummary `json:"connect"`
	Members int            `json:"members"`
	// MessagePack members (SystemSpec.MessagePack of them).
	MessagePack int          `json:"messagepack_members"`
	Cases       []FanoutCase `json:"cases"`
	Error       string       `json:"error,omitempty"`
}

// FanoutReport is the result of RunFanout.
type FanoutReport struct {
	Machine Machine   `json:"machine"`
	When    time.Time `json:"when"`
	Conns   int       `json:"conns"`
	// Interleaved: all systems were up at once and messages alternated.
	Interleaved bool           `json:"interleaved"`
	Systems     []FanoutSystem `json:"systems"`
}

// RunFanout measures group broadcast latency and cost for every system.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*FanoutReport, error) {
	if len(cfg.Sizes) == 0 {
		cfg.Sizes = []int{64, 4096}
	}
	if cfg.Messages <= 0 {
		cfg.Messages = 10
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if len(cfg.Via) == 0 {
		cfg.Via = []string{"rest"}
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1
	}
	if cfg.Group == "" {
		cfg.Group = "bench"
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 15 * time.Second
	}
	if cfg.Redis == "" {
		if cfg.Nodes > 1 {
			return nil, fmt.Errorf("bench: fanout over %d nodes needs --redis", cfg.Nodes)
		}
		for _, v := range cfg.Via {
			if v == "redis" {
				return nil, fmt.Errorf("bench: fanout via redis needs --redis")
			}
		}
	}
	rep := &FanoutReport{Machine: ReadMachine(), When: time.Now(), Conns: cfg.Conns, Interleaved: !cfg.Sequential}
	var rdb *redis.Client
	if cfg.Redis != "" {
		opt, err := redis.ParseURL(cfg.Redis)
		if err != nil {
			return nil, fmt.Errorf("bench: redis url: %w", err)
		}
		rdb = redis.NewClient(opt)
		defer rdb.Close()
	}
	if cfg.Sequential {
		for _, spec := range cfg.Systems {
			rg, err := setupRig(ctx, cfg, spec)
			if err == nil {
				runCases(ctx, cfg, []*rig{rg}, rdb)
			} else {
				rg.sys.Error = err.Error()
			}
			rg.close()
			rep.Systems = append(rep.Systems, rg.sys)
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
		}
		return rep, nil
	}
	// Interleaved: every system is up at once and the messages alternate
	// between them, so that whatever else loads the machine falls on all of
	// them alike.
	var rigs, ok []*rig
	defer func() {
		for _, rg := range rigs {
			rg.close()
		}
	}()
	for _, spec := range cfg.Systems {
		rg, err := setupRig(ctx, cfg, spec)
		rigs = append(rigs, rg)
		if err != nil {
			rg.sys.Error = err.Error()
			continue
		}
		ok = append(ok, rg)
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() == nil && len(ok) > 0 {
		runCases(ctx, cfg, ok, rdb)
	}
	for _, rg := range rigs {
		rep.Systems = append(rep.Systems, rg.sys)
	}
	return rep, ctx.Err()
}

// rig is one system under fanout test: its servers and its clients.
type rig struct {
	sys     FanoutSystem
	servers []*Server
	fleet   *Fleet
	group   string
	client  *http.Client
}

func (rg *rig) close() {
	if rg.fleet != nil {
		rg.fleet.Close()
	}
	for _, s := range rg.servers {
		s.Stop()
	}
}

func setupRig(ctx context.Context, cfg FanoutConfig, spec SystemSpec) (*rig, error) {
	// Every system has its own group name: in interleaved mode several
	// systems may share one Redis.
	rg := &rig{sys: FanoutSystem{Spec: spec, Nodes: cfg.Nodes}, group: cfg.Group + "-" + spec.Name,
		client: &http.Client{Timeout: 10 * time.Second}}
	var addrs []string
	for i := 0; i < cfg.Nodes; i++ {
		s, err := StartServer(ctx, ServerConfig{Spec: spec, Edgeplane: cfg.Edgeplane, Self: cfg.Self, Redis: cfg.Redis, Stderr: cfg.Log, ExtraArgs: cfg.ServerArgs[spec.Kind]})
		if err != nil {
			return rg, err
		}
		rg.servers = append(rg.servers, s)
		addrs = append(addrs, s.Listen)
	}
	room := make([]int, len(rg.servers))
	for i, sv := range rg.servers {
		r, err := sv.Room()
		if err != nil {
			return rg, err
		}
		room[i] = r
	}
	f, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: addrs, Room: room, Conns: cfg.Conns, Concurrency: 256,
		Retry: []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second}, MessagePack: spec.MessagePack, Stateful: spec.Stateful, Stderr: cfg.Log})
	if err != nil {
		return rg, err
	}
	rg.fleet = f
	bar := NewBar(cfg.Progress, spec.Name+" connect", cfg.Conns)
	p, err := f.WaitSettled(ctx, connectTimeout(cfg.Conns), bar)
	bar.Done(p.Open, fmt.Sprintf("fail %d  503 %d", p.Failures, p.Rejected503))
	rg.sys.Connect, _ = f.Summary()
	if err != nil {
		return rg, err
	}
	ids, err := f.IDs()
	if err != nil {
		return rg, err
	}
	rg.sys.Members, err = joinGroup(ctx, rg.servers, ids, f.ChildNodes(), rg.group, cfg.Progress, spec.Name)
	rg.sys.MessagePack = p.MessagePack
	return rg, err
}

// connectTimeout bounds the connect phase of n connections: 3 minutes, and
// a minute more per 20,000 above 60,000.
func connectTimeout(n int) time.Duration {
	return 3*time.Minute + time.Duration(max(0, n-60000)/20000)*time.Minute
}

// caseRun accumulates one (path, size) case of one rig.
type caseRun struct {
	c       FanoutCase
	sent    []int64
	cpu     float64 // server CPU during the broadcasts, idle rate removed
	ccpu    float64
	dropped int
	idlePct float64
	// floor's write counters at the start (floor rigs only)
	floorCPUNs, floorWrites float64
}

func runCases(ctx context.Context, cfg FanoutConfig, rigs []*rig, rdb *redis.Client) {
	time.Sleep(time.Second)
	for _, via := range cfg.Via {
		for _, size := range cfg.Sizes {
			runs := make([]*caseRun, len(rigs))
			for i, rg := range rigs {
				runs[i] = &caseRun{c: FanoutCase{Via: via, Size: size, Messages: cfg.Messages,
					Expected: uint64(rg.sys.Members) * uint64(cfg.Messages)}, sent: make([]int64, cfg.Messages)}
				if err := rg.fleet.Reset(); err != nil {
					runs[i].c.Error = err.Error()
				}
				runs[i].dropped = rg.fleet.Progress().Dropped
				if rg.sys.Spec.Kind == KindFloor {
					runs[i].floorCPUNs, runs[i].floorWrites = floorWriteCounters(rg.servers)
				}
			}
			// Idle rates (keep-alives) over the same 2 s for every rig, so
			// that the cost per delivery counts the broadcasts only.
			idle0 := make([]float64, len(rigs))
			at := time.Now()
			for i, rg := range rigs {
				idle0[i] = serversCPU(rg.servers)
			}
			time.Sleep(2 * time.Second)
			for i, rg := range rigs {
				runs[i].idlePct = 100 * (serversCPU(rg.servers) - idle0[i]) / time.Since(at).Seconds()
			}
			total := len(rigs) * cfg.Messages
			bar := NewBar(cfg.Progress, fmt.Sprintf("%s %dB", via, size), total)
			for seq := 0; seq < cfg.Messages && ctx.Err() == nil; seq++ {
				for k := range rigs {
					// Rotate the order so no system always goes first.
					i := (k + seq) % len(rigs)
					if runs[i].c.Error == "" {
						broadcastOnce(ctx, cfg, rigs[i], runs[i], rdb, via, size, seq)
					}
					bar.Update(seq*len(rigs)+k+1, "")
				}
			}
			bar.Done(total, "")
			for i, rg := range rigs {
				rg.sys.Cases = append(rg.sys.Cases, finishCase(rg, runs[i]))
			}
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// broadcastOnce publishes message seq to rg's group, waits until every
// member has it (or cfg.Drain), then pauses for the rest of cfg.Interval.
func broadcastOnce(ctx context.Context, cfg FanoutConfig, rg *rig, run *caseRun, rdb *redis.Client, via string, size, seq int) {
	start := time.Now()
	cpu0, ccpu0 := serversCPU(rg.servers), rg.fleet.CPUSec()
	now := start.UnixNano()
	run.sent[seq] = now
	args := InvocationArgs("bench", int64(seq), now, size)
	var err error
	switch via {
	case "rest":
		body := `{"target":"bench","arguments":` + args + `}`
		var resp *http.Response
		resp, err = rg.client.Post("http://"+rg.servers[0].Admin+"/api/hubs/chat/groups/"+rg.group+"/:send", "application/json", bytes.NewBufferString(body))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("bench: REST send: status %d", resp.StatusCode)
			}
		}
	case "redis":
		rec := []byte(`{"type":1,"target":"bench","arguments":` + args + "}\x1e")
		err = rdb.Publish(ctx, "chat:group:"+rg.group, EncodeInvocation(nil, nil, rec)).Err()
	default:
		err = fmt.Errorf("bench: unknown fanout path %q", via)
	}
	if err != nil {
		run.c.Error = err.Error()
		return
	}
	want := uint64(rg.sys.Members) * uint64(seq+1)
	deadline := start.Add(cfg.Drain)
	for rg.fleet.Progress().Deliveries < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	window := time.Since(start).Seconds()
	run.cpu += serversCPU(rg.servers) - cpu0 - run.idlePct/100*window
	run.ccpu += rg.fleet.CPUSec() - ccpu0
	if rest := cfg.Interval - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
}

func finishCase(rg *rig, run *caseRun) FanoutCase {
	c := run.c
	c.ServerIdleCPUPct = run.idlePct
	c.ServerCPUSec = run.cpu
	c.ClientCPUSec = run.ccpu
	if c.Error != "" {
		return c
	}
	st, err := rg.fleet.Stats()
	if err != nil {
		c.Error = err.Error()
		return c
	}
	c.Delivered = st.Deliveries
	c.Dropped = st.Dropped - run.dropped
	if st.Latency != nil {
		c.Latency = st.Latency.Summary()
		c.Hist = st.Latency
	}
	var comp Hist
	var last int64
	for seq, sent := range run.sent {
		t, ok := st.SeqLast[strconv.Itoa(seq)]
		if !ok || sent == 0 {
			continue
		}
		comp.Record(time.Duration(t - sent))
		last = max(last, t)
	}
	c.Completion = comp.Summary()
	if last > run.sent[0] {
		c.OfferedPerSec = float64(c.Delivered) / (float64(last-run.sent[0]) / 1e9)
	}
	if c.Completion.P50ms > 0 {
		c.DeliveriesPerSec = float64(rg.sys.Members) / (c.Completion.P50ms / 1000)
	}
	if c.Delivered > 0 {
		c.CPUSecPerMillion = c.ServerCPUSec / float64(c.Delivered) * 1e6
	}
	if rg.sys.Spec.Kind == KindFloor {
		cpu, writes := floorWriteCounters(rg.servers)
		if writes > run.floorWrites {
			c.WriteCPUus = (cpu - run.floorCPUNs) / (writes - run.floorWrites) / 1000
		}
	}
	return c
}

// floorWriteCounters sums the floor servers' write-loop CPU and writes.
func floorWriteCounters(servers []*Server) (cpuNs, writes float64) {
	for _, s := range servers {
		if m, err := s.Metrics(); err == nil {
			cpuNs += m["floor_write_cpu_nanoseconds_total"]
			writes += m["floor_writes_total"]
		}
	}
	return cpuNs, writes
}

// joinGroup PUTs every connection into the group on the node it is
// connected to (child i talks to node nodeOf[i]).
func joinGroup(ctx context.Context, servers []*Server, ids [][]string, nodeOf []int, group string, progress io.Writer, name string) (int, error) {
	type job struct{ admin, id string }
	jobs := make(chan job)
	total := 0
	for _, l := range ids {
		total += len(l)
	}
	bar := NewBar(progress, name+" join group", total)
	var done, failed atomic.Int64
	var firstErr atomic.Value
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+j.admin+"/api/hubs/chat/groups/"+group+"/connections/"+j.id, nil)
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("bench: group add: status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					done.Add(1)
				}
				bar.Update(int(done.Load()), fmt.Sprintf("failed %d", failed.Load()))
			}
		}()
	}
	for i, l := range ids {
		admin := servers[nodeOf[i]].Admin
		for _, id := range l {
			jobs <- job{admin, id}
		}
	}
	close(jobs)
	wg.Wait()
	bar.Done(int(done.Load()), fmt.Sprintf("failed %d", failed.Load()))
	if failed.Load() > 0 {
		return int(done.Load()), fmt.Errorf("bench: %d group adds failed, first: %v", failed.Load(), firstErr.Load())
	}
	return int(done.Load()), nil
}

func serversCPU(servers []*Server) float64 {
	t := 0.0
	for _, s := range servers {
		if p, err := ReadProc(s.PID()); err == nil {
			t += p.CPUSec
		}
	}
	return t
}
