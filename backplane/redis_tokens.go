package backplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connection tokens, fleet-wide: the claims that make a token usable once
// on the whole fleet, and the token key the nodes agree on when the
// operator gave none. Both are plain Redis keys (not channels) under
// "edgeplane:".

const (
	// TokenKeyName is the Redis key holding the fleet's connection-token
	// key when no node was given one (--token-key or --access-key).
	TokenKeyName = "edgeplane:token-key"
	// MinTokenKeyLen is the shortest token key AgreeTokenKey accepts from
	// Redis (and proposes).
	MinTokenKeyLen = 32
	// claimSkew keeps a claim this much longer than its token lives, for
	// nodes whose clocks run behind Redis's.
	claimSkew = 10 * time.Second
)

// ErrBadTokenKey: the token key stored in Redis is not one a node would
// have written (too short). Delete it, or give the nodes --token-key.
var ErrBadTokenKey = errors.New("backplane: invalid token key in Redis")

// ClaimKey is the Redis key of a connection id's claim.
func ClaimKey(hub, connID string) string { return "edgeplane:conn:" + hub + ":" + connID }

// ClaimTokens implements TokenClaimer: one SET key server NX EXAT per
// claim, pipelined; the key lives until the token expires (plus a few
// seconds for clock skew). While the backplane is not ready it answers
// ErrUnavailable at once, without a round trip.
func (r *Redis) ClaimTokens(ctx context.Context, claims []TokenClaim) ([]bool, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	if !r.Ready() {
		return nil, fmt.Errorf("backplane: claim %d connection tokens: %w", len(claims), ErrUnavailable)
	}
	pipe := r.client.Pipeline()
	cmds := make([]*redis.StatusCmd, len(claims))
	for i, c := range claims {
		cmds[i] = pipe.SetArgs(ctx, ClaimKey(c.Hub, c.ConnID), r.name, redis.SetArgs{Mode: "NX", ExpireAt: c.Expires.Add(claimSkew)})
	}
	_, err := pipe.Exec(ctx)
	fresh := make([]bool, len(claims))
	for i, c := range cmds {
		switch e := c.Err(); {
		case e == nil:
			fresh[i] = true
		case errors.Is(e, redis.Nil): // NX: the key exists
		default:
			return nil, fmt.Errorf("backplane: claim %d connection tokens: %w", len(claims), e)
		}
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("backplane: claim %d connection tokens: %w", len(claims), err)
	}
	return fresh, nil
}

// AgreeTokenKey implements TokenKeyAgreer: SET edgeplane:token-key
// proposal NX, then GET. The key has no expiry; if it disappears (a Redis
// restart without persistence, a flush), the next node to agree stores its
// own key again and the others adopt it.
func (r *Redis) AgreeTokenKey(ctx context.Context, proposal string) (string, error) {
	if len(proposal) < MinTokenKeyLen {
		return "", fmt.Errorf("backplane: token key proposal of %d bytes, want at least %d", len(proposal), MinTokenKeyLen)
	}
	for attempt := 0; attempt < 3; attempt++ {
		if err := r.client.SetNX(ctx, TokenKeyName, proposal, 0).Err(); err != nil {
			return "", fmt.Errorf("backplane: store token key %s: %w", TokenKeyName, err)
		}
		key, err := r.client.Get(ctx, TokenKeyName).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // deleted between SET and GET: propose again
		case err != nil:
			return "", fmt.Errorf("backplane: read token key %s: %w", TokenKeyName, err)
		case len(key) < MinTokenKeyLen:
			return "", fmt.Errorf("%w: %s holds %d bytes, want at least %d (delete it, or give every node the same --token-key)",
				ErrBadTokenKey, TokenKeyName, len(key), MinTokenKeyLen)
		}
		return key, nil
	}
	return "", fmt.Errorf("backplane: token key %s keeps disappearing", TokenKeyName)
}
