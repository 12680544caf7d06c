package admin

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Fleet applies the REST API's fleet commands (backplane.Fleet) to this
// node's connections, and keeps their user-group memberships: when a
// connection of a user arrives it joins the user's groups (read from the
// store by a small pool of workers, never on the connection's path), and
// a membership with a TTL is ended on this node's connections when it
// expires. It is built before the connection server (its Upstream watches
// connections arrive) and before the backplane starts (it handles the
// backplane's commands); the REST Handler uses it.
type Fleet struct {
	cfg   FleetConfig
	log   *slog.Logger
	fleet backplane.Fleet

	lookups chan userRef

	// mu orders user-group changes on this node's connections: a command
	// and a stored lookup never interleave, and seq tells a lookup that a
	// command came between its read of the store and its application.
	mu      sync.Mutex
	seq     uint64
	expiry  map[userGroupKey]int64 // memberships with a TTL applied here → Unix ms
	pending expiryHeap
	kick    chan struct{}

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once

	set           *metricset.Set
	mLookups      *metrics.Counter
	mLookupErrors *metrics.Counter
	mLookupsDrop  *metrics.Counter
	mExpired      *metrics.Counter
	mExpiryDrop   *metrics.Counter
}

// FleetConfig is what a Fleet works on. Router, Backplane and Conns are
// required.
type FleetConfig struct {
	Router *fanout.Router
	// Backplane carries the commands. One that is not a backplane.Fleet
	// gets commands applied on this node only.
	Backplane backplane.Backplane
	// Conns closes this node's connections.
	Conns ConnCloser
	// UserGroups stores user-group memberships. Nil: in memory (one node).
	UserGroups backplane.UserGroupStore
	// LookupWorkers read a user's groups from the store when one of its
	// connections arrives. Default 4.
	LookupWorkers int
	// LookupQueue bounds the arrivals waiting for a lookup; beyond it they
	// are dropped and counted (the connection misses its user groups).
	// Default 16,384.
	LookupQueue int
	// MaxExpiries bounds the memberships with a TTL this node tracks for
	// its connections; beyond it a membership is applied without its
	// expiry on this node (counted). Default 1,048,576.
	MaxExpiries int
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// ConnCloserFunc adapts a function to ConnCloser.
type ConnCloserFunc func(hub, id, reason string) bool

// CloseConnection implements ConnCloser.
func (f ConnCloserFunc) CloseConnection(hub, id, reason string) bool { return f(hub, id, reason) }

type userRef struct{ hub, user string }

type userGroupKey struct{ hub, user, group string }

// NewFleet builds a node's fleet-command handler, registers it with the
// backplane (call it before the backplane's Start) and starts its
// workers; Close stops them.
func NewFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Router == nil || cfg.Backplane == nil || cfg.Conns == nil {
		return nil, errors.New("admin: FleetConfig needs Router, Backplane and Conns")
	}
	if cfg.UserGroups == nil {
		cfg.UserGroups = backplane.NewMemoryUserGroups()
	}
	if cfg.LookupWorkers <= 0 {
		cfg.LookupWorkers = 4
	}
	if cfg.LookupQueue <= 0 {
		cfg.LookupQueue = 16 << 10
	}
	if cfg.MaxExpiries <= 0 {
		cfg.MaxExpiries = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &Fleet{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "rest"),
		lookups: make(chan userRef, cfg.LookupQueue),
		expiry:  make(map[userGroupKey]int64),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		set:     metricset.New(),
	}
	f.mLookups = f.set.Counter("edgeplane_user_group_lookups_total",
		"User-group lookups for arriving connections of a user (the store read once per arrival).")
	f.mLookupErrors = f.set.Counter("edgeplane_user_group_lookup_errors_total",
		"User-group lookups that failed (store unreachable): the connection was left out of its user's groups.")
	f.mLookupsDrop = f.set.Counter("edgeplane_user_group_lookups_dropped_total",
		"Arrivals of a user's connection not looked up because the lookup queue was full: the connection was left out of its user's groups.")
	f.mExpired = f.set.Counter("edgeplane_user_group_expired_total",
		"User-group memberships with a TTL ended on this node's connections when they expired.")
	f.mExpiryDrop = f.set.Counter("edgeplane_user_group_expiries_dropped_total",
		"User-group memberships with a TTL applied to this node's connections without tracking their expiry (over MaxExpiries): they last until the connections close.")
	if fl, ok := cfg.Backplane.(backplane.Fleet); ok {
		f.fleet = fl
		fl.HandleCommands(f.HandleCommand)
	} else {
		f.fleet = localFleet{f}
	}
	f.wg.Add(cfg.LookupWorkers + 1)
	for range cfg.LookupWorkers {
		go f.lookupLoop()
	}
	go f.expiryLoop()
	return f, nil
}

// Metrics returns the fleet's metrics (user-group lookups and expiries).
func (f *Fleet) Metrics() *metricset.Set { return f.set }

// Close stops the workers.
func (f *Fleet) Close() {
	f.stopOnce.Do(func() { close(f.stop) })
	f.wg.Wait()
}

// Upstream wraps the node's upstream (nil: none) so that the Fleet sees
// each connection of a user arrive. Without an upstream, invocations are
// refused with backplane.ErrNoUpstream as the connection server does, and
// lifecycle events go nowhere.
func (f *Fleet) Upstream(next backplane.Upstream) backplane.Upstream {
	return &fleetUpstream{f: f, next: next}
}

type fleetUpstream struct {
	f    *Fleet
	next backplane.Upstream
}

func (u *fleetUpstream) Send(e *backplane.Event) error {
	if e.Kind == backplane.EventConnected && e.UserID != "" {
		u.f.arrived(e.Hub, e.UserID)
	}
	if u.next == nil {
		if e.Kind == backplane.EventInvocation {
			return backplane.ErrNoUpstream
		}
		return nil
	}
	return u.next.Send(e)
}

// arrived queues a lookup of user's groups; it never blocks.
func (f *Fleet) arrived(hub, user string) {
	select {
	case f.lookups <- userRef{hub, user}:
	default:
		f.mLookupsDrop.Inc()
	}
}

func (f *Fleet) lookupLoop() {
	defer f.wg.Done()
	for {
		select {
		case u := <-f.lookups:
			f.joinStored(u.hub, u.user)
		case <-f.stop:
			return
		}
	}
}

// lookupTimeout bounds one store read.
const lookupTimeout = 5 * time.Second

// joinStored puts user's local connections in the user's stored groups.
// A command applied between the read and the application makes it read
// again (the command is newer than what was read).
func (f *Fleet) joinStored(hub, user string) {
	h := f.cfg.Router.Hub(hub)
	if h == nil {
		return
	}
	f.mLookups.Inc()
	for range 3 {
		f.mu.Lock()
		seq := f.seq
		f.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		gs, err := f.cfg.UserGroups.UserGroups(ctx, hub, user)
		cancel()
		if err != nil {
			f.mLookupErrors.Inc()
			f.log.Warn("user groups not applied to an arriving connection: store lookup failed", "hub", hub, "user", user, "err", err)
			return
		}
		if len(gs) == 0 {
			return
		}
		f.mu.Lock()
		if f.seq != seq {
			f.mu.Unlock()
			continue
		}
		for _, g := range gs {
			for _, e := range h.UserEntries(user) {
				h.AddToGroup(e.ID(), g.Group)
			}
			if g.TTL {
				f.scheduleLocked(userGroupKey{hub, user, g.Group}, g.Expiry.UnixMilli())
			}
		}
		f.mu.Unlock()
		return
	}
}

// HandleCommand applies a fleet command to this node's connections of
// hub (backplane.CommandHandler). It replies when this node holds what the
// command names (as Holders counts nodes): any connection of the hub for
// a hub-wide close, else a local member of the group, user or connection.
func (f *Fleet) HandleCommand(hub string, c *backplane.Command) *backplane.Reply {
	h := f.cfg.Router.Hub(hub)
	if h == nil {
		return nil
	}
	switch c.Op {
	case backplane.CmdClose:
		return f.close(h, c)
	case backplane.CmdLeaveAll:
		if !h.Lookup(c.Name) {
			return nil
		}
		gs := h.ConnGroups(c.Name)
		for _, g := range gs {
			h.RemoveFromGroup(c.Name, g)
		}
		return &backplane.Reply{N: len(gs)}
	case backplane.CmdUserJoin, backplane.CmdUserLeave:
		return f.userGroup(h, c)
	case backplane.CmdListGroup:
		return listGroup(h, c)
	}
	return nil
}

func (f *Fleet) close(h *fanout.Hub, c *backplane.Command) *backplane.Reply {
	var es []*fanout.Entry
	switch c.Kind {
	case backplane.All:
		h.Each(func(e *fanout.Entry) { es = append(es, e) })
	case backplane.Group:
		es = h.GroupEntries(c.Name)
	case backplane.User:
		es = h.UserEntries(c.Name)
	case backplane.Connection:
		if !h.Lookup(c.Name) {
			return nil
		}
		if f.cfg.Conns.CloseConnection(h.Name(), c.Name, c.Reason) {
			return &backplane.Reply{N: 1}
		}
		return &backplane.Reply{}
	}
	if c.Kind != backplane.All && len(es) == 0 {
		return nil
	}
	n := 0
	for _, e := range es {
		if !slices.Contains(c.Excluded, e.ID()) && f.cfg.Conns.CloseConnection(h.Name(), e.ID(), c.Reason) {
			n++
		}
	}
	return &backplane.Reply{N: n}
}

func (f *Fleet) userGroup(h *fanout.Hub, c *backplane.Command) *backplane.Reply {
	hub, user := h.Name(), c.Name
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	es := h.UserEntries(user)
	if c.Op == backplane.CmdUserJoin {
		k := userGroupKey{hub, user, c.Group}
		delete(f.expiry, k) // a newer membership replaces the old one's expiry
		if len(es) == 0 {
			return nil
		}
		if c.Expiry > 0 {
			f.scheduleLocked(k, c.Expiry)
		}
		for _, e := range es {
			h.AddToGroup(e.ID(), c.Group)
		}
		return &backplane.Reply{N: len(es), AwaitGroup: c.Group}
	}
	if c.Group == "" {
		for k := range f.expiry {
			if k.hub == hub && k.user == user {
				delete(f.expiry, k)
			}
		}
	} else {
		delete(f.expiry, userGroupKey{hub, user, c.Group})
	}
	if len(es) == 0 {
		return nil
	}
	for _, e := range es {
		if c.Group != "" {
			h.RemoveFromGroup(e.ID(), c.Group)
			continue
		}
		for _, g := range h.ConnGroups(e.ID()) {
			h.RemoveFromGroup(e.ID(), g)
		}
	}
	return &backplane.Reply{N: len(es)}
}

// listGroup answers CmdListGroup: the local members of group c.Name whose
// connection id sorts after c.After, in order, at most c.Max.
func listGroup(h *fanout.Hub, c *backplane.Command) *backplane.Reply {
	es := h.GroupEntries(c.Name)
	if len(es) == 0 {
		return nil
	}
	ms := make([]backplane.Member, 0, len(es))
	for _, e := range es {
		if e.ID() > c.After {
			ms = append(ms, backplane.Member{ConnID: e.ID(), UserID: e.User()})
		}
	}
	slices.SortFunc(ms, func(a, b backplane.Member) int { return strings.Compare(a.ConnID, b.ConnID) })
	rep := &backplane.Reply{N: len(ms)}
	if c.Max > 0 && len(ms) > c.Max {
		ms, rep.More = ms[:c.Max], true
	}
	rep.Members = ms
	return rep
}

// scheduleLocked records that k's membership ends at exp (Unix ms) on this
// node's connections. f.mu must be held.
func (f *Fleet) scheduleLocked(k userGroupKey, exp int64) {
	if _, ok := f.expiry[k]; !ok && len(f.expiry) >= f.cfg.MaxExpiries {
		f.mExpiryDrop.Inc()
		return
	}
	f.expiry[k] = exp
	if len(f.pending) >= 2*f.cfg.MaxExpiries {
		f.compactLocked()
	}
	heap.Push(&f.pending, expiryItem{k, exp})
	if f.pending[0].at == exp {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// compactLocked drops heap items no longer current (replaced or removed
// memberships). f.mu must be held.
func (f *Fleet) compactLocked() {
	live := f.pending[:0]
	for _, it := range f.pending {
		if f.expiry[it.k] == it.at {
			live = append(live, it)
		}
	}
	clear(f.pending[len(live):])
	f.pending = live
	heap.Init(&f.pending)
}

// expiryLoop ends memberships with a TTL on this node's connections when
// they expire.
func (f *Fleet) expiryLoop() {
	defer f.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		f.mu.Lock()
		now := time.Now().UnixMilli()
		for len(f.pending) > 0 && f.pending[0].at <= now {
			it := heap.Pop(&f.pending).(expiryItem)
			if f.expiry[it.k] != it.at {
				continue // renewed or removed since
			}
			delete(f.expiry, it.k)
			if h := f.cfg.Router.Hub(it.k.hub); h != nil {
				for _, e := range h.UserEntries(it.k.user) {
					h.RemoveFromGroup(e.ID(), it.k.group)
				}
			}
			f.mExpired.Inc()
		}
		wait := time.Hour
		if len(f.pending) > 0 {
			wait = time.Duration(f.pending[0].at-now) * time.Millisecond
		}
		f.mu.Unlock()
		t.Reset(wait)
		select {
		case <-t.C:
		case <-f.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-f.stop:
			return
		}
	}
}

type expiryItem struct {
	k  userGroupKey
	at int64
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}

// localFleet applies commands on this node only, for a backplane that
// carries none.
type localFleet struct{ f *Fleet }

func (l localFleet) HandleCommands(backplane.CommandHandler) {}

func (l localFleet) Command(_ context.Context, hub string, c *backplane.Command, _ int) ([]backplane.Reply, error) {
	if r := l.f.HandleCommand(hub, c); r != nil {
		return []backplane.Reply{*r}, nil
	}
	return nil, nil
}

func (l localFleet) Holders(context.Context, string, backplane.Kind, string) (int, error) {
	return 0, nil
}
