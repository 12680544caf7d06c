// Command edgebench measures an edgeplane node side by side with a baseline
// server: idle-connection density, group fanout latency, reconnect storms.
//
//	edgebench density --sizes 1000,5000,19000 --json density.json
//	edgebench fanout  --conns 19000 --sizes 64,4096 --json fanout.json
//	edgebench storm   --clients 19000 --json storm.json
//	edgebench floor   --conns 19000 --json floor.json
//	edgebench scale   --nodes 16 --per-node 18750 --json scale.json
//	edgebench baseline --listen 127.0.0.1:8080 --admin 127.0.0.1:8081
//
// Every experiment starts its servers itself (bin/edgeplane per poller
// backend, and the baseline as a separate process) and splits its load
// client over child processes (a hidden subcommand).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeplane/edgeplane/bench"
	"github.com/edgeplane/edgeplane/internal/node"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage: edgebench <command> [flags]

commands:
  density   idle connections per GiB, edgeplane vs baseline
  fanout    group broadcast latency and throughput, edgeplane vs baseline
  storm     N clients connecting at once, edgeplane vs baseline
  scale     a fleet of nodes on one Redis filled with idle connections
            (default 16 x 18,750 = 300,000), then broadcasts to all through Redis
  floor     what the kernel costs: kernel memory per connection, the keep-alive
            system calls, broadcasts as raw write/writev loops (same client)
  baseline  run the baseline server (gorilla/websocket, goroutine per connection)

run "edgebench <command> -h" for flags`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case bench.ChildCommand:
		err = runChild(os.Args[2:])
	case bench.FloorCommand:
		err = bench.FloorMain(ctx, os.Args[2:])
	case "baseline":
		err = runBaseline(ctx, os.Args[2:])
	case "density":
		err = runDensity(ctx, os.Args[2:])
	case "fanout":
		err = runFanout(ctx, os.Args[2:])
	case "storm":
		err = runStorm(ctx, os.Args[2:])
	case "floor":
		err = runFloor(ctx, os.Args[2:])
	case "scale":
		err = runScale(ctx, os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		slog.Error("edgebench failed", "command", os.Args[1], "err", err)
		os.Exit(1)
	}
}

func runChild(args []string) error {
	return bench.ChildMain(args)
}

func runBaseline(ctx context.Context, args []string) error {
	return bench.BaselineMain(ctx, args)
}

// common holds the flags every experiment shares.
type common struct {
	name                                           string
	edgeplane, pollers, jsonPath, svgPath, logPath string
	msgpack, stateful                              string
	edgeplaneArgs                                  string
	noBaseline, noEdgeplane, quiet, allowShort     bool
	floor, noFloor                                 bool // floor: the experiment offers --no-floor
	edgeplaneSet                                   bool // --edgeplane given
	outDir                                         string
}

// defaultEdgeplane is where make build puts the node.
const defaultEdgeplane = "bin/edgeplane"

func (c *common) register(fs *flag.FlagSet, name string) {
	c.name = name
	fs.StringVar(&c.edgeplane, "edgeplane", defaultEdgeplane, "edgeplane binary (the default is built with go build when missing and edgebench runs in the repository)")
	fs.StringVar(&c.pollers, "poller", node.Config{}.WithDefaults().Poller, "edgeplane poller backends to measure, comma separated (epoll,netpoll; default: the node's default)")
	fs.StringVar(&c.jsonPath, "json", "", "JSON report file; the SVG and the log go next to it (default: "+name+".json in a new temporary directory)")
	fs.StringVar(&c.svgPath, "svg", "", "SVG chart file (default: the JSON path with .svg)")
	fs.StringVar(&c.logPath, "log", "", "file for the servers' and clients' logs (default: the JSON path with .log)")
	fs.StringVar(&c.edgeplaneArgs, "edgeplane-args", "", `extra edgeplane arguments, space separated (e.g. "--max-conns 15000" or "--redis-cluster 127.0.0.1:7000,127.0.0.1:7001")`)
	fs.BoolVar(&c.noBaseline, "no-baseline", false, "skip the baseline")
	fs.BoolVar(&c.noEdgeplane, "no-edgeplane", false, "skip edgeplane (baseline only)")
	if c.floor {
		fs.BoolVar(&c.noFloor, "no-floor", false, "skip the floor server (the kernel's cost: system calls only, see edgebench floor)")
	}
	fs.BoolVar(&c.quiet, "quiet", false, "no progress (the tables, their connection counts and errors are printed all the same)")
	fs.BoolVar(&c.allowShort, "allow-short", false, "exit 0 even when fewer connections opened than requested (the report says so either way)")
	fs.StringVar(&c.stateful, "stateful", "off", "stateful reconnect for edgeplane's clients, comma separated: off, on, or off,on to measure each poller both ways (negotiate useStatefulReconnect=true, protocol version 2, an Ack per read; the baseline never)")
	fs.StringVar(&c.msgpack, "msgpack", "0", "fractions of edgeplane's clients on the MessagePack hub protocol, comma separated: each poller is measured once per fraction (e.g. 0,0.5: all JSON, then half MessagePack; the baseline speaks JSON only)")
}

// serverArgs are the extra arguments per server kind.
func (c *common) serverArgs() map[bench.Kind][]string {
	return map[bench.Kind][]string{bench.KindEdgeplane: strings.Fields(c.edgeplaneArgs)}
}

// systems lists the systems to measure. A missing edgeplane binary is
// built when it is the default one and edgebench runs in the repository;
// otherwise it is an error that says how to get one.
func (c *common) systems() ([]bench.SystemSpec, error) {
	var fracs []float64
	for _, f := range strings.Split(c.msgpack, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("edgebench: --msgpack %q: want fractions between 0 and 1", f)
		}
		fracs = append(fracs, v)
	}
	if len(fracs) == 0 {
		fracs = []float64{0}
	}
	var modes []bool
	for _, m := range strings.Split(c.stateful, ",") {
		switch strings.TrimSpace(m) {
		case "":
		case "off":
			modes = append(modes, false)
		case "on":
			modes = append(modes, true)
		default:
			return nil, fmt.Errorf("edgebench: --stateful %q: want off, on or off,on", m)
		}
	}
	if len(modes) == 0 {
		modes = []bool{false}
	}
	var out []bench.SystemSpec
	if !c.noEdgeplane {
		if err := c.ensureEdgeplane(); err != nil {
			return nil, err
		}
		for _, p := range strings.Split(c.pollers, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			for _, f := range fracs {
				for _, st := range modes {
					name := "edgeplane-" + p
					if f > 0 {
						name += "-mp" + strconv.FormatFloat(f, 'g', -1, 64)
					}
					if st {
						name += "-sr"
					}
					out = append(out, bench.SystemSpec{Name: name, Kind: bench.KindEdgeplane, Poller: p, MessagePack: f, Stateful: st})
				}
			}
		}
	}
	if !c.noBaseline {
		out = append(out, bench.SystemSpec{Name: "baseline", Kind: bench.KindBaseline})
	}
	if c.floor && !c.noFloor {
		out = append(out, bench.SystemSpec{Name: "floor", Kind: bench.KindFloor})
	}
	if len(out) == 0 {
		return nil, errors.New("edgebench: nothing to measure")
	}
	return out, nil
}

func (c *common) ensureEdgeplane() error {
	if _, err := os.Stat(c.edgeplane); err == nil {
		return nil
	}
	hint := fmt.Sprintf("edgebench: edgeplane binary %s missing: run `make build` (or `go build -o %s ./cmd/edgeplane`) in the repository, pass --edgeplane PATH, or --no-edgeplane", c.edgeplane, c.edgeplane)
	if c.edgeplane != defaultEdgeplane || !inRepository() {
		return errors.New(hint)
	}
	slog.Info("edgeplane binary missing: building it", "cmd", "go build -o "+c.edgeplane+" ./cmd/edgeplane")
	cmd := exec.Command("go", "build", "-o", c.edgeplane, "./cmd/edgeplane")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s (go build: %w)", hint, err)
	}
	return nil
}

// inRepository reports whether the working directory is edgeplane's module root.
func inRepository() bool {
	b, err := os.ReadFile("go.mod")
	return err == nil && strings.Contains(string(b), "module github.com/edgeplane/edgeplane\n") && fileExists("cmd/edgeplane")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// setup resolves the output files (never the working directory unless
// asked: without --json, a new temporary directory), opens the log and
// picks the progress writer.
func (c *common) setup() (self string, log io.Writer, progress io.Writer, closeLog func(), err error) {
	self, err = os.Executable()
	if err != nil {
		return "", nil, nil, nil, fmt.Errorf("edgebench: own path: %w", err)
	}
	if c.jsonPath == "" {
		dir, err := os.MkdirTemp("", "edgebench-"+c.name+"-")
		if err != nil {
			return "", nil, nil, nil, fmt.Errorf("edgebench: results directory: %w", err)
		}
		c.outDir = dir
		c.jsonPath = filepath.Join(dir, c.name+".json")
	}
	if c.logPath == "" {
		c.logPath = strings.TrimSuffix(c.jsonPath, ".json") + ".log"
	}
	for _, p := range []string{c.jsonPath, c.logPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", nil, nil, nil, fmt.Errorf("edgebench: results directory: %w", err)
		}
	}
	f, err := os.Create(c.logPath)
	if err != nil {
		return "", nil, nil, nil, fmt.Errorf("edgebench: log file: %w", err)
	}
	log, closeLog = f, func() { f.Close() }
	fmt.Fprintf(os.Stderr, "edgebench %s: report %s, log %s\n", c.name, c.jsonPath, c.logPath)
	if !c.quiet {
		progress = os.Stderr
	}
	return self, log, progress, closeLog, nil
}

// outcome is what every report tells about itself.
type outcome interface {
	Shortfalls() []string
	Errors() []string
}

// report prints a run's table and writes its files. runErr, the run's own
// error, wins over a write error; then a short run is bench.ErrShort
// (unless --allow-short) and systems that could not be measured an error.
func (c *common) report(runErr error, rep outcome, table func(io.Writer), svg func(io.Writer) error) error {
	table(os.Stdout)
	if err := c.write(rep, svg); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	if errs := rep.Errors(); len(errs) > 0 {
		return fmt.Errorf("edgebench: %d could not be measured: %s", len(errs), strings.Join(errs, "; "))
	}
	if short := rep.Shortfalls(); len(short) > 0 {
		if c.allowShort {
			fmt.Fprintln(os.Stdout, "(short run accepted: --allow-short)")
			return nil
		}
		return fmt.Errorf("%w: %s (--allow-short accepts a short run)", bench.ErrShort, strings.Join(short, "; "))
	}
	return nil
}

func (c *common) write(rep any, svg func(io.Writer) error) error {
	if err := bench.WriteJSONFile(c.jsonPath, rep); err != nil {
		return err
	}
	p := c.svgPath
	if p == "" {
		p = strings.TrimSuffix(c.jsonPath, ".json") + ".svg"
	}
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("edgebench: svg file: %w", err)
	}
	defer f.Close()
	if err := svg(f); err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "\nwrote %s, %s and %s\n", c.jsonPath, p, c.logPath)
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("edgebench: %q is not a number: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func runDensity(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("density", flag.ContinueOnError)
	c := common{floor: true}
	c.register(fs, "density")
	sizes := fs.String("sizes", "1000,5000,19000", "connection counts")
	idle := fs.Duration("idle-window", 60*time.Second, "idle CPU window at the largest size")
	idleAll := fs.Bool("idle-every-size", false, "measure idle CPU at every size")
	settle := fs.Duration("settle", 5*time.Second, "wait after connecting before sampling")
	conc := fs.Int("concurrency", 256, "connection attempts in flight per client process")
	skipNeg := fs.Bool("skip-negotiate", false, "connect without negotiate (skipNegotiation)")
	profDir := fs.String("profile-dir", "", "save each server's heap profile at the largest size here (if it serves /debug/pprof/heap)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := parseInts(*sizes)
	if err != nil {
		return err
	}
	systems, err := c.systems()
	if err != nil {
		return err
	}
	self, log, progress, closeLog, err := c.setup()
	if err != nil {
		return err
	}
	defer closeLog()
	rep, err := bench.RunDensity(ctx, bench.DensityConfig{
		Sizes: ns, Systems: systems, Edgeplane: c.edgeplane, Self: self,
		IdleWindow: *idle, IdleAtEverySize: *idleAll, Settle: *settle, Concurrency: *conc,
		SkipNegotiate: *skipNeg, Log: log, Progress: progress, ProfileDir: *profDir,
		ServerArgs: c.serverArgs(),
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteDensityTable(w, rep) }, func(w io.Writer) error { return bench.DensitySVG(w, rep) })
}

func runFanout(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	c := common{floor: true}
	c.register(fs, "fanout")
	conns := fs.Int("conns", 19000, "connections, all in one group")
	sizes := fs.String("sizes", "64,4096", "message sizes in bytes")
	msgs := fs.Int("messages", 10, "messages per case")
	interval := fs.Duration("interval", time.Second, "least time between broadcast starts (each also waits for all its deliveries)")
	sequential := fs.Bool("sequential", false, "run the systems one after the other instead of all up at once with alternating messages")
	via := fs.String("via", "rest", "publish paths, comma separated: rest,redis")
	redisURL := fs.String("redis", "", "redis://host:port (every server runs with it; needed for via redis and --nodes > 1)")
	nodes := fs.Int("nodes", 1, "nodes per system (more than one needs --redis)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := parseInts(*sizes)
	if err != nil {
		return err
	}
	systems, err := c.systems()
	if err != nil {
		return err
	}
	self, log, progress, closeLog, err := c.setup()
	if err != nil {
		return err
	}
	defer closeLog()
	rep, err := bench.RunFanout(ctx, bench.FanoutConfig{
		Conns: *conns, Sizes: ns, Messages: *msgs, Interval: *interval, Via: strings.Split(*via, ","),
		Redis: *redisURL, Nodes: *nodes, Systems: systems, Edgeplane: c.edgeplane, Self: self, Sequential: *sequential,
		Log: log, Progress: progress, ServerArgs: c.serverArgs(),
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteFanoutTable(w, rep) }, func(w io.Writer) error { return bench.FanoutSVG(w, rep) })
}

func runStorm(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	var c common
	c.register(fs, "storm")
	clients := fs.Int("clients", 19000, "clients connecting at once")
	est := fs.Int("established", 500, "connections opened before the storm that must survive it")
	timeout := fs.Duration("timeout", 150*time.Second, "bound on the storm")
	if err := fs.Parse(args); err != nil {
		return err
	}
	systems, err := c.systems()
	if err != nil {
		return err
	}
	self, log, progress, closeLog, err := c.setup()
	if err != nil {
		return err
	}
	defer closeLog()
	rep, err := bench.RunStorm(ctx, bench.StormConfig{
		Clients: *clients, Established: *est, Timeout: *timeout, Systems: systems,
		Edgeplane: c.edgeplane, Self: self, Log: log, Progress: progress, ServerArgs: c.serverArgs(),
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteStormTable(w, rep) }, func(w io.Writer) error { return bench.StormSVG(w, rep) })
}

func runFloor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	var c common
	c.name = "floor"
	fs.StringVar(&c.jsonPath, "json", "", "JSON report file; the SVG and the log go next to it (default: floor.json in a new temporary directory)")
	fs.StringVar(&c.svgPath, "svg", "", "SVG chart file (default: the JSON path with .svg)")
	fs.StringVar(&c.logPath, "log", "", "file for the server's and clients' logs (default: the JSON path with .log)")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress")
	fs.BoolVar(&c.allowShort, "allow-short", false, "exit 0 even when fewer connections opened than requested")
	conns := fs.Int("conns", 19000, "idle connections to the floor server")
	sizes := fs.String("sizes", "64,4096", "message sizes in bytes")
	modes := fs.String("modes", "write,writev", "write loops to measure, comma separated")
	msgs := fs.Int("messages", 10, "broadcasts per (mode, size)")
	interval := fs.Duration("interval", time.Second, "least time between broadcast starts")
	idle := fs.Duration("idle-window", 30*time.Second, "window of the keep-alive CPU")
	settle := fs.Duration("settle", 5*time.Second, "wait after connecting before reading kernel memory")
	writers := fs.Int("writers", 0, "threads of the write loop (default: the cores, as the node's event loops)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := parseInts(*sizes)
	if err != nil {
		return err
	}
	self, log, progress, closeLog, err := c.setup()
	if err != nil {
		return err
	}
	defer closeLog()
	rep, err := bench.RunFloor(ctx, bench.FloorRunConfig{
		Conns: *conns, Sizes: ns, Modes: strings.Split(*modes, ","), Messages: *msgs, Interval: *interval,
		IdleWindow: *idle, Settle: *settle, Writers: *writers, Self: self, Log: log, Progress: progress,
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteFloorTable(w, rep) }, func(w io.Writer) error { return bench.FloorSVG(w, rep) })
}

func runScale(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	var c common
	c.name = "scale"
	fs.StringVar(&c.edgeplane, "edgeplane", defaultEdgeplane, "edgeplane binary (the default is built with go build when missing and edgebench runs in the repository)")
	fs.StringVar(&c.edgeplaneArgs, "edgeplane-args", "", "extra edgeplane arguments, space separated")
	fs.StringVar(&c.jsonPath, "json", "", "JSON report file; the SVG and the log go next to it (default: scale.json in a new temporary directory)")
	fs.StringVar(&c.svgPath, "svg", "", "SVG chart file (default: the JSON path with .svg)")
	fs.StringVar(&c.logPath, "log", "", "file for the nodes', Redis's and clients' logs (default: the JSON path with .log)")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress")
	fs.BoolVar(&c.allowShort, "allow-short", false, "exit 0 even when fewer connections opened than requested or deliveries were lost")
	poller := fs.String("poller", node.Config{}.WithDefaults().Poller, "the nodes' poller backend")
	nodes := fs.Int("nodes", 16, "nodes in the fleet, each its own process")
	perNode := fs.Int("per-node", 18750, "idle connections per node")
	redisURL := fs.String("redis", "", "redis://host:port of the backplane (default: start a redis-server from PATH)")
	msgs := fs.Int("messages", 10, "broadcasts to all connections through Redis")
	size := fs.Int("size", 64, "bytes of the record each client receives")
	interval := fs.Duration("interval", 2*time.Second, "least time between broadcast starts")
	drain := fs.Duration("drain", 60*time.Second, "longest wait for one broadcast's deliveries")
	settle := fs.Duration("settle", 10*time.Second, "wait after connecting before reading memory")
	idle := fs.Duration("idle-window", 20*time.Second, "window of the fleet's idle CPU")
	conc := fs.Int("concurrency", 64, "connection attempts in flight per client process")
	clientKA := fs.Duration("client-keepalive", 15*time.Second, "the load clients' ping interval (the official client's: 15 s); stretch it with the nodes' --keepalive and --client-timeout (--edgeplane-args) when both ends share a small box")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.ensureEdgeplane(); err != nil {
		return err
	}
	self, log, progress, closeLog, err := c.setup()
	if err != nil {
		return err
	}
	defer closeLog()
	rep, err := bench.RunScale(ctx, bench.ScaleConfig{
		Nodes: *nodes, PerNode: *perNode, Redis: *redisURL, Messages: *msgs, Size: *size, Interval: *interval, Drain: *drain,
		Settle: *settle, IdleWindow: *idle, Concurrency: *conc, ClientKeepAlive: *clientKA, Poller: *poller, ServerArgs: c.serverArgs()[bench.KindEdgeplane],
		Edgeplane: c.edgeplane, Self: self, Log: log, Progress: progress,
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteScaleTable(w, rep) }, func(w io.Writer) error { return bench.ScaleSVG(w, rep) })
}
