package backplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestRedisClaimTokens: the first claim of a connection id, from any node,
// is fresh; every later one is not, until the token's expiry (plus the
// skew margin), which is the key's expiry in Redis.
func TestRedisClaimTokens(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL()})
	b, _ := startNode(t, RedisConfig{URL: srv.URL()})
	var _ TokenClaimer = a
	ctx := context.Background()
	exp := time.Now().Add(time.Minute).Truncate(time.Second)
	fresh, err := a.ClaimTokens(ctx, []TokenClaim{{"chat", "id1", exp}, {"chat", "id2", exp}, {"chat", "id1", exp}})
	if err != nil {
		t.Fatalf("ClaimTokens: %v", err)
	}
	if want := []bool{true, true, false}; !equalBools(fresh, want) {
		t.Fatalf("claims on a = %v, want %v (the same id twice in one batch: only the first is fresh)", fresh, want)
	}
	// Another node sees them taken; another hub's same id is its own.
	fresh, err = b.ClaimTokens(ctx, []TokenClaim{{"chat", "id2", exp}, {"other", "id1", exp}, {"chat", "id3", exp}})
	if err != nil {
		t.Fatalf("ClaimTokens on b: %v", err)
	}
	if want := []bool{false, true, true}; !equalBools(fresh, want) {
		t.Fatalf("claims on b = %v, want %v", fresh, want)
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	at, err := client.ExpireTime(ctx, ClaimKey("chat", "id1")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := exp.Add(claimSkew).Unix(); int64(at/time.Second) != want {
		t.Fatalf("claim expires at %d, want the token's expiry + %v = %d", int64(at/time.Second), claimSkew, want)
	}
	if who, _ := client.Get(ctx, ClaimKey("chat", "id1")).Result(); who != a.ServerName() {
		t.Fatalf("claim holds %q, want the claiming node's name %q", who, a.ServerName())
	}
	// A claim whose expiry is over: Redis drops it, the id is free again
	// (its token no longer verifies anyway).
	past := time.Now().Add(-time.Hour)
	if fresh, err = a.ClaimTokens(ctx, []TokenClaim{{"chat", "old", past}}); err != nil || !fresh[0] {
		t.Fatalf("expired claim: %v %v", fresh, err)
	}
	if n, _ := client.Exists(ctx, ClaimKey("chat", "old")).Result(); n != 0 {
		t.Fatalf("an expired claim stayed in Redis")
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRedisClaimTokensUnavailable: Redis killed → ErrUnavailable without
// a round trip once the node knows; Redis paused → the caller's deadline.
func TestRedisClaimTokensUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL(), HealthInterval: 200 * time.Millisecond})
	claim := []TokenClaim{{"chat", "x", time.Now().Add(time.Minute)}}

	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := a.ClaimTokens(ctx, claim)
	cancel()
	_ = srv.Signal(syscall.SIGCONT)
	if err == nil {
		t.Fatal("claim against a paused Redis succeeded")
	}

	srv.Kill()
	testutil.WaitUntil(t, 5*time.Second, "backplane not ready", func() bool { return !a.Ready() })
	if _, err := a.ClaimTokens(context.Background(), claim); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim while down: %v, want ErrUnavailable", err)
	}
	_ = a.Close()
	if _, err := a.ClaimTokens(context.Background(), claim); !errors.Is(err, ErrClosed) {
		t.Fatalf("claim after Close: %v, want ErrClosed", err)
	}
}

// TestRedisAgreeTokenKey: the first proposal stored wins; the others get
// it back; a key that disappeared is stored again by the next proposal; an
// invalid stored key is a clear error, as is a short proposal.
func TestRedisAgreeTokenKey(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := startNode(t, RedisConfig{URL: srv.URL()})
	b, _ := startNode(t, RedisConfig{URL: srv.URL()})
	var _ TokenKeyAgreer = a
	ctx := context.Background()
	ka, kb := strings.Repeat("a", 64), strings.Repeat("b", 64)
	if got, err := a.AgreeTokenKey(ctx, ka); err != nil || got != ka {
		t.Fatalf("first proposal: %q %v, want it stored", got, err)
	}
	if got, err := b.AgreeTokenKey(ctx, kb); err != nil || got != ka {
		t.Fatalf("second proposal: %q %v, want the first", got, err)
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	if ttl, _ := client.TTL(ctx, TokenKeyName).Result(); ttl != -1 {
		t.Fatalf("token key TTL %v, want none", ttl)
	}
	client.Del(ctx, TokenKeyName) // a Redis restart without persistence, a flush
	if got, err := b.AgreeTokenKey(ctx, kb); err != nil || got != kb {
		t.Fatalf("after the key vanished: %q %v, want b's proposal", got, err)
	}
	client.Set(ctx, TokenKeyName, "short", 0)
	if _, err := a.AgreeTokenKey(ctx, ka); !errors.Is(err, ErrBadTokenKey) || !strings.Contains(err.Error(), TokenKeyName) {
		t.Fatalf("invalid stored key: %v, want ErrBadTokenKey naming %s", err, TokenKeyName)
	}
	if _, err := a.AgreeTokenKey(ctx, "short"); err == nil {
		t.Fatal("a short proposal was accepted")
	}
	srv.Kill()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := a.AgreeTokenKey(ctx, ka); err == nil || errors.Is(err, ErrBadTokenKey) {
		t.Fatalf("Redis down: %v, want a connection error", err)
	}
}

// BenchmarkRedisClaimTokens: fleet-wide token claims against a real
// redis-server, in batches as the connection server sends them (1: an
// upgrade alone; 256: a reconnect storm). Reports the Redis memory each
// live claim holds (INFO used_memory before and after, over every claim
// made, all still live).
func BenchmarkRedisClaimTokens(b *testing.B) {
	for _, batch := range []int{1, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			srv := redistest.Start(b)
			bp, err := NewRedis(RedisConfig{URL: srv.URL(), Hubs: map[string]string{"chat": ""}, Logger: slog.New(slog.NewTextHandler(ioDiscard{}, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer bp.Close()
			if err := bp.Start(&atomicReceiver{}); err != nil || !bp.Ready() {
				b.Fatalf("start: %v", err)
			}
			client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer client.Close()
			ctx := context.Background()
			used := func() int64 {
				info, err := client.InfoMap(ctx, "memory").Result()
				if err != nil {
					b.Fatal(err)
				}
				n, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
				return n
			}
			claims := make([]TokenClaim, batch)
			exp := time.Now().Add(time.Hour)
			before := used()
			b.ResetTimer()
			made := 0
			for i := 0; i < b.N; i += batch {
				for j := range claims {
					claims[j] = TokenClaim{Hub: "chat", ConnID: fmt.Sprintf("%022d", made), Expires: exp}
					made++
				}
				if _, err := bp.ClaimTokens(ctx, claims); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(made), "ns/claim")
			b.ReportMetric(float64(used()-before)/float64(made), "redis-B/claim")
		})
	}
}
