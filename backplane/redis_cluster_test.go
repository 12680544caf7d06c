package backplane

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestRedisCluster: two nodes on a 3-master Redis Cluster with sharded
// pub/sub; broadcasts, group sends spread over slots, group commands.
func TestRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	a, ra := startNode(t, RedisConfig{ClusterAddrs: cl.Addrs(), AckTimeout: time.Second})
	b, rb := startNode(t, RedisConfig{ClusterAddrs: cl.Addrs()}, "conn-b")

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	defer cc.Close()
	ctx := context.Background()

	// Our slot function agrees with the servers'.
	for _, ch := range []string{"chat:all", "chat:group:g1", "chat:internal:ack:x", "{tag}x", "a{b}c{d}", "foo{}{bar}"} {
		want, err := cc.ClusterKeySlot(ctx, ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := hashSlot(ch); int64(got) != want {
			t.Errorf("hashSlot(%q) = %d, CLUSTER KEYSLOT = %d", ch, got, want)
		}
	}

	const groups = 20 // spread over slots, hence over the three masters
	for i := 0; i < groups; i++ {
		g := "g" + strconv.Itoa(i)
		if i%2 == 0 {
			a.Subscribe("chat", Group, g)
		} else {
			b.Subscribe("chat", Group, g)
		}
	}
	b.Subscribe("chat", Group, "g0") // on both
	settle(t, a)
	settle(t, b)
	a.subMu.Lock()
	nsubs := len(a.subs)
	a.subMu.Unlock()
	t.Logf("node A: %d subscription connections (one per slot in use)", nsubs)

	publish(t, a, &Message{Hub: "chat", Kind: All, Payload: rec("all"), Excluded: []string{"x"}})
	for i := 0; i < groups; i++ {
		publish(t, b, &Message{Hub: "chat", Kind: Group, Name: "g" + strconv.Itoa(i), Payload: rec(fmt.Sprint("g", i))})
	}
	// Sharded pub/sub keeps order only per slot: wait for each message.
	want := func(r *recorder, p string, n int) {
		t.Helper()
		testutil.WaitUntil(t, 5*time.Second, fmt.Sprintf("%s ×%d", p, n), func() bool { _, got := r.find(string(rec(p))); return got >= n })
	}
	want(ra, "all", 1)
	want(rb, "all", 1)
	for i := 0; i < groups; i++ {
		p := fmt.Sprint("g", i)
		if i%2 == 0 {
			want(ra, p, 1)
		} else {
			want(rb, p, 1)
		}
	}
	want(rb, "g0", 1)
	fence(t, a, ra, rb)
	for i := 0; i < groups; i++ {
		p := fmt.Sprint("g", i)
		_, na := ra.find(string(rec(p)))
		_, nb := rb.find(string(rec(p)))
		wa, wb := 0, 1
		if i%2 == 0 {
			wa, wb = 1, 0
		}
		if i == 0 {
			wb = 1
		}
		if na != wa || nb != wb {
			t.Errorf("group %s: A got %d, B got %d; want %d, %d", p, na, nb, wa, wb)
		}
	}
	if m, _ := ra.find(string(rec("all"))); len(m.Excluded) != 1 || m.Excluded[0] != "x" {
		t.Errorf("all: excluded %q", m.Excluded)
	}

	// Unsubscribing the last channel of a slot closes its connection.
	for i := 0; i < groups; i += 2 {
		a.Unsubscribe("chat", Group, "g"+strconv.Itoa(i))
	}
	settle(t, a)
	a.subMu.Lock()
	left := len(a.subs)
	a.subMu.Unlock()
	if left >= nsubs {
		t.Errorf("subscription connections %d → %d after unsubscribing the groups", nsubs, left)
	}
	publish(t, b, &Message{Hub: "chat", Kind: Group, Name: "g2", Payload: rec("g2-after")})
	fence(t, b, ra, rb)
	if ra.has(string(rec("g2-after"))) {
		t.Errorf("message for an unsubscribed group delivered")
	}
	if !a.Ready() || !b.Ready() {
		t.Errorf("not ready after unsubscribing")
	}

	// Group commands and acks over sharded channels.
	if err := a.RemoteGroup(ctx, "chat", GroupAdd, "room", "conn-b"); err != nil {
		t.Errorf("RemoteGroup over the cluster: %v", err)
	}
}
