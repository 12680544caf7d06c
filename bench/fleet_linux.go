package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ChildCommand is the hidden edgebench subcommand that runs one load-client
// process (RunChild).
const ChildCommand = "_client"

// MaxPerChild is the most connections one client process opens: the
// per-process open-file limit here is a hard 20000.
const MaxPerChild = 15000

// childLine is one JSON line a child writes on stdout.
type childLine struct {
	Ev    string       `json:"ev"` // progress, reply, exit
	Op    string       `json:"op,omitempty"`
	Stats *LoaderStats `json:"stats,omitempty"`
	IDs   []string     `json:"ids,omitempty"`
	Err   string       `json:"err,omitempty"`
}

// ChildArgs renders cfg as the child's command line (after ChildCommand).
func ChildArgs(cfg LoaderConfig) []string {
	var retry []string
	for _, d := range cfg.Retry {
		retry = append(retry, d.String())
	}
	a := []string{
		"--addr", cfg.Addr, "--hub", cfg.hub(), "--conns", strconv.Itoa(cfg.Conns),
		"--src", strings.Join(cfg.SrcIPs, ","), "--concurrency", strconv.Itoa(cfg.Concurrency),
		"--retry", strings.Join(retry, ","), "--keepalive", cfg.keepAlive().String(),
		"--handshake-timeout", cfg.handshakeTimeout().String(),
	}
	if cfg.SkipNegotiate {
		a = append(a, "--skip-negotiate")
	}
	if cfg.MessagePack > 0 {
		a = append(a, "--msgpack", strconv.FormatFloat(cfg.MessagePack, 'g', -1, 64))
	}
	if cfg.Stateful {
		a = append(a, "--stateful")
	}
	return a
}

// ParseChildArgs is the inverse of ChildArgs.
func ParseChildArgs(args []string) (LoaderConfig, error) {
	var cfg LoaderConfig
	fs := flag.NewFlagSet(ChildCommand, flag.ContinueOnError)
	fs.StringVar(&cfg.Addr, "addr", "", "node client address")
	fs.StringVar(&cfg.Hub, "hub", "chat", "hub")
	fs.IntVar(&cfg.Conns, "conns", 0, "connections")
	src := fs.String("src", "127.0.0.2", "source addresses, comma separated")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "attempts in flight (0: all at once)")
	retry := fs.String("retry", "", "retry delays, comma separated")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", 15*time.Second, "client ping interval")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", 15*time.Second, "attempt timeout")
	fs.BoolVar(&cfg.SkipNegotiate, "skip-negotiate", false, "skip negotiation")
	fs.Float64Var(&cfg.MessagePack, "msgpack", 0, "fraction of the connections on the MessagePack hub protocol")
	fs.BoolVar(&cfg.Stateful, "stateful", false, "stateful reconnect (negotiate useStatefulReconnect, protocol version 2, acks)")
	if err := fs.Parse(args); err != nil {
		return cfg, fmt.Errorf("bench: child flags: %w", err)
	}
	cfg.SrcIPs = strings.Split(*src, ",")
	if *retry != "" {
		for _, s := range strings.Split(*retry, ",") {
			d, err := time.ParseDuration(s)
			if err != nil {
				return cfg, fmt.Errorf("bench: child retry %q: %w", s, err)
			}
			cfg.Retry = append(cfg.Retry, d)
		}
	}
	return cfg, nil
}

// RunChild runs a load-client process: commands ("stats", "ids", "reset",
// "close") arrive as lines on in, JSON lines go to out. EOF on in closes.
func RunChild(cfg LoaderConfig, in io.Reader, out io.Writer) error {
	l, err := NewLoader(cfg)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(v childLine) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(v)
	}
	cmds := make(chan LoaderCmd)
	replies := make(chan struct {
		op string
		ch chan any
	}, 16)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			op := strings.TrimSpace(sc.Text())
			if op == "" {
				continue
			}
			ch := make(chan any, 1)
			cmds <- LoaderCmd{Op: op, Reply: ch}
			replies <- struct {
				op string
				ch chan any
			}{op, ch}
			if op == "close" {
				return
			}
		}
		ch := make(chan any, 1)
		cmds <- LoaderCmd{Op: "close", Reply: ch}
	}()
	go func() {
		for r := range replies {
			v := <-r.ch
			line := childLine{Ev: "reply", Op: r.op}
			switch v := v.(type) {
			case LoaderStats:
				line.Stats = &v
			case []string:
				line.IDs = v
			case error:
				line.Err = v.Error()
			}
			emit(line)
		}
	}()
	err = l.Run(cmds, func(s LoaderStats) { emit(childLine{Ev: "progress", Stats: &s}) })
	time.Sleep(50 * time.Millisecond) // let the last reply out
	emit(childLine{Ev: "exit"})
	return err
}

// FleetConfig configures a set of load-client processes.
type FleetConfig struct {
	// Self is the edgebench binary; default os.Args[0].
	Self string
	// Addrs are node client addresses. The connections are spread over
	// them as evenly as Room allows (PlaceEvenly), each node's share over
	// as few children as PerChild allows.
	Addrs []string
	// Room is how many more connections each node (same order as Addrs)
	// can hold; missing or negative: unknown. A node is never asked for
	// more than its room; what fits nowhere is not attempted
	// (Fleet.Unplaced) and the run is short by it.
	Room  []int
	Hub   string
	Conns int
	// PerChild caps connections per process; default MaxPerChild.
	PerChild int
	// IPsPerChild source addresses per child; default 4.
	IPsPerChild   int
	Concurrency   int // per child; 0: all at once
	Retry         []time.Duration
	SkipNegotiate bool
	KeepAlive     time.Duration
	// MessagePack is the fraction of connections on MessagePack
	// (LoaderConfig.MessagePack), in every child.
	MessagePack float64
	// Stateful: every connection asks for stateful reconnect
	// (LoaderConfig.Stateful).
	Stateful bool
	Stderr   io.Writer
}

var nextSrcIP atomic.Int64

// allocSrcIPs hands out fresh loopback source addresses: 127.0.0.2, 127.0.0.3, …
func allocSrcIPs(n int) []string {
	out := make([]string, n)
	for i := range out {
		k := nextSrcIP.Add(1) - 1
		out[i] = fmt.Sprintf("127.0.%d.%d", k/250, 2+k%250)
	}
	return out
}

type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      sync.Mutex
	last    LoaderStats
	replies chan childLine
	exited  chan struct{}
	conns   int
	node    int // index into FleetConfig.Addrs
}

// Fleet is a running set of load-client processes.
type Fleet struct {
	cfg      FleetConfig
	children []*child
	perNode  []int
	unplaced int
}

// StartFleet starts the children; they begin connecting at once.
func StartFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Self == "" {
		cfg.Self = os.Args[0]
	}
	if cfg.PerChild <= 0 || cfg.PerChild > MaxPerChild {
		cfg.PerChild = MaxPerChild
	}
	if cfg.IPsPerChild <= 0 {
		cfg.IPsPerChild = 4
	}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("bench: fleet without node address")
	}
	room := make([]int, len(cfg.Addrs))
	for i := range room {
		room[i] = -1
		if i < len(cfg.Room) && cfg.Room[i] >= 0 {
			room[i] = cfg.Room[i]
		}
	}
	f := &Fleet{cfg: cfg}
	f.perNode, f.unplaced = PlaceEvenly(cfg.Conns, room)
	type part struct{ node, conns int }
	var parts []part
	for j, k := range f.perNode {
		for _, n := range splitEvenly(k, cfg.PerChild) {
			parts = append(parts, part{j, n})
		}
	}
	for _, pt := range parts {
		k := pt.conns
		lc := LoaderConfig{
			Addr: cfg.Addrs[pt.node], Hub: cfg.Hub, Conns: k, SrcIPs: allocSrcIPs(cfg.IPsPerChild),
			SkipNegotiate: cfg.SkipNegotiate, Concurrency: cfg.Concurrency, Retry: cfg.Retry, KeepAlive: cfg.KeepAlive,
			MessagePack: cfg.MessagePack, Stateful: cfg.Stateful,
		}
		c := &child{replies: make(chan childLine, 4), exited: make(chan struct{}), conns: k, node: pt.node}
		c.last.Target = k
		c.cmd = exec.Command(cfg.Self, append([]string{ChildCommand}, ChildArgs(lc)...)...)
		c.cmd.Stderr = cfg.Stderr
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: child stdin: %w", err)
		}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: child stdout: %w", err)
		}
		if err := c.cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: start child: %w", err)
		}
		go c.read(out)
		f.children = append(f.children, c)
	}
	return f, nil
}

func (c *child) read(r io.Reader) {
	defer close(c.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l childLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue
		}
		switch l.Ev {
		case "progress":
			c.mu.Lock()
			c.last = *l.Stats
			c.mu.Unlock()
		case "reply":
			c.replies <- l
		}
	}
	_ = c.cmd.Wait()
}

func (c *child) ask(op string, timeout time.Duration) (childLine, error) {
	if _, err := io.WriteString(c.stdin, op+"\n"); err != nil {
		return childLine{}, fmt.Errorf("bench: child %s: %w", op, err)
	}
	select {
	case l := <-c.replies:
		if l.Err != "" {
			return l, fmt.Errorf("bench: child %s: %s", op, l.Err)
		}
		return l, nil
	case <-c.exited:
		return childLine{}, fmt.Errorf("bench: child exited during %s", op)
	case <-time.After(timeout):
		return childLine{}, fmt.Errorf("bench: child %s: no answer in %s", op, timeout)
	}
}

// ChildNodes returns, per child (in the order of IDs), the index of the
// node it connects to.
func (f *Fleet) ChildNodes() []int {
	out := make([]int, len(f.children))
	for i, c := range f.children {
		out[i] = c.node
	}
	return out
}

// Unplaced is the number of connections no node had room for.
func (f *Fleet) Unplaced() int { return f.unplaced }

// Summary asks the children for full stats and says how the connections
// went (ConnectSummary).
func (f *Fleet) Summary() (ConnectSummary, error) {
	st, err := f.Stats()
	if err != nil {
		p := f.Progress()
		st = p
	}
	return ConnectSummary{
		Requested: f.cfg.Conns, PerNode: append([]int(nil), f.perNode...), Unplaced: f.unplaced,
		Connected: st.Open, Attempts: st.Attempts, Failures: st.Failures, Rejected503: st.Rejected503,
		GivenUp: st.GivenUp, Dropped: st.Dropped, FirstErrors: st.FirstErrors, Errors: st.Errors,
	}, err
}

// Progress sums the children's latest progress reports.
func (f *Fleet) Progress() LoaderStats {
	if len(f.children) == 0 {
		return LoaderStats{Settled: true} // nothing placed, nothing to wait for
	}
	var all []LoaderStats
	for _, c := range f.children {
		c.mu.Lock()
		all = append(all, c.last)
		c.mu.Unlock()
	}
	return MergeStats(all)
}

// WaitSettled waits until every connection is open or given up, reporting
// progress on bar (may be nil), or until timeout.
func (f *Fleet) WaitSettled(ctx context.Context, timeout time.Duration, bar *Bar) (LoaderStats, error) {
	deadline := time.Now().Add(timeout)
	for {
		p := f.Progress()
		if bar != nil {
			bar.Update(p.Open, fmt.Sprintf("fail %d  503 %d  drop %d", p.Failures, p.Rejected503, p.Dropped))
		}
		if p.Settled {
			return p, nil
		}
		for _, c := range f.children {
			select {
			case <-c.exited:
				return p, errors.New("bench: a load-client process exited")
			default:
			}
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("bench: connections not settled in %s (%d/%d open)", timeout, p.Open, p.Target)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stats asks every child for full stats and merges them.
func (f *Fleet) Stats() (LoaderStats, error) {
	var all []LoaderStats
	for _, c := range f.children {
		l, err := c.ask("stats", 30*time.Second)
		if err != nil {
			return LoaderStats{}, err
		}
		all = append(all, *l.Stats)
	}
	return MergeStats(all), nil
}

// IDs returns the open connections' ids, per child.
func (f *Fleet) IDs() ([][]string, error) {
	var out [][]string
	for _, c := range f.children {
		l, err := c.ask("ids", 30*time.Second)
		if err != nil {
			return nil, err
		}
		out = append(out, l.IDs)
	}
	return out, nil
}

// Reset clears the latency figures and delivery counts of every child.
// The progress a child reported before the reset has been read when its
// answer arrives (one ordered stream), and still counts the old
// deliveries: it is zeroed here, so that a wait for the next deliveries
// (Progress) does not end at once on the previous case's count.
func (f *Fleet) Reset() error {
	for _, c := range f.children {
		if _, err := c.ask("reset", 30*time.Second); err != nil {
			return err
		}
		c.mu.Lock()
		c.last.Deliveries = 0
		c.mu.Unlock()
	}
	return nil
}

// Close closes every connection and waits for the children to exit.
func (f *Fleet) Close() {
	for _, c := range f.children {
		if c.stdin != nil {
			_, _ = io.WriteString(c.stdin, "close\n")
			c.stdin.Close()
		}
	}
	for _, c := range f.children {
		if c.cmd.Process == nil {
			continue
		}
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
}

// CPUSec is the CPU time the client processes have used so far.
func (f *Fleet) CPUSec() float64 {
	t := 0.0
	for _, c := range f.children {
		if c.cmd.Process == nil {
			continue
		}
		if p, err := ReadProc(c.cmd.Process.Pid); err == nil {
			t += p.CPUSec
		}
	}
	return t
}

// MergeStats sums the reports of several load clients.
func MergeStats(all []LoaderStats) LoaderStats {
	var m LoaderStats
	m.Settled = len(all) > 0
	for _, s := range all {
		m.Target += s.Target
		m.Open += s.Open
		m.EverOpened += s.EverOpened
		m.Attempts += s.Attempts
		m.Failures += s.Failures
		m.Rejected503 += s.Rejected503
		m.GivenUp += s.GivenUp
		m.Dropped += s.Dropped
		m.Pings += s.Pings
		m.Deliveries += s.Deliveries
		m.MessagePack += s.MessagePack
		m.BytesIn += s.BytesIn
		m.Settled = m.Settled && s.Settled
		if s.FirstAttemptNano != 0 && (m.FirstAttemptNano == 0 || s.FirstAttemptNano < m.FirstAttemptNano) {
			m.FirstAttemptNano = s.FirstAttemptNano
		}
		if s.LastOpenNano > m.LastOpenNano {
			m.LastOpenNano = s.LastOpenNano
		}
		for name, h := range map[string]*Hist{"h": s.Handshake, "c": s.Connect, "l": s.Latency} {
			if h == nil {
				continue
			}
			dst := &m.Handshake
			switch name {
			case "c":
				dst = &m.Connect
			case "l":
				dst = &m.Latency
			}
			if *dst == nil {
				*dst = &Hist{}
			}
			(*dst).Merge(h)
		}
		for k, v := range s.SeqLast {
			if m.SeqLast == nil {
				m.SeqLast, m.SeqCount = map[string]int64{}, map[string]int{}
			}
			if v > m.SeqLast[k] {
				m.SeqLast[k] = v
			}
			m.SeqCount[k] += s.SeqCount[k]
		}
		m.FirstErrors = mergeFirst(m.FirstErrors, s.FirstErrors)
		for k, v := range s.Errors {
			if m.Errors == nil {
				m.Errors = map[string]int{}
			}
			m.Errors[k] += v
		}
	}
	return m
}

// ChildMain runs a load-client process from its command-line arguments,
// talking JSON lines over stdin/stdout.
func ChildMain(args []string) error {
	cfg, err := ParseChildArgs(args)
	if err != nil {
		return err
	}
	return RunChild(cfg, os.Stdin, os.Stdout)
}
