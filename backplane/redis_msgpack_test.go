package backplane

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// TestRedisPublishMessagePack: a message with its MessagePack records
// (a service-mode app's own serialization) is published with both
// entries, as an ASP.NET Core server with MessagePack writes them, and
// reaches every node's fanout with both; one without stays json only.
func TestRedisPublishMessagePack(t *testing.T) {
	srv := redistest.Start(t)
	a, ra := startNode(t, RedisConfig{URL: srv.URL()})
	_, rb := startNode(t, RedisConfig{URL: srv.URL()})
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	sub := raw.Subscribe(context.Background(), "chat:all")
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	js := rec("both")
	mp := []byte{0x0b, 0x95, 0x01, 0x80, 0xc0, 0xa4, 'S', 'e', 'n', 'd', 0x91, 0x01}
	publish(t, a, &Message{Hub: "chat", Kind: All, Excluded: []string{"x"}, Payload: js, MessagePack: mp})
	publish(t, a, &Message{Hub: "chat", Kind: All, Payload: rec("json-only")})

	m, err := sub.ReceiveMessage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := wire.AppendInvocationProtocols(nil, []string{"x"}, []string{"json", "messagepack"}, [][]byte{js, mp})
	if m.Payload != string(want) {
		t.Fatalf("on the wire % x, want % x", m.Payload, want)
	}
	for name, r := range map[string]*recorder{"publisher": ra, "other node": rb} {
		testutil.WaitUntil(t, 5*time.Second, name+" receiving both", func() bool { return r.has(string(rec("json-only"))) })
		got, n := r.find(string(js))
		if n != 1 || !bytes.Equal(got.MessagePack, mp) || len(got.Excluded) != 1 || got.Excluded[0] != "x" {
			t.Errorf("%s: got %d, %+v", name, n, got)
		}
		if got, _ := r.find(string(rec("json-only"))); got.MessagePack != nil {
			t.Errorf("%s: a json-only message carried messagepack % x", name, got.MessagePack)
		}
	}
}
