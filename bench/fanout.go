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
	// Interval between messages; default 2 s, so that one broadcast has
	// reached everyone before the next starts (end-to-end time of one
	// broadcast, not queueing behind the previous one).
	Interval time.Duration
	// Via: "rest" (POST …/groups/{g}/:send) and/or "redis" (PUBLISH on
	// {hub}:group:{g} in the backplane wire format, needs Redis).
	Via []string
	// Redis URL; when set every server runs with --redis.
	Redis string
	// Nodes per system; default 1 (more than one needs Redis).
	Nodes int
	// Group name; default "bench".
	Group   string
	Systems []SystemSpec
	// Edgeplane and Self are the binaries (see ServerConfig).
	Edgeplane, Self string
	// Drain bounds the wait for deliveries after the last send; default 15 s.
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
	Hist             *Hist   `json:"latency_hist,omitempty"`
	Error            string  `json:"error,omitempty"`
}

// FanoutSystem is one system's run.
type FanoutSystem struct {
	Spec    SystemSpec   `json:"spec"`
	Nodes   int          `json:"nodes"`
	Members int          `json:"members"`
	Cases   []FanoutCase `json:"cases"`
	Error   string       `json:"error,omitempty"`
}

// FanoutReport is the result of RunFanout.
type FanoutReport struct {
	Machine Machine        `json:"machine"`
	When    time.Time      `json:"when"`
	Conns   int            `json:"conns"`
	Systems []FanoutSystem `json:"systems"`
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
		cfg.Interval = 2 * time.Second
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
	rep := &FanoutReport{Machine: ReadMachine(), When: time.Now(), Conns: cfg.Conns}
	for _, spec := range cfg.Systems {
		sys, err := fanoutOne(ctx, cfg, spec)
		if err != nil {
			sys.Error = err.Error()
		}
		rep.Systems = append(rep.Systems, sys)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

func fanoutOne(ctx context.Context, cfg FanoutConfig, spec SystemSpec) (FanoutSystem, error) {
	sys := FanoutSystem{Spec: spec, Nodes: cfg.Nodes}
	var servers []*Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	var addrs []string
	for i := 0; i < cfg.Nodes; i++ {
		s, err := StartServer(ctx, ServerConfig{Spec: spec, Edgeplane: cfg.Edgeplane, Self: cfg.Self, Redis: cfg.Redis, Stderr: cfg.Log, ExtraArgs: cfg.ServerArgs[spec.Kind]})
		if err != nil {
			return sys, err
		}
		servers = append(servers, s)
		addrs = append(addrs, s.Listen)
	}
	perChild := MaxPerChild
	if cfg.Conns/cfg.Nodes < perChild {
		perChild = (cfg.Conns + cfg.Nodes - 1) / cfg.Nodes
	}
	f, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: addrs, Conns: cfg.Conns, PerChild: perChild, Concurrency: 256,
		Retry: []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second}, Stderr: cfg.Log})
	if err != nil {
		return sys, err
	}
	defer f.Close()
	bar := NewBar(cfg.Progress, spec.Name+" connect", cfg.Conns)
	p, err := f.WaitSettled(ctx, 3*time.Minute, bar)
	bar.Done(p.Open, fmt.Sprintf("fail %d", p.Failures))
	if err != nil {
		return sys, err
	}
	ids, err := f.IDs()
	if err != nil {
		return sys, err
	}
	members, err := joinGroup(ctx, servers, ids, cfg.Group, cfg.Progress, spec.Name)
	sys.Members = members
	if err != nil {
		return sys, err
	}
	var rdb *redis.Client
	if cfg.Redis != "" {
		opt, err := redis.ParseURL(cfg.Redis)
		if err != nil {
			return sys, fmt.Errorf("bench: redis url: %w", err)
		}
		rdb = redis.NewClient(opt)
		defer rdb.Close()
	}
	time.Sleep(time.Second)
	for _, via := range cfg.Via {
		for _, size := range cfg.Sizes {
			c := fanoutCase(ctx, cfg, servers, f, rdb, via, size, members, spec.Name)
			sys.Cases = append(sys.Cases, c)
			if ctx.Err() != nil {
				return sys, ctx.Err()
			}
		}
	}
	return sys, nil
}

// joinGroup PUTs every connection into the group on the node it is
// connected to (child i talks to node i mod nodes).
func joinGroup(ctx context.Context, servers []*Server, ids [][]string, group string, progress io.Writer, name string) (int, error) {
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
		admin := servers[i%len(servers)].Admin
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

func fanoutCase(ctx context.Context, cfg FanoutConfig, servers []*Server, f *Fleet, rdb *redis.Client, via string, size, members int, name string) FanoutCase {
	c := FanoutCase{Via: via, Size: size, Messages: cfg.Messages, Expected: uint64(members) * uint64(cfg.Messages)}
	if err := f.Reset(); err != nil {
		c.Error = err.Error()
		return c
	}
	dropped0 := f.Progress().Dropped
	client := &http.Client{Timeout: 10 * time.Second}
	sent := make([]int64, cfg.Messages)
	// Idle rate first (keep-alives), so that the cost per delivery counts
	// the broadcasts only.
	idleA, idleAt := serversCPU(servers), time.Now()
	time.Sleep(2 * time.Second)
	c.ServerIdleCPUPct = 100 * (serversCPU(servers) - idleA) / time.Since(idleAt).Seconds()
	cpu0, ccpu0, start := serversCPU(servers), f.CPUSec(), time.Now()
	bar := NewBar(cfg.Progress, fmt.Sprintf("%s %s %dB", name, via, size), int(c.Expected))
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for seq := 0; seq < cfg.Messages; seq++ {
		if seq > 0 {
			<-tick.C
		}
		now := time.Now().UnixNano()
		sent[seq] = now
		args := InvocationArgs("bench", int64(seq), now, size)
		var err error
		switch via {
		case "rest":
			body := `{"target":"bench","arguments":` + args + `}`
			var resp *http.Response
			resp, err = client.Post("http://"+servers[0].Admin+"/api/hubs/chat/groups/"+cfg.Group+"/:send", "application/json", bytes.NewBufferString(body))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("bench: REST send: status %d", resp.StatusCode)
				}
			}
		case "redis":
			rec := []byte(`{"type":1,"target":"bench","arguments":` + args + "}\x1e")
			err = rdb.Publish(ctx, "chat:group:"+cfg.Group, EncodeInvocation(nil, nil, rec)).Err()
		default:
			err = fmt.Errorf("bench: unknown fanout path %q", via)
		}
		if err != nil {
			c.Error = err.Error()
			return c
		}
		bar.Update(int(f.Progress().Deliveries), "")
	}
	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		d := f.Progress().Deliveries
		bar.Update(int(d), "")
		if d >= c.Expected {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // one more progress round from every child
	c.ServerCPUSec = serversCPU(servers) - cpu0 - c.ServerIdleCPUPct/100*time.Since(start).Seconds()
	c.ClientCPUSec = f.CPUSec() - ccpu0
	st, err := f.Stats()
	if err != nil {
		c.Error = err.Error()
		return c
	}
	bar.Done(int(st.Deliveries), "")
	c.Delivered = st.Deliveries
	c.Dropped = st.Dropped - dropped0
	if st.Latency != nil {
		c.Latency = st.Latency.Summary()
		c.Hist = st.Latency
	}
	var comp Hist
	var last int64
	for seq := 0; seq < cfg.Messages; seq++ {
		t, ok := st.SeqLast[strconv.Itoa(seq)]
		if !ok {
			continue
		}
		comp.Record(time.Duration(t - sent[seq]))
		last = max(last, t)
	}
	c.Completion = comp.Summary()
	if last > sent[0] {
		c.OfferedPerSec = float64(c.Delivered) / (float64(last-sent[0]) / 1e9)
	}
	if c.Completion.P50ms > 0 {
		c.DeliveriesPerSec = float64(members) / (c.Completion.P50ms / 1000)
	}
	if c.Delivered > 0 {
		c.CPUSecPerMillion = c.ServerCPUSec / float64(c.Delivered) * 1e6
	}
	return c
}
