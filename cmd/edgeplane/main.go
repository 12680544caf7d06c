// Command edgeplane runs one edgeplane node: the client port (SignalR over
// WebSockets on an event-loop poller) and the admin port (metrics, health,
// REST API).
//
// Every flag has an environment variable: --max-conns is EDGEPLANE_MAX_CONNS;
// repeatable flags (--hub) take a comma-separated list there, --upstream
// settings a space-separated one.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/poller"
	"github.com/edgeplane/edgeplane/service"
	"github.com/edgeplane/edgeplane/webhook"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

// settingFlag is a repeatable flag whose values may hold commas (webhook
// settings); several in one value (an environment variable) are separated
// by white space.
type settingFlag []string

func (l *settingFlag) String() string { return strings.Join(*l, " ") }
func (l *settingFlag) Set(v string) error {
	*l = append(*l, strings.Fields(v)...)
	return nil
}
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		os.Exit(runToken(os.Args[2:], os.Stdout))
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("edgeplane", flag.ContinueOnError)
	var (
		cfg         node.Config
		hubs        listFlag
		logLevel    string
		redisURL    string
		cluster     listFlag
		server      string
		origins     listFlag
		protocols   listFlag
		transports  listFlag
		gcPercent   int
		drainWindow time.Duration
		upRedis     string
		upMaxBytes  int64
		webhooks    settingFlag
		streamHubs  listFlag
		whWorkers   int
		whQueue     int
		whTimeout   time.Duration
		upMaxAge    time.Duration
		redisHealth time.Duration
		stateful    bool
		svcMode     bool
		svcCfg      service.Config
		svcMaxHubs  int
	)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "client address (SignalR negotiate and WebSocket)")
	fs.StringVar(&cfg.Admin, "admin", "127.0.0.1:9090", "admin address: /metrics, /healthz, /readyz and the REST API")
	fs.Var(&hubs, "hub", "hub clients may connect to, NAME[=/PATH][=PREFIX]: PATH its client path, one or more segments, matched case-insensitively (default /NAME); PREFIX its Redis channel prefix, e.g. the .NET hub type name (default NAME); repeat for several (default chat)")
	fs.StringVar(&redisURL, "redis", "", "Redis backplane URL, redis://host:port (default: in-memory backplane, single node)")
	fs.Var(&cluster, "redis-cluster", "Redis Cluster seed addresses host:port,... (sharded pub/sub, Redis 7+)")
	fs.StringVar(&upRedis, "upstream-redis", "", "Redis URL for the upstream streams (client invocations and lifecycle events), e.g. one with maxmemory (default: the backplane's Redis)")
	fs.Int64Var(&upMaxBytes, "upstream-max-bytes", backplane.DefaultUpstreamMaxBytes, "approximate Redis memory bound of each hub's upstream stream, in bytes (entries are trimmed oldest first)")
	fs.DurationVar(&upMaxAge, "upstream-max-age", backplane.DefaultUpstreamMaxAge, "upstream stream entries older than this are trimmed")
	fs.Var(&webhooks, "upstream", "webhook upstream setting URL[;hub=P][;category=P][;event=P] (P: *, a name, or a comma list; URL may use {hub}, {category}, {event}); repeat for several, the first that matches an event takes it; client events are POSTed in Azure SignalR's upstream format, signed with the access keys")
	fs.IntVar(&whWorkers, "upstream-workers", webhook.DefaultWorkers, "webhook workers posting events (a connection's events go to one, in order)")
	fs.IntVar(&whQueue, "upstream-queue", webhook.DefaultQueueSize, "events each webhook worker queues; more are dropped and counted")
	fs.DurationVar(&whTimeout, "upstream-timeout", webhook.DefaultTimeout, "time-out of one webhook request")
	fs.Var(&streamHubs, "upstream-stream-hubs", "hubs whose client events go to the Redis stream upstream (with --redis): * for all, - for none (default *)")
	fs.DurationVar(&redisHealth, "redis-health-interval", backplane.DefaultHealthInterval, "longest the node stays ready while deaf: a Redis subscription connection silent this long (half of it, then a PING) is reconnected and resubscribed, and the publish path is probed this often")
	fs.StringVar(&server, "server-name", "", "unique node name on the backplane (default {hostname}_{random})")
	fs.StringVar(&cfg.Poller, "poller", "epoll", "event-loop backend: "+strings.Join(poller.Backends(), "|")+" (epoll: our own loop, densest; netpoll: cloudwego/netpoll)")
	fs.StringVar(&cfg.Conn.AccessKey, "access-key", "", "HS256 key, at least 32 bytes: the REST API and /debug/pprof/ need a bearer JWT signed with it whose aud is the request URL, clients an access token whose aud is the hub's URL; both need exp (empty: open; the edgeplane token command makes tokens)")
	fs.StringVar(&cfg.SecondaryAccessKey, "secondary-access-key", "", "a second access key the REST API also accepts tokens signed with, to rotate --access-key without downtime (Azure SignalR's secondary key); at least 32 bytes")
	fs.StringVar(&cfg.Conn.TokenKey, "token-key", "", "key signing connection tokens, at least 32 bytes; share it across a fleet (default: derived from --access-key; else, with Redis, a random key the nodes agree on in Redis (edgeplane:token-key); else random)")
	fs.IntVar(&cfg.PollerConfig.MaxConns, "max-conns", 0, "maximum open client connections; the excess gets 503 (0: no limit but the fd reserve)")
	fs.IntVar(&cfg.PollerConfig.FDReserve, "fd-reserve", poller.DefaultFDReserve, "file descriptors kept free under RLIMIT_NOFILE; connections beyond get 503")
	fs.IntVar(&cfg.PollerConfig.MaxQueueBytes, "max-queue-bytes", poller.DefaultMaxQueueBytes, "outbound bytes queued per connection before it is dropped as a slow client")
	fs.IntVar(&cfg.Conn.MaxMessageBytes, "max-message-bytes", conn.DefaultMaxMessageBytes, "largest client message; larger closes with 1009")
	fs.DurationVar(&cfg.Conn.HandshakeTimeout, "handshake-timeout", conn.DefaultHandshakeTimeout, "time to complete the HTTP request and SignalR handshake")
	fs.DurationVar(&cfg.Conn.KeepAliveInterval, "keepalive", conn.DefaultKeepAliveInterval, "send a Ping after this long without outbound traffic")
	fs.DurationVar(&cfg.Conn.ClientTimeout, "client-timeout", conn.DefaultClientTimeout, "drop a client silent this long")
	fs.Float64Var(&cfg.Conn.AcceptRate, "accept-rate", conn.DefaultAcceptRate, "new connections per second (token bucket); the excess gets 503 with a jittered Retry-After (negative: off)")
	fs.IntVar(&cfg.Conn.AcceptBurst, "accept-burst", 0, "accept-rate bucket size (default: the rate)")
	fs.IntVar(&cfg.RetryAfter, "retry-after", conn.DefaultRetryAfter, "base seconds of the Retry-After sent with every 503 (admission, descriptor shedding, accept rate, drain; jittered over [base, 2*base] where the answer is built per request)")
	fs.IntVar(&cfg.Conn.MaxConnsPerIP, "max-conns-per-ip", 0, "open connections per client address (0: off; mind load balancers without PROXY protocol)")
	fs.IntVar(&cfg.Conn.MaxMessageRate, "max-message-rate", conn.DefaultMaxMessageRate, "SignalR records a client may send per second; more closes it with 1008 (negative: off)")
	fs.Var(&protocols, "protocols", "SignalR hub protocols clients may use: json, messagepack (default both); negotiate lists the Binary transfer format only with messagepack")
	fs.Var(&transports, "transports", "transports clients may use, in the order negotiate offers them: WebSockets, ServerSentEvents, LongPolling (default all three; SSE and Long Polling need sticky sessions behind a load balancer)")
	fs.DurationVar(&cfg.Conn.PollTimeout, "poll-timeout", conn.DefaultPollTimeout, "Long Polling: a poll with no data is answered empty after this long (keep it under proxies' read time-outs)")
	fs.Var(&origins, "allowed-origins", "browser Origins allowed to connect, e.g. https://app.example.com,https://*.example.com, and the only ones CORS answers reflect (default: any may connect, none is reflected)")
	fs.IntVar(&cfg.Conn.ContextMaxBytes, "upstream-context-bytes", conn.DefaultContextMaxBytes, "bound on the connect request's context (headers, query string, claims) in the upstream's connected event; what does not fit is left out and the event marked truncated (negative: no context)")
	fs.BoolVar(&cfg.Conn.ContextCookies, "upstream-cookies", false, "put the Cookie header in the upstream's connect context (needs --allowed-origins: any site could otherwise open connections with your users' cookies)")
	fs.BoolVar(&stateful, "stateful-reconnect", true, "offer stateful reconnect to clients that ask (withStatefulReconnect()): a connection whose socket drops is kept for --reconnect-window and resumes with no message lost (costs an idle connection nothing)")
	fs.DurationVar(&cfg.Conn.ReconnectWindow, "reconnect-window", conn.DefaultReconnectWindow, "how long a stateful-reconnect connection whose socket dropped is kept (groups, user, messages sent meanwhile) for its client to come back")
	fs.IntVar(&cfg.Conn.ReconnectBufferBytes, "reconnect-buffer-bytes", conn.DefaultReconnectBufferBytes, "bytes of messages a stateful-reconnect connection keeps until its client acknowledges them; more closes it (allowReconnect)")
	fs.BoolVar(&svcMode, "service-mode", false, "serve Azure SignalR Service's Default mode on the client port: ASP.NET Core apps with AddAzureSignalR(\"Endpoint=http://this-node:PORT;AccessKey=<--access-key>;Version=1.0;\") connect to /server/ and their clients, redirected by the app's negotiate, to /client/; hubs are learned from the apps' server connections")
	fs.IntVar(&svcMaxHubs, "service-max-hubs", service.DefaultMaxHubs, "service mode: hubs learned from app servers at most (0: none, serve the --hub hubs only)")
	fs.DurationVar(&svcCfg.PingInterval, "service-ping-interval", service.DefaultPingInterval, "service mode: keep-alive Ping to each app server connection this often")
	fs.DurationVar(&svcCfg.ServerTimeout, "service-server-timeout", service.DefaultServerTimeout, "service mode: close an app server connection silent this long")
	fs.BoolVar(&svcCfg.Fleet.Disabled, "service-no-relay", false, "service mode, with --redis: refuse a client no local app server connection can host, instead of relaying it to a node that has one")
	fs.DurationVar(&svcCfg.Fleet.PresenceTTL, "service-presence-ttl", service.DefaultPresenceTTL, "service mode, with --redis: a node silent this long is gone (the clients relayed to or from it are closed)")
	fs.DurationVar(&drainWindow, "drain-window", 30*time.Second, "on SIGTERM, close clients paced over this window (a second signal exits at once)")
	fs.BoolVar(&cfg.NoTrim, "no-trim", false, "do not return freed memory to the OS after connection bursts or once the garbage of an idle node (no GC for a minute) reaches 2% of its live heap")
	fs.IntVar(&gcPercent, "gc-percent", 25, "Go GC target percentage (GOGC): lower packs long-lived connection state more densely after connection bursts at more CPU during them (10 instead of 25: ~70-100 B less per idle netpoll connection, but ~2x the GC CPU of a connect burst); the GOGC environment variable, if set, wins")
	fs.StringVar(&logLevel, "log-level", "info", "debug|info|warn|error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: edgeplane [flags]\n\nRuns one edgeplane node. Every flag can also be set with an environment\nvariable: EDGEPLANE_ and the flag name in upper case with - as _\n(e.g. EDGEPLANE_MAX_CONNS=19000; repeatable flags take a comma-separated list).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(os.Stderr, "edgeplane:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	var level slog.Level
	var err error
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "edgeplane: --log-level:", err)
		return 2
	}
	if err := checkSecurityFlags(cfg.Conn, cfg.SecondaryAccessKey, origins); err != nil {
		fmt.Fprintln(os.Stderr, "edgeplane:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	cfg.Logger = log
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	cfg.Conn.AllowedOrigins = origins
	cfg.Conn.DisableStatefulReconnect = !stateful
	if cfg.Conn.ReconnectWindow <= 0 || cfg.Conn.ReconnectBufferBytes <= 0 {
		fmt.Fprintln(os.Stderr, "edgeplane: --reconnect-window and --reconnect-buffer-bytes must be positive")
		return 2
	}
	if maxQ := cfg.PollerConfig.WithDefaults().MaxQueueBytes; cfg.Conn.ReconnectBufferBytes > maxQ {
		// A resume queues the whole buffer at once: the default follows
		// a smaller queue, a value given is an error.
		if flagSet(fs, "reconnect-buffer-bytes") {
			fmt.Fprintln(os.Stderr, "edgeplane: --reconnect-buffer-bytes must not exceed --max-queue-bytes")
			return 2
		}
		cfg.Conn.ReconnectBufferBytes = maxQ
	}
	for _, p := range protocols {
		if hubproto.Lookup(p) == nil {
			fmt.Fprintf(os.Stderr, "edgeplane: --protocols: unknown hub protocol %q (json, messagepack)\n", p)
			return 2
		}
	}
	cfg.Conn.Protocols = protocols
	cfg.Conn.Transports = transports
	if cfg.Hubs, err = parseHubs(hubs); err != nil {
		fmt.Fprintln(os.Stderr, "edgeplane: --hub:", err)
		return 2
	}
	if redisURL != "" && len(cluster) > 0 {
		fmt.Fprintln(os.Stderr, "edgeplane: --redis and --redis-cluster are exclusive")
		return 2
	}
	if redisURL != "" || len(cluster) > 0 {
		if redisHealth <= 0 {
			fmt.Fprintln(os.Stderr, "edgeplane: --redis-health-interval must be positive")
			return 2
		}
		cfg.Redis = &backplane.RedisConfig{URL: redisURL, ClusterAddrs: cluster, ServerName: server, HealthInterval: redisHealth,
			UpstreamURL: upRedis, UpstreamMaxBytes: upMaxBytes, UpstreamMaxAge: upMaxAge}
	} else if upRedis != "" {
		fmt.Fprintln(os.Stderr, "edgeplane: --upstream-redis needs --redis or --redis-cluster (the upstream's replies travel on the backplane)")
		return 2
	}
	if upMaxBytes <= 0 || upMaxAge <= 0 {
		fmt.Fprintln(os.Stderr, "edgeplane: --upstream-max-bytes and --upstream-max-age must be positive")
		return 2
	}

	if len(webhooks) > 0 {
		wc := &webhook.Config{Workers: whWorkers, QueueSize: whQueue, Timeout: whTimeout}
		for _, w := range webhooks {
			st, err := webhook.ParseSetting(w)
			if err != nil {
				fmt.Fprintln(os.Stderr, "edgeplane: --upstream:", err)
				return 2
			}
			wc.Settings = append(wc.Settings, st)
		}
		cfg.Webhook = wc
	}
	if slices.Contains(streamHubs, "-") {
		cfg.StreamHubs = node.StreamHubsNone
	} else {
		cfg.StreamHubs = streamHubs
	}

	if svcMode {
		if svcCfg.PingInterval <= 0 || svcCfg.ServerTimeout <= svcCfg.PingInterval {
			fmt.Fprintln(os.Stderr, "edgeplane: --service-server-timeout must be longer than --service-ping-interval, both positive")
			return 2
		}
		svcCfg.MaxHubs = svcMaxHubs
		if svcMaxHubs <= 0 {
			svcCfg.MaxHubs = -1
		}
		cfg.Service = &svcCfg
	}
	n, err := node.Start(cfg)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Info("stopping", "signal", s.String())
	go func() {
		<-sig
		log.Warn("second signal: exiting at once")
		os.Exit(1)
	}()
	start := time.Now()
	if err := n.Drain(context.Background(), drainWindow); err != nil {
		log.Error("stop", "err", err)
		return 1
	}
	log.Info("stopped", "took", time.Since(start).String())
	return 0
}

// checkSecurityFlags refuses keys that protect nothing and cookie
// forwarding that any website could exploit.
func checkSecurityFlags(c conn.Config, secondary string, origins []string) error {
	if secondary != "" && c.AccessKey == "" {
		return fmt.Errorf("--secondary-access-key needs --access-key")
	}
	for _, k := range []struct{ flag, key string }{{"--access-key", c.AccessKey}, {"--secondary-access-key", secondary}, {"--token-key", c.TokenKey}} {
		if k.key == "" {
			continue
		}
		if err := auth.CheckKey(k.key); err != nil {
			return fmt.Errorf("%s: %w", k.flag, err)
		}
	}
	if c.ContextCookies && len(origins) == 0 {
		return fmt.Errorf("--upstream-cookies needs --allowed-origins: WebSockets are not protected by CORS, so without it any website could open connections that carry your users' cookies to your app")
	}
	return nil
}

// parseHubs turns --hub values into the node's hubs: NAME, then after =
// a PATH (it starts with /) or a PREFIX, or both: NAME=/PATH=PREFIX.
// What is not given keeps its default (path /NAME, prefix NAME).
func parseHubs(specs []string) ([]node.Hub, error) {
	var hubs []node.Hub
	seen := make(map[string]bool, len(specs))
	for _, spec := range specs {
		parts := strings.Split(spec, "=")
		h := node.Hub{Name: strings.TrimSpace(parts[0])}
		if h.Name == "" || len(parts) > 3 {
			return nil, fmt.Errorf("hub %q: want NAME, NAME=PREFIX, NAME=/PATH or NAME=/PATH=PREFIX", spec)
		}
		for _, v := range parts[1:] {
			v = strings.TrimSpace(v)
			switch {
			case v == "": // NAME= is NAME
			case strings.HasPrefix(v, "/") && h.Path == "":
				h.Path = v
			case !strings.HasPrefix(v, "/") && h.Prefix == "":
				h.Prefix = v
			default:
				return nil, fmt.Errorf("hub %q: want NAME, NAME=PREFIX, NAME=/PATH or NAME=/PATH=PREFIX", spec)
			}
		}
		if seen[h.Name] {
			return nil, fmt.Errorf("hub %q given twice", h.Name)
		}
		seen[h.Name] = true
		hubs = append(hubs, h)
	}
	return hubs, nil
}

// applyEnv sets flags from EDGEPLANE_* environment variables; command-line
// flags parsed afterwards override them.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "EDGEPLANE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

// flagSet reports whether the named flag was given (on the command line
// or in the environment).
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
