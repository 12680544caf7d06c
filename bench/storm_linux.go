package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// OfficialRetry is the @microsoft/signalr client's default reconnect
// schedule: 0, 2, 10, 30 s, no jitter.
var OfficialRetry = []time.Duration{0, 2 * time.Second, 10 * time.Second, 30 * time.Second}

// StormConfig configures RunStorm.
type StormConfig struct {
	// Clients connect all at once.
	Clients int
	// Established connections are opened (paced) before the storm and must
	// survive it; default 500.
	Established int
	// Retry schedule of the storm clients; default OfficialRetry.
	Retry   []time.Duration
	Systems []SystemSpec
	// Edgeplane and Self are the binaries (see ServerConfig).
	Edgeplane, Self string
	// Timeout bounds the storm; default 150 s.
	Timeout       time.Duration
	Log, Progress io.Writer
	ServerArgs    map[Kind][]string
}

// StormResult is one system's storm.
type StormResult struct {
	Spec            SystemSpec     `json:"spec"`
	Clients         int            `json:"clients"`
	Connected       int            `json:"connected"`
	GivenUp         int            `json:"given_up"`
	AllConnected    bool           `json:"all_connected"`
	SecondsToAll    float64        `json:"seconds_until_all_connected"`
	AcceptedPerSec  float64        `json:"accepted_per_sec"`
	Attempts        int            `json:"attempts"`
	Rejected503     int            `json:"rejected_503"`
	Failures        int            `json:"failed_attempts"`
	Handshake       Summary        `json:"handshake"`
	Connect         Summary        `json:"connect_incl_retries"`
	Established     int            `json:"established"`
	EstablishedLost int            `json:"established_dropped"`
	StormDropped    int            `json:"storm_dropped_after_connect"`
	ServerAlive     bool           `json:"server_alive"`
	ServerRSS       int64          `json:"server_rss_bytes"`
	ServerCPUSec    float64        `json:"server_cpu_sec"`
	ClientCPUSec    float64        `json:"client_cpu_sec"`
	Errors          map[string]int `json:"errors,omitempty"`
	FirstErrors     []string       `json:"first_errors,omitempty"`
	HandshakeHist   *Hist          `json:"handshake_hist,omitempty"`
	Error           string         `json:"error,omitempty"`
}

// StormReport is the result of RunStorm.
type StormReport struct {
	Machine Machine       `json:"machine"`
	When    time.Time     `json:"when"`
	Systems []StormResult `json:"systems"`
}

// RunStorm measures N simultaneous connects against every system.
func RunStorm(ctx context.Context, cfg StormConfig) (*StormReport, error) {
	if cfg.Established <= 0 {
		cfg.Established = 500
	}
	if cfg.Retry == nil {
		cfg.Retry = OfficialRetry
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 150 * time.Second
	}
	rep := &StormReport{Machine: ReadMachine(), When: time.Now()}
	for _, spec := range cfg.Systems {
		r, err := stormOne(ctx, cfg, spec)
		if err != nil {
			r.Error = err.Error()
		}
		rep.Systems = append(rep.Systems, r)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

func stormOne(ctx context.Context, cfg StormConfig, spec SystemSpec) (StormResult, error) {
	r := StormResult{Spec: spec, Clients: cfg.Clients, Established: cfg.Established}
	srv, err := StartServer(ctx, ServerConfig{Spec: spec, Edgeplane: cfg.Edgeplane, Self: cfg.Self, Stderr: cfg.Log, ExtraArgs: cfg.ServerArgs[spec.Kind]})
	if err != nil {
		return r, err
	}
	defer srv.Stop()
	est, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: []string{srv.Listen}, Conns: cfg.Established, Concurrency: 64,
		Retry: []time.Duration{0, time.Second}, MessagePack: spec.MessagePack, Stateful: spec.Stateful, Stderr: cfg.Log})
	if err != nil {
		return r, err
	}
	defer est.Close()
	if p, err := est.WaitSettled(ctx, time.Minute, nil); err != nil || p.Open != cfg.Established {
		return r, fmt.Errorf("bench: %d of %d established connections opened before the storm: %v", p.Open, cfg.Established, err)
	}
	cpu0, _ := ReadProc(srv.PID())
	room, err := srv.Room()
	if err != nil {
		return r, err
	}
	storm, err := StartFleet(FleetConfig{Self: cfg.Self, Addrs: []string{srv.Listen}, Room: []int{room}, Conns: cfg.Clients, Concurrency: 0,
		Retry: cfg.Retry, MessagePack: spec.MessagePack, Stateful: spec.Stateful, Stderr: cfg.Log})
	if err != nil {
		return r, err
	}
	defer storm.Close()
	ccpu0 := storm.CPUSec()
	bar := NewBar(cfg.Progress, spec.Name+" storm", cfg.Clients)
	p, werr := storm.WaitSettled(ctx, cfg.Timeout, bar)
	bar.Done(p.Open, fmt.Sprintf("503 %d  fail %d", p.Rejected503, p.Failures))
	time.Sleep(2 * time.Second)
	st, err := storm.Stats()
	if err != nil {
		return r, err
	}
	if pr, err := ReadProc(srv.PID()); err == nil {
		r.ServerRSS = pr.RSS
		r.ServerCPUSec = pr.CPUSec - cpu0.CPUSec
	}
	r.ClientCPUSec = storm.CPUSec() - ccpu0
	r.ServerAlive = srv.Alive()
	r.Connected = st.EverOpened
	r.GivenUp = st.GivenUp
	r.AllConnected = st.EverOpened == cfg.Clients
	r.Attempts = st.Attempts
	r.Rejected503 = st.Rejected503
	r.Failures = st.Failures
	r.StormDropped = st.Dropped
	r.Errors = st.Errors
	r.FirstErrors = st.FirstErrors
	if st.LastOpenNano > st.FirstAttemptNano && st.FirstAttemptNano > 0 {
		r.SecondsToAll = float64(st.LastOpenNano-st.FirstAttemptNano) / 1e9
		r.AcceptedPerSec = float64(st.EverOpened) / r.SecondsToAll
	}
	if st.Handshake != nil {
		r.Handshake = st.Handshake.Summary()
		r.HandshakeHist = st.Handshake
	}
	if st.Connect != nil {
		r.Connect = st.Connect.Summary()
	}
	ep := est.Progress()
	r.EstablishedLost = ep.Dropped + (cfg.Established - ep.Open - ep.Dropped)
	if werr != nil {
		return r, werr
	}
	return r, nil
}
