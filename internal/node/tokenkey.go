package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Token-key agreement: a fleet on one Redis whose nodes were given neither
// --token-key nor --access-key agrees on a connection-token key by itself,
// so that negotiate on one node and connect on another work. Each node
// proposes a random key (backplane.TokenKeyAgreer: SET NX, then GET); the
// key stored first wins and every node signs with it. The check repeats
// (every tokenKeyInterval, every second until the first agreement): after
// a Redis restart without persistence the first node to check stores its
// key again and the others adopt it; tokens signed with a node's previous
// key stay valid on that node until they expire.

var (
	tokenKeyInterval = 5 * time.Second
	tokenKeyRetry    = time.Second
	tokenKeyTimeout  = 2 * time.Second
)

// tokenKeys runs the agreement for a node.
type tokenKeys struct {
	agreer backplane.TokenKeyAgreer
	ready  func() bool
	srv    *conn.Server
	log    *slog.Logger
	key    string // signing with it; the loop's only after start
	agreed atomic.Bool
	bad    bool // last check found an invalid stored key (logged once)

	changes    *metrics.Counter
	stop, done chan struct{}
}

// newTokenKey returns a random key for a node to propose.
func newTokenKey() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

func newTokenKeys(agreer backplane.TokenKeyAgreer, ready func() bool, srv *conn.Server, proposal string, log *slog.Logger) *tokenKeys {
	return &tokenKeys{agreer: agreer, ready: ready, srv: srv, key: proposal, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
}

// metrics declares the agreement's metrics on a set of their own.
func (k *tokenKeys) metrics() *metricset.Set {
	set := metricset.New()
	set.Gauge("edgeplane_token_key_agreed",
		"1 when the last check found this node signing connection tokens with the key its fleet agreed on in Redis (no --token-key or --access-key given); 0 until then or when Redis holds an invalid key.",
		func() float64 {
			if k.agreed.Load() {
				return 1
			}
			return 0
		})
	k.changes = set.Counter("edgeplane_token_key_changes_total",
		"Times this node, having agreed on a connection-token key, found another in Redis and adopted it (after a Redis restart or flush).")
	return set
}

// check agrees once. An invalid key in Redis is returned as an error;
// Redis unreachable is not (the loop retries).
func (k *tokenKeys) check() error {
	if !k.ready() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), tokenKeyTimeout)
	defer cancel()
	key, err := k.agreer.AgreeTokenKey(ctx, k.key)
	switch {
	case errors.Is(err, backplane.ErrBadTokenKey):
		k.agreed.Store(false)
		if !k.bad {
			k.log.Error("cannot agree on a connection-token key; tokens from other nodes may be refused", "err", err)
		}
		k.bad = true
		return err
	case err != nil:
		k.log.Debug("token key not checked", "err", err)
		return nil
	}
	k.bad = false
	if key != k.key {
		k.key = key
		k.srv.SetTokenKey(key)
		if k.agreed.Load() { // a change, not the first agreement
			k.changes.Inc()
			k.log.Warn("the fleet's connection-token key in Redis changed (Redis restarted or flushed?); adopted it", "redis_key", backplane.TokenKeyName)
		}
	}
	if !k.agreed.Swap(true) {
		k.log.Info("connection-token key agreed with the fleet", "redis_key", backplane.TokenKeyName)
	}
	return nil
}

func (k *tokenKeys) run() {
	defer close(k.done)
	for {
		d := tokenKeyInterval
		if !k.agreed.Load() {
			d = tokenKeyRetry
		}
		select {
		case <-k.stop:
			return
		case <-time.After(d):
		}
		_ = k.check()
	}
}

func (k *tokenKeys) close() {
	close(k.stop)
	<-k.done
}
