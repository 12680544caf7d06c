package backplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestFleetCommandRoundTrip(t *testing.T) {
	for _, c := range []Command{
		{Op: CmdClose, Kind: All, Excluded: []string{"a", "b"}, Reason: "bye"},
		{Op: CmdUserJoin, Kind: User, Name: "alice", Group: "g", Expiry: 1_800_000_000_000, ID: 7, From: "node-1"},
		{Op: CmdListGroup, Kind: Group, Name: "g", After: "c9", Max: 200, ID: -1, From: "n"},
	} {
		b := appendFleetCommand(nil, &c)
		var got Command
		if err := readFleetCommand(b, &got); err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if got.Excluded == nil {
			got.Excluded = []string{}
		}
		want := c
		if want.Excluded == nil {
			want.Excluded = []string{}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round trip: got %+v, want %+v", got, want)
		}
		for i := range b { // every truncation is an error, never a panic
			if err := readFleetCommand(b[:i], &got); !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("truncated at %d: %v", i, err)
			}
		}
	}
	rep := Reply{N: 2, Members: []Member{{"c1", "u1"}, {"c2", ""}}, More: true}
	b := appendReply(nil, 42, &rep)
	if id, err := wire.ReadAck(b); err != nil || id != 42 {
		t.Fatalf("a reply is not an ack to wire.ReadAck: %d %v", id, err)
	}
	got, err := readReply(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(rep) {
		t.Fatalf("reply round trip: %+v %v", got, err)
	}
	if got, err := readReply(wire.AppendAck(nil, 3)); err != nil || got.N != 0 {
		t.Fatalf("a plain ack as a reply: %+v %v", got, err)
	}
}

// cmdLog is a CommandHandler that records the commands it is given and
// answers with a fixed reply.
type cmdLog struct {
	mu    sync.Mutex
	got   []string
	reply func(c *Command) *Reply
}

func (l *cmdLog) handle(hub string, c *Command) *Reply {
	l.mu.Lock()
	l.got = append(l.got, fmt.Sprintf("%s %s %s %s %v %s", hub, c.Op, c.Name, c.Group, c.Excluded, c.Reason))
	l.mu.Unlock()
	if l.reply == nil {
		return nil
	}
	return l.reply(c)
}

func (l *cmdLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

func startFleetNode(t *testing.T, addr string, l *cmdLog, owned ...string) (*Redis, *recorder) {
	t.Helper()
	bp, err := NewRedis(RedisConfig{Addr: addr, Logger: testLogger(t), Hubs: map[string]string{"chat": "MyApp.Chat"}, AckTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bp.HandleCommands(l.handle)
	rec := newRecorder(owned...)
	if err := bp.Start(rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bp.Close() })
	if !bp.Ready() {
		t.Fatal("not ready")
	}
	return bp, rec
}

// TestRedisFleetCommands: a command reaches every node, this one
// included; replies come back from as many nodes as asked; a node that
// does not reply makes the call end at the ack time-out with what
// arrived (ErrIncomplete); Holders counts the nodes subscribed to a
// channel.
func TestRedisFleetCommands(t *testing.T) {
	srv := redistest.Start(t)
	la := &cmdLog{reply: func(c *Command) *Reply { return &Reply{N: 1, Members: []Member{{"a1", "alice"}}} }}
	lb := &cmdLog{reply: func(c *Command) *Reply {
		if c.Name == "quiet" {
			return nil
		}
		return &Reply{N: 2, Members: []Member{{"b1", ""}}, More: true}
	}}
	a, _ := startFleetNode(t, srv.Addr(), la)
	b, _ := startFleetNode(t, srv.Addr(), lb)
	ctx := context.Background()

	reps, err := a.Command(ctx, "chat", &Command{Op: CmdListGroup, Kind: Group, Name: "g", Max: 10}, 2)
	if err != nil || len(reps) != 2 {
		t.Fatalf("Command: %d replies, %v", len(reps), err)
	}
	n := reps[0].N + reps[1].N
	if n != 3 || !(reps[0].More || reps[1].More) {
		t.Fatalf("replies %+v", reps)
	}
	for _, l := range []*cmdLog{la, lb} {
		if got := l.list(); len(got) != 1 || got[0] != "chat list_group g  [] " {
			t.Fatalf("handler saw %q", got)
		}
	}

	start := time.Now()
	reps, err = a.Command(ctx, "chat", &Command{Op: CmdClose, Kind: User, Name: "quiet", Excluded: []string{"x"}, Reason: "r"}, 2)
	if !errors.Is(err, ErrIncomplete) || len(reps) != 1 || reps[0].N != 1 {
		t.Fatalf("a node that does not reply: %+v, %v", reps, err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("returned before the ack time-out")
	}
	testutil.WaitUntil(t, 5*time.Second, "node b to see the close", func() bool {
		return slices.Contains(lb.list(), "chat close quiet  [x] r")
	})

	// want 0: sent, not waited for.
	if reps, err := b.Command(ctx, "chat", &Command{Op: CmdUserLeave, Kind: User, Name: "u"}, 0); err != nil || len(reps) != 0 {
		t.Fatalf("want 0: %+v %v", reps, err)
	}
	testutil.WaitUntil(t, 5*time.Second, "both nodes to see the leave", func() bool {
		return slices.Contains(la.list(), "chat user_leave u  [] ") && slices.Contains(lb.list(), "chat user_leave u  [] ")
	})

	// Holders: the nodes subscribed to a user's channel.
	a.Subscribe("chat", User, "alice")
	b.Subscribe("chat", User, "alice")
	b.Subscribe("chat", User, "bob")
	settle(t, a)
	settle(t, b)
	for user, want := range map[string]int{"alice": 2, "bob": 1, "carol": 0} {
		if got, err := a.Holders(ctx, "chat", User, user); err != nil || got != want {
			t.Errorf("Holders(%s) = %d, %v; want %d", user, got, err, want)
		}
	}
	if m, err := a.sc.PubSubNumSub(ctx, "MyApp.Chat:internal:edgeplane").Result(); err != nil || m["MyApp.Chat:internal:edgeplane"] != 2 {
		t.Fatalf("NUMSUB of the fleet channel (under the hub's prefix): %v %v", m, err)
	}
}

// TestRedisFleetReplyAwaitsGroup: a reply that names a group the node
// joined is sent only once the node's subscription to the group is
// confirmed, so a send after the command reaches the new members.
func TestRedisFleetReplyAwaitsGroup(t *testing.T) {
	srv := redistest.Start(t)
	var b *Redis
	lb := &cmdLog{reply: func(c *Command) *Reply {
		b.Subscribe("chat", Group, c.Group) // as fanout does when a connection joins
		return &Reply{N: 1, AwaitGroup: c.Group}
	}}
	a, _ := startFleetNode(t, srv.Addr(), &cmdLog{})
	b, rb := startFleetNode(t, srv.Addr(), lb)
	for i := range 20 {
		g := fmt.Sprintf("g%d", i)
		reps, err := a.Command(context.Background(), "chat", &Command{Op: CmdUserJoin, Kind: User, Name: "u", Group: g}, 1)
		if err != nil || len(reps) != 1 {
			t.Fatalf("join %s: %+v %v", g, reps, err)
		}
		publish(t, a, &Message{Hub: "chat", Kind: Group, Name: g, Payload: rec("to-" + g)})
	}
	fence(t, a, rb)
	for i := range 20 {
		if !rb.has(string(rec(fmt.Sprintf("to-g%d", i)))) {
			t.Errorf("the send to g%d after the join's reply did not reach node b", i)
		}
	}
}

func TestMemoryFleet(t *testing.T) {
	m := NewMemory()
	l := &cmdLog{reply: func(c *Command) *Reply { return &Reply{N: 3} }}
	m.HandleCommands(l.handle)
	if err := m.Start(newRecorder()); err != nil {
		t.Fatal(err)
	}
	reps, err := m.Command(context.Background(), "chat", &Command{Op: CmdClose, Kind: All, Reason: "x"}, 0)
	if err != nil || len(reps) != 1 || reps[0].N != 3 {
		t.Fatalf("Memory.Command: %+v %v", reps, err)
	}
	if n, err := m.Holders(context.Background(), "chat", User, "u"); n != 0 || err != nil {
		t.Fatalf("Memory.Holders: %d %v", n, err)
	}
	m.Close()
	if _, err := m.Command(context.Background(), "chat", &Command{Op: CmdClose}, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// FuzzFleetCommand: what another node (or anything that can publish on
// P:internal:edgeplane) sends never panics the receive path or makes it
// allocate beyond the payload; what decodes re-encodes to the same
// command.
func FuzzFleetCommand(f *testing.F) {
	f.Add(appendFleetCommand(nil, &Command{Op: CmdClose, Kind: All, Excluded: []string{"a"}, Reason: "r"}))
	f.Add(appendFleetCommand(nil, &Command{Op: CmdListGroup, Kind: Group, Name: "g", After: "x", Max: 3, ID: 9, From: "n"}))
	f.Add(appendReply(nil, 4, &Reply{N: 1, Members: []Member{{"c", "u"}}, More: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		readReply(b)
		var c Command
		if readFleetCommand(b, &c) != nil {
			return
		}
		var again Command
		if err := readFleetCommand(appendFleetCommand(nil, &c), &again); err != nil || fmt.Sprint(again) != fmt.Sprint(c) {
			t.Fatalf("%+v re-encoded to %+v (%v)", c, again, err)
		}
	})
}
