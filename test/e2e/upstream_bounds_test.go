package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestUpstreamOwnRedisAndBounds: --upstream-redis puts the upstream stream
// on its own Redis; --upstream-max-bytes keeps it within its bytes while a
// client sends the largest messages it may.
func TestUpstreamOwnRedisAndBounds(t *testing.T) {
	bp, upRedis := redistest.Start(t), redistest.Start(t)
	const budget = 512 << 10
	n := startNode(t, "epoll", "--redis", bp.URL(), "--upstream-redis", upRedis.URL(),
		"--upstream-max-bytes", "524288", "--max-message-rate", "-1")
	c := n.connect(t, "/chat")
	arg := strings.Repeat("x", 30<<10)
	for range 100 { // 100 × 30 KiB: 3 MB offered
		c.sendText(`{"type":1,"target":"Put","arguments":["` + arg + `"]}` + "\x1e")
	}
	rdb := redis.NewClient(&redis.Options{Addr: upRedis.Addr()})
	defer rdb.Close()
	testutil.WaitUntil(t, 15*time.Second, "101 events written", func() bool {
		return n.metric("edgeplane_backplane_upstream_sent_total") == 101 // connected + 100
	})
	used, err := rdb.MemoryUsage(context.Background(), "chat:upstream", 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	if used > budget+(40<<10) {
		t.Fatalf("upstream stream holds %d bytes, --upstream-max-bytes %d", used, budget)
	}
	bpc := redis.NewClient(&redis.Options{Addr: bp.Addr()})
	defer bpc.Close()
	if k, _ := bpc.Exists(context.Background(), "chat:upstream").Result(); k != 0 {
		t.Fatal("the upstream stream was written to the backplane's Redis")
	}
}
