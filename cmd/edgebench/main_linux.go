// Command edgebench measures an edgeplane node side by side with a baseline
// server: idle-connection density, group fanout latency, reconnect storms.
//
//	edgebench density --sizes 1000,5000,19000 --json density.json
//	edgebench fanout  --conns 19000 --sizes 64,4096 --json fanout.json
//	edgebench storm   --clients 19000 --json storm.json
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
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgeplane/edgeplane/bench"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage: edgebench <command> [flags]

commands:
  density   idle connections per GiB, edgeplane vs baseline
  fanout    group broadcast latency and throughput, edgeplane vs baseline
  storm     N clients connecting at once, edgeplane vs baseline
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
	case "baseline":
		err = runBaseline(ctx, os.Args[2:])
	case "density":
		err = runDensity(ctx, os.Args[2:])
	case "fanout":
		err = runFanout(ctx, os.Args[2:])
	case "storm":
		err = runStorm(ctx, os.Args[2:])
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
	edgeplane, pollers, jsonPath, svgPath, logPath string
	msgpack                                        string
	noBaseline, noEdgeplane, quiet                 bool
}

func (c *common) register(fs *flag.FlagSet, name string) {
	fs.StringVar(&c.edgeplane, "edgeplane", "bin/edgeplane", "edgeplane binary")
	fs.StringVar(&c.pollers, "poller", "netpoll", "edgeplane poller backends to measure, comma separated (netpoll,epoll)")
	fs.StringVar(&c.jsonPath, "json", name+".json", "JSON report file (empty: none)")
	fs.StringVar(&c.svgPath, "svg", "", "SVG chart file (default: the JSON path with .svg)")
	fs.StringVar(&c.logPath, "log", name+".log", "file for the servers' and clients' logs")
	fs.BoolVar(&c.noBaseline, "no-baseline", false, "skip the baseline")
	fs.BoolVar(&c.noEdgeplane, "no-edgeplane", false, "skip edgeplane (baseline only)")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress bars")
	fs.StringVar(&c.msgpack, "msgpack", "0", "fractions of edgeplane's clients on the MessagePack hub protocol, comma separated: each poller is measured once per fraction (e.g. 0,0.5: all JSON, then half MessagePack; the baseline speaks JSON only)")
}

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
	var out []bench.SystemSpec
	if !c.noEdgeplane {
		if _, err := os.Stat(c.edgeplane); err != nil {
			slog.Warn("edgeplane binary missing: measuring the baseline only", "path", c.edgeplane)
		} else {
			for _, p := range strings.Split(c.pollers, ",") {
				p = strings.TrimSpace(p)
				if p == "" {
					continue
				}
				for _, f := range fracs {
					name := "edgeplane-" + p
					if f > 0 {
						name += "-mp" + strconv.FormatFloat(f, 'g', -1, 64)
					}
					out = append(out, bench.SystemSpec{Name: name, Kind: bench.KindEdgeplane, Poller: p, MessagePack: f})
				}
			}
		}
	}
	if !c.noBaseline {
		out = append(out, bench.SystemSpec{Name: "baseline", Kind: bench.KindBaseline})
	}
	return out, nil
}

func (c *common) setup() (self string, log io.Writer, progress io.Writer, closeLog func(), err error) {
	self, err = os.Executable()
	if err != nil {
		return "", nil, nil, nil, fmt.Errorf("edgebench: own path: %w", err)
	}
	log, closeLog = io.Discard, func() {}
	if c.logPath != "" {
		f, err := os.Create(c.logPath)
		if err != nil {
			return "", nil, nil, nil, fmt.Errorf("edgebench: log file: %w", err)
		}
		log, closeLog = f, func() { f.Close() }
	}
	if !c.quiet {
		progress = os.Stderr
	}
	return self, log, progress, closeLog, nil
}

// report prints a run's table and writes its files; runErr, the run's own
// error, wins over a write error.
func (c *common) report(runErr error, rep any, table func(io.Writer), svg func(io.Writer) error) error {
	table(os.Stdout)
	if err := c.write(rep, svg); err != nil && runErr == nil {
		return err
	}
	return runErr
}

func (c *common) write(rep any, svg func(io.Writer) error) error {
	if c.jsonPath == "" {
		return nil
	}
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
	fmt.Fprintf(os.Stdout, "\nwrote %s and %s\n", c.jsonPath, p)
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
	var c common
	c.register(fs, "density")
	sizes := fs.String("sizes", "1000,5000,19000", "connection counts")
	idle := fs.Duration("idle-window", 60*time.Second, "idle CPU window at the largest size")
	idleAll := fs.Bool("idle-every-size", false, "measure idle CPU at every size")
	settle := fs.Duration("settle", 5*time.Second, "wait after connecting before sampling")
	conc := fs.Int("concurrency", 256, "connection attempts in flight per client process")
	skipNeg := fs.Bool("skip-negotiate", false, "connect without negotiate (skipNegotiation)")
	profDir := fs.String("profile-dir", "", "save each server's heap profile at the largest size here (if it serves /debug/pprof/heap)")
	epArgs := fs.String("edgeplane-args", "", `extra edgeplane arguments, space separated (e.g. "--redis-cluster 127.0.0.1:7000,127.0.0.1:7001")`)
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
		ServerArgs: map[bench.Kind][]string{bench.KindEdgeplane: strings.Fields(*epArgs)},
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteDensityTable(w, rep) }, func(w io.Writer) error { return bench.DensitySVG(w, rep) })
}

func runFanout(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	var c common
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
		Log: log, Progress: progress,
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
		Edgeplane: c.edgeplane, Self: self, Log: log, Progress: progress,
	})
	if rep == nil {
		return err
	}
	return c.report(err, rep, func(w io.Writer) { bench.WriteStormTable(w, rep) }, func(w io.Writer) error { return bench.StormSVG(w, rep) })
}
