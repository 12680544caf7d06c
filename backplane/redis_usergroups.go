package backplane

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// User-group memberships in Redis (UserGroupStore), so that every node of
// the fleet sees them. Two sorted sets per user, named with a hash tag so
// that a cluster keeps them in one slot:
//
//	edgeplane:usergroups:{P:user}        group → expiry (Unix ms)
//	edgeplane:usergroups:{P:user}:nottl  group → order of its last update,
//	                                     for the groups joined without a TTL
//
// P is the hub's channel prefix. Every change runs as one script: expired
// memberships are dropped, the MaxUserGroups cap applied, and both keys
// expire with the last membership.

// RedisUserGroups is the Redis UserGroupStore of a Redis backplane.
type RedisUserGroups struct{ r *Redis }

// UserGroups returns the backplane's user-group store.
func (r *Redis) UserGroups() *RedisUserGroups { return &RedisUserGroups{r: r} }

func (s *RedisUserGroups) keys(hub, user string) []string {
	k := "edgeplane:usergroups:{" + s.r.Prefix(hub) + ":" + user + "}"
	return []string{k, k + ":nottl"}
}

// addScript: KEYS[1] expiries, KEYS[2] order of the groups without a TTL;
// ARGV group, now (ms), expiry (ms), "1" without a TTL, the cap. It returns
// the groups dropped by the cap.
var addScript = redis.NewScript(`
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local evicted = {}
if ARGV[4] == '1' then
  local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local order = 1
  if #top == 2 then order = tonumber(top[2]) + 1 end
  redis.call('ZADD', KEYS[2], order, ARGV[1])
  local max = tonumber(ARGV[5])
  local n = redis.call('ZCARD', KEYS[2])
  if n > max then
    evicted = redis.call('ZRANGE', KEYS[2], 0, n - max - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - max - 1)
    for _, g in ipairs(evicted) do redis.call('ZREM', KEYS[1], g) end
  end
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
for _, g in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[1], g) then redis.call('ZREM', KEYS[2], g) end
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 2 then
  redis.call('PEXPIREAT', KEYS[1], last[2])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIREAT', KEYS[2], last[2]) end
end
return evicted
`)

func (s *RedisUserGroups) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.r.cfg.PublishTimeout)
}

func storeErr(op string, err error) error {
	return fmt.Errorf("backplane: user groups: %s: %w: %w", op, ErrUnavailable, err)
}

// AddUserToGroup implements UserGroupStore.
func (s *RedisUserGroups) AddUserToGroup(ctx context.Context, hub, user, group string, ttl time.Duration) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	now := time.Now()
	noTTL := "0"
	exp := now.Add(ttl)
	if ttl <= 0 {
		noTTL, exp = "1", now.Add(UserGroupMaxAge)
	}
	res, err := addScript.Run(ctx, s.r.client, s.keys(hub, user), group, now.UnixMilli(), exp.UnixMilli(), noTTL, MaxUserGroups).StringSlice()
	if err != nil && err != redis.Nil {
		return nil, storeErr("add", err)
	}
	return res, nil
}

// RemoveUserFromGroup implements UserGroupStore.
func (s *RedisUserGroups) RemoveUserFromGroup(ctx context.Context, hub, user, group string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.keys(hub, user)
	_, err := s.r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, k[0], group)
		p.ZRem(ctx, k[1], group)
		return nil
	})
	if err != nil {
		return storeErr("remove", err)
	}
	return nil
}

// RemoveUserFromAllGroups implements UserGroupStore.
func (s *RedisUserGroups) RemoveUserFromAllGroups(ctx context.Context, hub, user string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.r.client.Del(ctx, s.keys(hub, user)...).Err(); err != nil {
		return storeErr("remove all", err)
	}
	return nil
}

// IsUserInGroup implements UserGroupStore.
func (s *RedisUserGroups) IsUserInGroup(ctx context.Context, hub, user, group string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	exp, err := s.r.client.ZScore(ctx, s.keys(hub, user)[0], group).Result()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, storeErr("check", err)
	}
	return int64(exp) > time.Now().UnixMilli(), nil
}

// UserGroups implements UserGroupStore.
func (s *RedisUserGroups) UserGroups(ctx context.Context, hub, user string) ([]UserGroup, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	k := s.keys(hub, user)
	var all *redis.ZSliceCmd
	var noTTL *redis.StringSliceCmd
	_, err := s.r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.ZRangeByScoreWithScores(ctx, k[0], &redis.ZRangeBy{Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf"})
		noTTL = p.ZRange(ctx, k[1], 0, -1)
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, storeErr("list", err)
	}
	plain := make(map[string]bool, len(noTTL.Val()))
	for _, g := range noTTL.Val() {
		plain[g] = true
	}
	out := make([]UserGroup, 0, len(all.Val()))
	for _, z := range all.Val() {
		g, _ := z.Member.(string)
		out = append(out, UserGroup{Group: g, Expiry: time.UnixMilli(int64(z.Score)), TTL: !plain[g]})
	}
	slices.SortFunc(out, func(a, b UserGroup) int { return strings.Compare(a.Group, b.Group) })
	return out, nil
}
