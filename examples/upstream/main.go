// Command upstream is a small application server for an edgeplane hub. It
// consumes the hub's upstream Redis Stream (P:upstream) with a consumer
// group, logs connection lifecycle events and answers client invocations
// through the Redis backplane:
//
//   - Echo(x): replies to the caller with a Completion whose result is x;
//     the client's pending invoke resolves with x.
//   - Broadcast(args...): sends the invocation broadcast(args...) to every
//     client of the hub (P:all) and completes the caller's invoke.
//   - WhoAmI(): completes with what the caller's connect request said (its
//     connected event's context): user id and claims, remote address, the
//     query string and headers such as User-Agent or custom ones, as
//     ASP.NET hub code reads them with Context.GetHttpContext().
//   - Counter(n, delayMs) (a stream, cancellable) and Sum(stream) (an
//     upload stream): see streams.go.
//   - anything else: a Completion error "unknown method …".
//
// Usage:
//
//	upstream --redis redis://127.0.0.1:6379 --hub chat [--prefix P] [--group app]
//
// See README.md beside this file for how it fits with edgeplane.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// Config is the app's configuration (one field per flag).
type Config struct {
	// Redis is the URL of a single Redis server. Default redis://127.0.0.1:6379.
	Redis string
	// Cluster, when set, are Redis Cluster seeds (host:port); replies then
	// go out with SPUBLISH, as edgeplane's --redis-cluster expects.
	Cluster []string
	// Hub is the hub name (the stream entries' hub field). Default "chat".
	Hub string
	// Prefix is the hub's channel prefix. Default: the hub name.
	Prefix string
	// Group is the consumer group. Default "app". Every app server of one
	// group shares the work; each group sees every event.
	Group string
	// Consumer names this process inside its group. Default {hostname}-{pid}.
	Consumer string
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) withDefaults() {
	if c.Redis == "" && len(c.Cluster) == 0 {
		c.Redis = "redis://127.0.0.1:6379"
	}
	if c.Hub == "" {
		c.Hub = "chat"
	}
	if c.Prefix == "" {
		c.Prefix = c.Hub
	}
	if c.Group == "" {
		c.Group = "app"
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func main() {
	var cfg Config
	var cluster string
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	fs.StringVar(&cfg.Redis, "redis", "", "Redis URL (default redis://127.0.0.1:6379)")
	fs.StringVar(&cluster, "redis-cluster", "", "Redis Cluster seeds host:port,... (instead of --redis)")
	fs.StringVar(&cfg.Hub, "hub", "chat", "hub name")
	fs.StringVar(&cfg.Prefix, "prefix", "", "the hub's channel prefix (default: the hub name)")
	fs.StringVar(&cfg.Group, "group", "app", "consumer group")
	fs.StringVar(&cfg.Consumer, "consumer", "", "consumer name in the group (default {hostname}-{pid})")
	_ = fs.Parse(os.Args[1:])
	if cluster != "" {
		cfg.Cluster = strings.Split(cluster, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg); err != nil {
		cfg.Logger.Error("upstream app stopped", "err", err)
		os.Exit(1)
	}
}

// App is a running app server.
type App struct {
	cfg      Config
	log      *slog.Logger
	rdb      redis.UniversalClient
	stream   string
	cluster  bool
	contexts contexts
	streams  streams // streams.go
}

// connContext is what a client's connect request said, from its connected
// entry (fields documented in backplane/doc.go).
type connContext struct {
	UserID        string              `json:"userId,omitempty"`
	RemoteAddress string              `json:"remoteAddress"`
	Query         map[string][]string `json:"query"`
	Headers       map[string][]string `json:"headers"`
	Claims        json.RawMessage     `json:"claims,omitempty"`
	Truncated     bool                `json:"truncated,omitempty"`
}

// contexts keeps the connect context of the connections this app server
// saw connect, until they disconnect; at most maxContexts (the oldest go
// first, should disconnected entries be missed). With several consumers in
// a group, a connection's connected entry and its invocations may reach
// different app servers: a real app keeps contexts in shared storage (a
// Redis hash per connection, say) or reads them once on connect.
type contexts struct {
	byID  map[string]*connContext
	order []string // ring of ids, oldest at next
	next  int
}

const maxContexts = 100_000

func (c *contexts) put(id string, cc *connContext) {
	if c.byID == nil {
		c.byID = make(map[string]*connContext)
	}
	if len(c.order) < maxContexts {
		c.order = append(c.order, id)
	} else {
		delete(c.byID, c.order[c.next])
		c.order[c.next] = id
		c.next = (c.next + 1) % maxContexts
	}
	c.byID[id] = cc
}

// parseContext reads a connected entry's context fields.
func parseContext(m redis.XMessage) (*connContext, error) {
	cc := &connContext{UserID: field(m, "userId"), RemoteAddress: field(m, "remoteAddress"), Truncated: field(m, "truncated") == "true"}
	var err error
	if cc.Query, err = url.ParseQuery(field(m, "query")); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	if h := field(m, "headers"); h != "" {
		if err := json.Unmarshal([]byte(h), &cc.Headers); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
	}
	if c := field(m, "claims"); c != "" {
		if !json.Valid([]byte(c)) {
			return nil, errors.New("claims: not JSON")
		}
		cc.Claims = json.RawMessage(c)
	}
	return cc, nil
}

// Run consumes the upstream stream until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	cfg.withDefaults()
	a := &App{cfg: cfg, log: cfg.Logger, stream: cfg.Prefix + ":upstream", cluster: len(cfg.Cluster) > 0}
	if a.cluster {
		a.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.Cluster})
	} else {
		opt, err := redis.ParseURL(cfg.Redis)
		if err != nil {
			return fmt.Errorf("parse --redis %q: %w", cfg.Redis, err)
		}
		a.rdb = redis.NewClient(opt)
	}
	defer a.rdb.Close()

	// "$": the group starts with events appended from now on; MKSTREAM
	// creates the stream if no node has written to it yet. A group that
	// exists already (another app server, or a restart) is joined as is.
	err := a.rdb.XGroupCreateMkStream(ctx, a.stream, cfg.Group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("XGROUP CREATE %s %s: %w", a.stream, cfg.Group, err)
	}
	a.log.Info("consuming upstream", "stream", a.stream, "group", cfg.Group, "consumer", cfg.Consumer)

	// First the entries this consumer read but never acknowledged (a crash
	// before XACK), then new ones.
	start := "0"
	for {
		streams, err := a.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group:    cfg.Group,
			Consumer: cfg.Consumer,
			Streams:  []string{a.stream, start},
			Count:    100,
			Block:    2 * time.Second,
		}).Result()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, redis.Nil): // BLOCK timed out
			continue
		case err != nil:
			a.log.Warn("XREADGROUP failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		n := 0
		for _, s := range streams {
			for _, m := range s.Messages {
				a.handle(ctx, m)
				n++
				// At-least-once: acknowledged after it was handled.
				if err := a.rdb.XAck(ctx, a.stream, cfg.Group, m.ID).Err(); err != nil {
					a.log.Warn("XACK failed", "id", m.ID, "err", err)
				}
			}
		}
		if start == "0" && n == 0 {
			start = ">" // nothing pending any more: new entries only
		}
	}
}

func field(m redis.XMessage, name string) string {
	s, _ := m.Values[name].(string)
	return s
}

// handle processes one stream entry (fields documented in backplane/doc.go).
func (a *App) handle(ctx context.Context, m redis.XMessage) {
	conn := field(m, "connectionId")
	switch typ := field(m, "type"); typ {
	case "connected":
		cc, err := parseContext(m)
		if err != nil {
			a.log.Warn("connected entry with a bad context", "id", m.ID, "connectionId", conn, "err", err)
			cc = &connContext{UserID: field(m, "userId")}
		}
		a.contexts.put(conn, cc)
		a.log.Info("client connected", "connectionId", conn, "userId", cc.UserID, "server", field(m, "server"),
			"remoteAddress", cc.RemoteAddress, "userAgent", first(cc.Headers["User-Agent"]))
	case "disconnected":
		delete(a.contexts.byID, conn)
		a.abandoned(m, conn)
		a.log.Info("client disconnected", "connectionId", conn, "userId", field(m, "userId"), "reason", field(m, "reason"), "server", field(m, "server"))
	case "reconnected": // stateful reconnect: same connection, new socket
		a.log.Info("client reconnected", "connectionId", conn, "userId", field(m, "userId"), "server", field(m, "server"))
	case "invocation":
		a.invocation(ctx, m, conn)
	case "streamItem":
		a.streamItem(m, conn)
	case "completion":
		a.clientCompletion(ctx, m, conn)
	case "cancelInvocation":
		if a.cancelStream(conn, field(m, "invocationId")) {
			a.log.Info("stream cancel received", "connectionId", conn, "invocationId", field(m, "invocationId"))
		}
	default:
		a.log.Warn("unknown upstream entry", "id", m.ID, "type", typ)
	}
}

func (a *App) invocation(ctx context.Context, m redis.XMessage, conn string) {
	target, invID := field(m, "target"), field(m, "invocationId")
	var args []json.RawMessage
	if err := json.Unmarshal([]byte(field(m, "arguments")), &args); err != nil {
		a.log.Warn("invocation with bad arguments", "id", m.ID, "target", target, "err", err)
		a.complete(ctx, conn, invID, nil, "bad arguments")
		return
	}
	a.log.Info("invocation", "connectionId", conn, "target", target, "invocationId", invID, "arguments", len(args), "messageType", field(m, "messageType"))
	if field(m, "messageType") == "streamInvocation" {
		a.streamInvocation(ctx, m, conn, target, invID, args)
		return
	}
	if s := field(m, "streamIds"); s != "" {
		var ids []string
		if err := json.Unmarshal([]byte(s), &ids); err != nil {
			a.complete(ctx, conn, invID, nil, "bad streamIds")
			return
		}
		a.startUpload(ctx, conn, target, invID, ids)
		return
	}
	switch target {
	case "Echo":
		var result json.RawMessage // null without arguments
		if len(args) > 0 {
			result = args[0]
		}
		a.complete(ctx, conn, invID, result, "")
	case "Broadcast":
		rec, _ := json.Marshal(struct {
			Type      int               `json:"type"`
			Target    string            `json:"target"`
			Arguments []json.RawMessage `json:"arguments"`
		}{1, "broadcast", args})
		if err := a.publish(ctx, a.cfg.Prefix+":all", nil, append(rec, 0x1e)); err != nil {
			a.complete(ctx, conn, invID, nil, "broadcast failed")
			return
		}
		a.complete(ctx, conn, invID, nil, "")
	case "WhoAmI":
		cc, ok := a.contexts.byID[conn]
		if !ok {
			a.complete(ctx, conn, invID, nil, "no connect context for this connection here")
			return
		}
		result, _ := json.Marshal(cc)
		a.complete(ctx, conn, invID, result, "")
	default:
		a.complete(ctx, conn, invID, nil, "unknown method "+target)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// complete answers an invocation with a Completion record sent to the
// caller's connection channel. Without an invocation id (a client "send")
// no answer is expected and none is sent. errMsg != "" makes it an error.
func (a *App) complete(ctx context.Context, conn, invID string, result json.RawMessage, errMsg string) {
	if invID == "" {
		return
	}
	c := struct {
		Type         int             `json:"type"`
		InvocationID string          `json:"invocationId"`
		Result       json.RawMessage `json:"result,omitempty"`
		Error        string          `json:"error,omitempty"`
	}{Type: 3, InvocationID: invID, Error: errMsg}
	if errMsg == "" {
		c.Result = result
		if c.Result == nil {
			c.Result = json.RawMessage("null")
		}
	}
	rec, _ := json.Marshal(c)
	_ = a.publish(ctx, a.cfg.Prefix+":connection:"+conn, nil, append(rec, 0x1e))
}

// publish sends one hub-protocol record in the backplane format
// ([[excluded], {"json": record}]), as an ASP.NET Core server would.
func (a *App) publish(ctx context.Context, channel string, excluded []string, record []byte) error {
	payload := wire.AppendInvocation(nil, excluded, record)
	var err error
	if a.cluster {
		err = a.rdb.SPublish(ctx, channel, payload).Err()
	} else {
		err = a.rdb.Publish(ctx, channel, payload).Err()
	}
	if err != nil {
		a.log.Warn("publish failed", "channel", channel, "err", err)
		return fmt.Errorf("publish to %s: %w", channel, err)
	}
	return nil
}
