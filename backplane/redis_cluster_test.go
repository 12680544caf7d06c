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

// checkPlacement checks that every slot in use is placed on a subscriber
// that counts it, that no slot is placed that is not in use and no
// subscriber carries nothing, and returns the slots in use.
func checkPlacement(t *testing.T, bp *Redis) int {
	t.Helper()
	bp.mu.RLock()
	defer bp.mu.RUnlock()
	bp.subMu.Lock()
	defer bp.subMu.Unlock()
	use := map[uint16]int{}
	for ch := range bp.active {
		use[hashSlot(ch)]++
	}
	perAddr := map[string]int{}
	for slot, n := range use {
		if int(bp.slots.use[slot]) != n {
			t.Errorf("slot %d: use %d, active channels %d", slot, bp.slots.use[slot], n)
		}
		addr, ok := bp.slots.addr(slot)
		if !ok {
			t.Errorf("slot %d in use but not placed", slot)
			continue
		}
		perAddr[addr]++
	}
	for slot := range uint16(clusterSlots) {
		if _, placed := bp.slots.addr(slot); placed && use[slot] == 0 {
			t.Errorf("slot %d placed but not in use", slot)
		}
	}
	for addr, s := range bp.subs {
		if s.nslots != perAddr[addr] {
			t.Errorf("subscriber %s counts %d slots, carries %d", addr, s.nslots, perAddr[addr])
		}
	}
	for addr := range perAddr {
		if bp.subs[addr] == nil {
			t.Errorf("slots placed on %s, which has no subscriber", addr)
		}
	}
	return len(use)
}

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
	slotsBefore := checkPlacement(t, a)
	t.Logf("node A: %d subscription connections for %d slots in use", nsubs, slotsBefore)
	if nsubs > 3 {
		t.Errorf("%d subscription connections on a 3-master cluster, want ≤ 3 (one per master)", nsubs)
	}

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

	// Unsubscribing the last channel of a slot forgets the slot.
	for i := 0; i < groups; i += 2 {
		a.Unsubscribe("chat", Group, "g"+strconv.Itoa(i))
	}
	settle(t, a)
	if left := checkPlacement(t, a); left >= slotsBefore {
		t.Errorf("slots in use %d → %d after unsubscribing the groups", slotsBefore, left)
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
