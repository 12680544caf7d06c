package service

import (
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// maxUserGroups is how many lasting group memberships a user keeps: the
// oldest goes when a 101st is added (Azure SignalR's documented limit).
const maxUserGroups = 100

// userGroups are a hub's user-group memberships (UserJoinGroup): a user's
// current connections on this node join the group, and so do the ones
// that come later, until the membership's TTL ends or it is removed.
// Memberships are this node's: a user's connections on other nodes are
// not changed (see the package doc).
type userGroups struct {
	h  *hub
	mu sync.Mutex
	m  map[string][]membership // user → groups, oldest first
}

type membership struct {
	group string
	until time.Time // zero: no TTL
}

func (u *userGroups) init(h *hub) { u.h, u.m = h, map[string][]membership{} }

// add makes user a member of group for ttl (<0: no TTL; 0: the user's
// current connections only).
func (u *userGroups) add(user, group string, ttl time.Duration) {
	if ttl != 0 {
		var until time.Time
		if ttl > 0 {
			until = time.Now().Add(ttl)
		}
		u.mu.Lock()
		ms := u.m[user]
		for i := range ms {
			if ms[i].group == group {
				ms = append(ms[:i], ms[i+1:]...)
				break
			}
		}
		ms = append(ms, membership{group: group, until: until})
		if len(ms) > maxUserGroups {
			ms = ms[len(ms)-maxUserGroups:]
		}
		u.m[user] = ms
		u.mu.Unlock()
	}
	u.h.fh.EachOf(backplane.User, user, func(e *fanout.Entry) { u.h.fh.AddToGroup(e.ID(), group) })
}

// remove ends user's membership of group (all groups if not valid) and
// takes the user's connections out of it.
func (u *userGroups) remove(user string, group serviceproto.NullString) {
	u.mu.Lock()
	ms := u.m[user]
	var left []string
	if !group.Valid {
		for _, m := range ms {
			left = append(left, m.group)
		}
		delete(u.m, user)
	} else {
		for i := range ms {
			if ms[i].group == group.String {
				ms = append(ms[:i], ms[i+1:]...)
				break
			}
		}
		if len(ms) == 0 {
			delete(u.m, user)
		} else {
			u.m[user] = ms
		}
		left = []string{group.String}
	}
	u.mu.Unlock()
	u.h.fh.EachOf(backplane.User, user, func(e *fanout.Entry) {
		if !group.Valid {
			u.h.fh.RemoveFromAllGroups(e.ID())
			return
		}
		for _, g := range left {
			u.h.fh.RemoveFromGroup(e.ID(), g)
		}
	})
}

// has reports whether user holds a lasting membership of group.
func (u *userGroups) has(user, group string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for _, m := range u.m[user] {
		if m.group == group && (m.until.IsZero() || now.Before(m.until)) {
			return true
		}
	}
	return false
}

// joined puts a new connection of user in the user's groups.
func (u *userGroups) joined(user, connID string) {
	if user == "" {
		return
	}
	u.mu.Lock()
	groups := make([]string, 0, len(u.m[user]))
	now := time.Now()
	for _, m := range u.m[user] {
		if m.until.IsZero() || now.Before(m.until) {
			groups = append(groups, m.group)
		}
	}
	u.mu.Unlock()
	for _, g := range groups {
		u.h.fh.AddToGroup(connID, g)
	}
}

// expire ends the memberships whose TTL passed: the user's connections
// leave the group.
func (u *userGroups) expire(now time.Time) {
	type gone struct{ user, group string }
	var out []gone
	u.mu.Lock()
	for user, ms := range u.m {
		kept := ms[:0]
		for _, m := range ms {
			if !m.until.IsZero() && !now.Before(m.until) {
				out = append(out, gone{user, m.group})
			} else {
				kept = append(kept, m)
			}
		}
		if len(kept) == 0 {
			delete(u.m, user)
		} else {
			u.m[user] = kept
		}
	}
	u.mu.Unlock()
	for _, g := range out {
		u.h.fh.EachOf(backplane.User, g.user, func(e *fanout.Entry) { u.h.fh.RemoveFromGroup(e.ID(), g.group) })
	}
}
