package backplane

import (
	"context"
	"time"
)

// TokenClaim is one connection id to be marked as connected, fleet-wide,
// until its connection token expires.
type TokenClaim struct {
	Hub     string
	ConnID  string
	Expires time.Time
}

// TokenClaimer makes connection-token reuse visible to the whole fleet:
// the first node to claim a connection id wins, every later claim of it
// (on any node) sees it taken, until the token has expired. The Redis
// backplane implements it (SET NX EXAT); Memory does not (one node: its
// own registry is the fleet).
type TokenClaimer interface {
	// ClaimTokens claims each connection id in one round trip. fresh[i]
	// reports whether claims[i] was new. An error means none was checked
	// (Redis unreachable, or slower than ctx); ErrUnavailable without a
	// round trip when the backplane already knows it cannot reach Redis.
	ClaimTokens(ctx context.Context, claims []TokenClaim) (fresh []bool, err error)
}

// TokenKeyAgreer lets the nodes of a fleet agree on the key that signs
// connection tokens when the operator gave none: the first proposal
// stored wins and every node adopts it. The Redis backplane implements it.
type TokenKeyAgreer interface {
	// AgreeTokenKey stores proposal as the fleet's token key unless one is
	// stored already, and returns the stored key.
	AgreeTokenKey(ctx context.Context, proposal string) (string, error)
}
