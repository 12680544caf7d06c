package backplane

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// User groups: Azure SignalR's user-group membership. A user added to a
// group belongs to it, with every connection it has now or opens later on
// any node, until the membership expires or is removed. The store holds
// the memberships (Redis for a fleet, memory for a single node); the REST
// API applies each change to the connections through fleet commands, and
// a node reads a user's groups from the store when one of its
// connections arrives.

// User-group limits, as Azure SignalR documents them.
const (
	// MaxUserGroups is how many groups a user keeps among those it joined
	// without a TTL: the latest updated; joining one more drops the oldest.
	MaxUserGroups = 100
	// UserGroupMaxAge is how long a membership without a TTL lasts at most.
	UserGroupMaxAge = 365 * 24 * time.Hour
)

// UserGroup is one of a user's groups.
type UserGroup struct {
	Group string
	// Expiry ends the membership.
	Expiry time.Time
	// TTL: it was added with a TTL (else: without, it is one of the
	// MaxUserGroups and lasts UserGroupMaxAge).
	TTL bool
}

// UserGroupStore holds user-group memberships. Hub is the hub's name; the
// Redis store keys them by the hub's channel prefix, like its channels.
type UserGroupStore interface {
	// AddUserToGroup adds user to group for ttl; ttl 0: without a TTL
	// (UserGroupMaxAge, one of the latest MaxUserGroups). It returns the
	// groups the user lost to the MaxUserGroups cap.
	AddUserToGroup(ctx context.Context, hub, user, group string, ttl time.Duration) (evicted []string, err error)
	// RemoveUserFromGroup ends user's membership of group.
	RemoveUserFromGroup(ctx context.Context, hub, user, group string) error
	// RemoveUserFromAllGroups ends every membership of user.
	RemoveUserFromAllGroups(ctx context.Context, hub, user string) error
	// IsUserInGroup reports whether user is a member of group now.
	IsUserInGroup(ctx context.Context, hub, user, group string) (bool, error)
	// UserGroups lists user's memberships in force now.
	UserGroups(ctx context.Context, hub, user string) ([]UserGroup, error)
}

// MemoryUserGroups is the single-node UserGroupStore. Expired memberships
// are dropped when their user is touched, and all of them every
// sweepEvery additions, so memory is bounded by the memberships in force.
type MemoryUserGroups struct {
	mu    sync.Mutex
	users map[[2]string]map[string]*memGroup // (hub, user) → group
	seq   int64                              // orders memberships without a TTL
	adds  int
	now   func() time.Time
}

type memGroup struct {
	expiry time.Time
	seq    int64 // without a TTL: when last updated; 0 with a TTL
}

const sweepEvery = 1024

// NewMemoryUserGroups returns an empty in-memory store.
func NewMemoryUserGroups() *MemoryUserGroups {
	return &MemoryUserGroups{users: make(map[[2]string]map[string]*memGroup), now: time.Now}
}

// purgeLocked drops gs's expired memberships. s.mu must be held.
func purgeLocked(gs map[string]*memGroup, now time.Time) {
	for g, m := range gs {
		if !m.expiry.After(now) {
			delete(gs, g)
		}
	}
}

// AddUserToGroup implements UserGroupStore.
func (s *MemoryUserGroups) AddUserToGroup(_ context.Context, hub, user, group string, ttl time.Duration) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.adds++; s.adds%sweepEvery == 0 {
		for k, gs := range s.users {
			if purgeLocked(gs, now); len(gs) == 0 {
				delete(s.users, k)
			}
		}
	}
	k := [2]string{hub, user}
	gs := s.users[k]
	if gs == nil {
		gs = make(map[string]*memGroup)
		s.users[k] = gs
	}
	purgeLocked(gs, now)
	if ttl > 0 {
		gs[group] = &memGroup{expiry: now.Add(ttl)}
		return nil, nil
	}
	s.seq++
	gs[group] = &memGroup{expiry: now.Add(UserGroupMaxAge), seq: s.seq}
	var noTTL []string
	for g, m := range gs {
		if m.seq != 0 {
			noTTL = append(noTTL, g)
		}
	}
	if len(noTTL) <= MaxUserGroups {
		return nil, nil
	}
	slices.SortFunc(noTTL, func(a, b string) int { return int(gs[a].seq - gs[b].seq) })
	evicted := noTTL[:len(noTTL)-MaxUserGroups]
	for _, g := range evicted {
		delete(gs, g)
	}
	return evicted, nil
}

// RemoveUserFromGroup implements UserGroupStore.
func (s *MemoryUserGroups) RemoveUserFromGroup(_ context.Context, hub, user, group string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{hub, user}
	if gs := s.users[k]; gs != nil {
		if delete(gs, group); len(gs) == 0 {
			delete(s.users, k)
		}
	}
	return nil
}

// RemoveUserFromAllGroups implements UserGroupStore.
func (s *MemoryUserGroups) RemoveUserFromAllGroups(_ context.Context, hub, user string) error {
	s.mu.Lock()
	delete(s.users, [2]string{hub, user})
	s.mu.Unlock()
	return nil
}

// IsUserInGroup implements UserGroupStore.
func (s *MemoryUserGroups) IsUserInGroup(_ context.Context, hub, user, group string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.users[[2]string{hub, user}][group]
	return m != nil && m.expiry.After(s.now()), nil
}

// UserGroups implements UserGroupStore.
func (s *MemoryUserGroups) UserGroups(_ context.Context, hub, user string) ([]UserGroup, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []UserGroup
	for g, m := range s.users[[2]string{hub, user}] {
		if m.expiry.After(now) {
			out = append(out, UserGroup{Group: g, Expiry: m.expiry, TTL: m.seq == 0})
		}
	}
	slices.SortFunc(out, func(a, b UserGroup) int { return strings.Compare(a.Group, b.Group) })
	return out, nil
}
