package sdkfake

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// Config is an app server's configuration: its connection string's parts
// and the options of AddAzureSignalR that change what goes on the wire.
// Durations default to the SDK's.
type Config struct {
	// Endpoint is the connection string's Endpoint, the service's base
	// URL ("http://127.0.0.1:8080").
	Endpoint string
	// AccessKey is the connection string's AccessKey: its UTF-8 bytes key
	// the HMAC.
	AccessKey string
	// Algorithm is AccessTokenAlgorithm: "HS256" (default) or "HS512".
	Algorithm string
	// ServerID is the server's id (X-ASRS-Server-Id, the nameid of its
	// tokens). Default {hostname}_{random guid "N"}, as
	// DefaultServerNameProvider.
	ServerID string
	// ApplicationName prefixes hub names ({app}_{hub}, lower-cased).
	ApplicationName string
	// ConnectionsPerHub is InitialHubServerConnectionCount. Default 5.
	ConnectionsPerHub int
	// ConnectionType of every connection: serviceproto.ConnectionDefault,
	// or ConnectionWeak for the Management SDK's send-only connections
	// (they host no clients).
	ConnectionType serviceproto.ConnectionType
	// MigrationLevel and AllowStatefulReconnects go in the handshake.
	MigrationLevel          serviceproto.MigrationLevel
	AllowStatefulReconnects bool
	// Protocols the app serializes multicast messages for, in order
	// (DefaultHubMessageSerializer: every protocol the hub supports).
	// Default json and messagepack.
	Protocols []string
	// Hubs the app hosts.
	Hubs []*Hub
	// ServerStickyMode: "" (Disabled), "Preferred" or "Required": client
	// tokens then carry asrs.s.sn (this server) and asrs.s.ssticky.
	ServerStickyMode string
	// UserID is the negotiate's IUserIdProvider. Default: the request's
	// "user" query parameter.
	UserID func(r *http.Request) string
	// UserClaims are the negotiating user's claims, as .NET claim types.
	// Default: NameIdentifier and Name = the user id, if any.
	UserClaims func(r *http.Request) []serviceproto.Claim
	// Timings, the SDK's defaults: HandshakeTimeout 15 s, ServiceTimeout
	// 30 s (nothing received), KeepAliveInterval 5 s (its ping, sent when
	// something is received), AckTimeout 10 s (checked every 3 s),
	// StatusPingInterval 10 s; and the hub's: ClientKeepAlive 15 s,
	// ClientTimeout 30 s.
	HandshakeTimeout, ServiceTimeout, KeepAliveInterval time.Duration
	AckTimeout, AckCheckInterval, StatusPingInterval    time.Duration
	ClientKeepAlive, ClientTimeout                      time.Duration
	// RetryDelay is the wait before reconnect attempt n (0, 1, …).
	// Default the SDK's: 2^n s (n ≤ 5), then 1 min, plus up to 1 s.
	RetryDelay func(n int) time.Duration
	// WriteChunk, if set, cuts the bytes the app writes into WebSocket
	// messages of at most this many bytes (the SDK writes whatever its
	// pipe holds: boundaries carry no meaning). 0: one WebSocket message
	// per batch of queued messages.
	WriteChunk int
	// LegacyRawData makes client data go out as the March-2024 SDK sent
	// it: no data type in ConnectionData.
	LegacyRawData bool
	// ClientInbox is the capacity of each client's queue of invocations
	// waiting for its hub method to run. Default 256; a load generator
	// hosting tens of thousands of idle clients sets a few.
	ClientInbox int
	// Logger. Default: discard.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Algorithm == "" {
		c.Algorithm = "HS256"
	}
	if c.ServerID == "" {
		host, _ := os.Hostname()
		c.ServerID = host + "_" + strings.ReplaceAll(newGUID(), "-", "")
	}
	if c.ConnectionsPerHub <= 0 {
		c.ConnectionsPerHub = 5
	}
	if c.ClientInbox <= 0 {
		c.ClientInbox = 256
	}
	if len(c.Protocols) == 0 {
		c.Protocols = []string{"json", "messagepack"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 15*time.Second)
	def(&c.ServiceTimeout, 30*time.Second)
	def(&c.KeepAliveInterval, 5*time.Second)
	def(&c.AckTimeout, 10*time.Second)
	def(&c.AckCheckInterval, 3*time.Second)
	def(&c.StatusPingInterval, 10*time.Second)
	def(&c.ClientKeepAlive, 15*time.Second)
	def(&c.ClientTimeout, 30*time.Second)
	if c.RetryDelay == nil {
		c.RetryDelay = sdkRetryDelay
	}
	if c.UserID == nil {
		c.UserID = func(r *http.Request) string { return r.URL.Query().Get("user") }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// sdkRetryDelay is ServiceConnectionContainerBase.GetRetryDelay: 1, 2, 4,
// 8, 16, 32 s, then 1 min, each plus a random part under 1 s.
func sdkRetryDelay(n int) time.Duration {
	jitter := time.Duration(rand.Int64N(int64(time.Second)))
	if n > 5 {
		return time.Minute + jitter
	}
	return time.Duration(1<<n)*time.Second + jitter
}

// App is a running app server: its hubs' server connections and its
// negotiate endpoint.
type App struct {
	cfg      Config
	log      *slog.Logger
	endpoint *url.URL
	kid      string
	hubs     map[string]*hubRuntime // by the hub's service name (lower case)
	order    []*hubRuntime

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ln     net.Listener
	srv    *http.Server
}

// Start starts the app's server connections (ConnectionsPerHub per hub,
// each reconnecting after the SDK's back-off when it drops) and returns
// at once; WaitConnected waits for them.
func Start(cfg Config) (*App, error) {
	cfg = cfg.withDefaults()
	ep, err := url.Parse(cfg.Endpoint)
	if err != nil || ep.Host == "" || (ep.Scheme != "http" && ep.Scheme != "https") {
		return nil, fmt.Errorf("sdkfake: endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.Algorithm != "HS256" && cfg.Algorithm != "HS512" {
		return nil, fmt.Errorf("sdkfake: algorithm %q", cfg.Algorithm)
	}
	if len(cfg.Hubs) == 0 {
		return nil, errors.New("sdkfake: no hubs")
	}
	a := &App{cfg: cfg, log: cfg.Logger, endpoint: ep, hubs: map[string]*hubRuntime{},
		kid: strconv.Itoa(int(rand.Int32()))} // string.GetHashCode(): per process, meaningless
	a.ctx, a.cancel = context.WithCancel(context.Background())
	for _, h := range cfg.Hubs {
		name := strings.ToLower(h.Name)
		if cfg.ApplicationName != "" {
			name = strings.ToLower(cfg.ApplicationName) + "_" + name
		}
		if _, dup := a.hubs[name]; dup {
			return nil, fmt.Errorf("sdkfake: hub %q twice", h.Name)
		}
		hr := newHubRuntime(a, h, name)
		a.hubs[name] = hr
		a.order = append(a.order, hr)
	}
	for _, hr := range a.order {
		hr.start()
	}
	return a, nil
}

// ServerID is the app server's id.
func (a *App) ServerID() string { return a.cfg.ServerID }

// Hub returns the context of a hub by its class name (IHubContext<T>),
// or nil.
func (a *App) Hub(name string) *HubContext {
	for _, hr := range a.order {
		if strings.EqualFold(hr.hub.Name, name) {
			return &HubContext{hr: hr}
		}
	}
	return nil
}

// WaitConnected waits until every hub has at least n server connections
// that completed the handshake.
func (a *App) WaitConnected(ctx context.Context, n int) error {
	for {
		ok := true
		for _, hr := range a.order {
			if hr.connected() < n {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			var counts []string
			for _, hr := range a.order {
				counts = append(counts, fmt.Sprintf("%s: %d", hr.name, hr.connected()))
			}
			return fmt.Errorf("sdkfake: waiting for %d server connections per hub (%s): %w", n, strings.Join(counts, ", "), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops the app: server connections close (the service then drops
// their clients) and Close waits for every goroutine.
func (a *App) Close() {
	a.cancel()
	if a.srv != nil {
		a.srv.Close()
	}
	for _, hr := range a.order {
		hr.stop()
	}
	a.wg.Wait()
}

// ListenNegotiate serves the app's negotiate endpoints on addr
// ("127.0.0.1:0") until Close: POST /{hub class name}/negotiate, as
// NegotiateHandler. It returns the base URL.
func (a *App) ListenNegotiate(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	a.ln = ln
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 5 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), nil
}

// ServeHTTP answers POST /{hub}/negotiate with the redirect to the
// service: {"negotiateVersion":0,"url","accessToken","availableTransports":[]},
// or 500 while the hub has no connected server connection (the SDK's
// AzureSignalRNotConnectedException).
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	hubPath, ok := strings.CutSuffix(path, "/negotiate")
	if !ok || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	var hr *hubRuntime
	for _, h := range a.order {
		if strings.EqualFold("/"+h.hub.Name, hubPath) {
			hr = h
		}
	}
	if hr == nil {
		http.NotFound(w, r)
		return
	}
	if hr.connected() == 0 {
		http.Error(w, "Azure SignalR Service is not connected yet, please try again later.", http.StatusInternalServerError)
		return
	}
	userID := a.cfg.UserID(r)
	var claims []serviceproto.Claim
	if userID != "" {
		claims = append(claims, serviceproto.Claim{Type: serviceproto.ClaimUserID, Value: userID})
	}
	if a.cfg.ServerStickyMode != "" && a.cfg.ServerStickyMode != "Disabled" {
		claims = append(claims,
			serviceproto.Claim{Type: serviceproto.ClaimServerName, Value: a.cfg.ServerID},
			serviceproto.Claim{Type: serviceproto.ClaimServerSticky, Value: a.cfg.ServerStickyMode})
	}
	var user []serviceproto.Claim
	if a.cfg.UserClaims != nil {
		user = a.cfg.UserClaims(r)
	} else if userID != "" {
		user = []serviceproto.Claim{{Type: serviceproto.ClaimNameIdentifier, Value: userID}, {Type: serviceproto.ClaimName, Value: userID}}
	}
	claims = append(claims, userClaims(user)...)
	body, _ := json.Marshal(struct {
		NegotiateVersion    int      `json:"negotiateVersion"`
		URL                 string   `json:"url"`
		AccessToken         string   `json:"accessToken"`
		AvailableTransports []string `json:"availableTransports"`
	}{0, a.clientURL(hr.name, hubPath, r.URL.RawQuery, requestID()), a.signToken(a.audience("client", hr.name), claims, time.Now()), []string{}})
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// reservedClaims are JWT names a user claim may not take
// (ClaimsUtility.SystemClaims): the SDK prefixes them asrs.u.
var reservedClaims = map[string]bool{"aud": true, "exp": true, "iat": true, "nbf": true, "iss": true,
	"actort": true, "acr": true, "azp": true, "c_hash": true, "jti": true, "nonce": true}

// userClaims applies ClaimsUtility.BuildJwtClaims to a user's claims:
// the first "sub" is kept, later ones and reserved names get asrs.u.
func userClaims(in []serviceproto.Claim) []serviceproto.Claim {
	out := make([]serviceproto.Claim, 0, len(in))
	sub := false
	for _, c := range in {
		switch {
		case c.Type == "sub" && !sub:
			sub = true
		case c.Type == "sub" || reservedClaims[c.Type]:
			c.Type = serviceproto.ClaimPrefixUser + c.Type
		}
		out = append(out, c)
	}
	return out
}

// requestID is ConnectionRequestIdProvider's id: base64 of a timestamp.
func requestID() string {
	return base64.StdEncoding.EncodeToString(randomBytes(8))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	crand.Read(b)
	return b
}
