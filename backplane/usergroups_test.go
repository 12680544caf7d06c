package backplane

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestUserGroupStores runs the same contract against the memory store and
// the Redis one (on a real redis-server): a membership lasts until its
// TTL, without a TTL a user keeps the latest MaxUserGroups groups (the
// oldest updated goes first), removals, and hubs and users kept apart.
func TestUserGroupStores(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func(t *testing.T) UserGroupStore
	}{
		{"memory", func(*testing.T) UserGroupStore { return NewMemoryUserGroups() }},
		{"redis", func(t *testing.T) UserGroupStore {
			srv := redistest.Start(t)
			bp, _ := startNode(t, RedisConfig{Addr: srv.Addr()})
			return bp.UserGroups()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.new(t)
			ctx := context.Background()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			in := func(hub, user, group string) bool {
				t.Helper()
				ok, err := s.IsUserInGroup(ctx, hub, user, group)
				must(err)
				return ok
			}
			names := func(hub, user string) []string {
				t.Helper()
				gs, err := s.UserGroups(ctx, hub, user)
				must(err)
				var out []string
				for _, g := range gs {
					out = append(out, fmt.Sprintf("%s:%v", g.Group, g.TTL))
				}
				return out
			}

			_, err := s.AddUserToGroup(ctx, "chat", "alice", "short", time.Second)
			must(err)
			_, err = s.AddUserToGroup(ctx, "chat", "alice", "long", time.Hour)
			must(err)
			_, err = s.AddUserToGroup(ctx, "chat", "alice", "plain", 0)
			must(err)
			if !in("chat", "alice", "short") || in("news", "alice", "short") || in("chat", "bob", "short") {
				t.Fatal("membership not kept apart by hub and user")
			}
			if got := names("chat", "alice"); !slices.Equal(got, []string{"long:true", "plain:false", "short:true"}) {
				t.Fatalf("UserGroups = %v", got)
			}
			gs, _ := s.UserGroups(ctx, "chat", "alice")
			for _, g := range gs {
				if d := time.Until(g.Expiry); g.Group == "plain" && (d < UserGroupMaxAge-time.Minute || d > UserGroupMaxAge) {
					t.Errorf("a membership without TTL expires in %v, want %v", d, UserGroupMaxAge)
				}
			}
			testutil.WaitUntil(t, 5*time.Second, "the 1 s membership to expire", func() bool { return !in("chat", "alice", "short") })
			if got := names("chat", "alice"); !slices.Equal(got, []string{"long:true", "plain:false"}) {
				t.Fatalf("UserGroups after expiry = %v", got)
			}

			// The cap: MaxUserGroups without TTL; re-adding one makes it
			// the latest; groups with a TTL do not count.
			for i := range MaxUserGroups - 1 {
				ev, err := s.AddUserToGroup(ctx, "chat", "alice", fmt.Sprintf("g%03d", i), 0)
				must(err)
				if len(ev) != 0 {
					t.Fatalf("evicted %v at %d groups", ev, i+2)
				}
			}
			_, err = s.AddUserToGroup(ctx, "chat", "alice", "plain", 0) // plain is now the latest
			must(err)
			ev, err := s.AddUserToGroup(ctx, "chat", "alice", "one-more", 0)
			must(err)
			if !slices.Equal(ev, []string{"g000"}) {
				t.Fatalf("evicted %v, want [g000]", ev)
			}
			if in("chat", "alice", "g000") || !in("chat", "alice", "plain") || !in("chat", "alice", "long") || !in("chat", "alice", "one-more") {
				t.Fatal("the cap dropped the wrong group")
			}
			// A group without TTL given a TTL leaves the capped set.
			_, err = s.AddUserToGroup(ctx, "chat", "alice", "g001", time.Hour)
			must(err)
			ev, err = s.AddUserToGroup(ctx, "chat", "alice", "two-more", 0)
			must(err)
			if len(ev) != 0 {
				t.Fatalf("evicted %v after a capped group took a TTL", ev)
			}

			must(s.RemoveUserFromGroup(ctx, "chat", "alice", "long"))
			if in("chat", "alice", "long") || !in("chat", "alice", "plain") {
				t.Fatal("RemoveUserFromGroup")
			}
			_, err = s.AddUserToGroup(ctx, "chat", "bob", "plain", 0)
			must(err)
			must(s.RemoveUserFromAllGroups(ctx, "chat", "alice"))
			if got := names("chat", "alice"); len(got) != 0 || !in("chat", "bob", "plain") {
				t.Fatalf("after RemoveUserFromAllGroups: alice %v, bob in plain %v", got, in("chat", "bob", "plain"))
			}
		})
	}
}

// TestRedisUserGroupKeysExpire: a user's keys expire with its last
// membership, so Redis holds nothing for users nobody touches again.
func TestRedisUserGroupKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	bp, _ := startNode(t, RedisConfig{Addr: srv.Addr(), Hubs: map[string]string{"chat": "App.Chat"}})
	s := bp.UserGroups()
	ctx := context.Background()
	if _, err := s.AddUserToGroup(ctx, "chat", "u", "g", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUserToGroup(ctx, "chat", "u", "h", 0); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"edgeplane:usergroups:{App.Chat:u}", "edgeplane:usergroups:{App.Chat:u}:nottl"} {
		got, err := srv.Do("PTTL", k)
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := strconvAtoi(got)
		if ms < int64((UserGroupMaxAge - time.Hour).Milliseconds()) {
			t.Errorf("PTTL %s = %s, want about %v (the last membership)", k, got, UserGroupMaxAge)
		}
	}
}

func strconvAtoi(resp string) (int64, error) {
	var n int64
	_, err := fmt.Sscanf(resp, ":%d", &n)
	return n, err
}
