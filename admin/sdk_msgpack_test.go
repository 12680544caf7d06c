package admin_test

import (
	"slices"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// unframed is a MessagePack entry's record without its VarInt length, as
// a client reads it.
func unframed(t *testing.T, entry string) string {
	t.Helper()
	var rec []byte
	if err := hubproto.MessagePack.Split([]byte(entry), func(r []byte) error { rec = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return string(rec)
}

// TestManagementSDKMessagePackFleet: a Management-SDK-shaped client
// sends MessagePack payload bodies (BinaryPayloadMessageContent) through
// either node of a two-node fleet on one Redis, to JSON and MessagePack
// clients on both nodes, connected on the hub's path or Azure's
// /client/?hub= endpoint. With both entries, every client gets its own
// protocol's bytes as the app serialized them (binary stays bin for
// MessagePack, base64 for JSON; a float stays a float), across the
// backplane too; an app with the MessagePack protocol only reaches the
// JSON clients converted, one with JSON only the MessagePack clients; a
// MessagePack-only body JSON cannot express is refused with 400.
func TestManagementSDKMessagePackFleet(t *testing.T) {
	n1, n2 := startSDKFleet(t)
	j1 := connectWith(t, n1, sdkKey, "ChatHub", "alice", "json", true)
	p1 := connectWith(t, n1, sdkKey, "ChatHub", "alice", "messagepack", false)
	j2 := connectWith(t, n2, sdkKey, "ChatHub", "bob", "json", false)
	p2 := connectWith(t, n2, sdkKey, "ChatHub", "bob", "messagepack", true)
	all := []*client{j1, p1, j2, p2}
	both := newMgmt(t, n1, sdkKey, "ChatHub", true)
	mpOnly := newMgmt(t, n2, sdkKey, "ChatHub", true)
	mpOnly.protocols = []string{"messagepack"}
	jsonOnly := newMgmt(t, n1, sdkKey, "ChatHub", true)
	jsonOnly.protocols = []string{"json"}
	testutil.WaitUntil(t, 10*time.Second, "the fleet to see every connection", func() bool {
		for _, c := range all {
			if st, _ := both.call("HEAD", "/connections/"+c.id, nil, nil, "Warning.Connection.NotExisted"); st != 200 {
				return false
			}
		}
		return true
	})

	// Both entries: each client its protocol's bytes, on both nodes.
	p := msg("both", []byte{1, 2}, 1.5, "s")
	entries := both.entries(p)
	both.SendAll(p)
	received(t, both, `both:["AQI=",1.5,"s"]`, all, all...)
	for _, c := range []*client{j1, j2} {
		if got := c.records("both"); !slices.Equal(got, []string{entries[0][1]}) {
			t.Errorf("JSON client %s got %q, want the json entry %q", c.id, got, entries[0][1])
		}
	}
	for _, c := range []*client{p1, p2} {
		if got, want := c.records("both"), unframed(t, entries[1][1]); !slices.Equal(got, []string{want}) {
			t.Errorf("MessagePack client %s got %q, want the messagepack entry %q", c.id, got, want)
		}
	}

	// MessagePack only, through the other node, to a user on each node.
	for _, user := range []string{"alice", "bob"} {
		p := msg("mp-"+user, []byte{3}, map[string]any{"k": "v"})
		mpOnly.SendUser(user, p)
		want := []*client{j1, p1}
		if user == "bob" {
			want = []*client{j2, p2}
		}
		received(t, both, "mp-"+user+`:["Aw==",{"k":"v"}]`, all, want...)
		if got, entry := want[1].records("mp-"+user), unframed(t, mpOnly.entries(p)[0][1]); !slices.Equal(got, []string{entry}) {
			t.Errorf("MessagePack client of %s got %q, want the entry %q", user, got, entry)
		}
	}

	// JSON only: the MessagePack clients get it converted.
	jsonOnly.SendAll(msg("json-only", 7, "x"))
	received(t, both, `json-only:[7,"x"]`, all, all...)

	// What JSON cannot express, with no json entry: refused.
	ext := newMgmt(t, n2, sdkKey, "ChatHub", true)
	ext.protocols = []string{"messagepack"}
	if st, err := ext.call("POST", "/:send", nil, msg("ext", &extension{}), ""); st != 400 || err == nil {
		t.Fatalf("an extension type with no json entry: %d %v, want 400", st, err)
	}
}

// extension is a MessagePack extension of a type JSON has no form for.
type extension struct{}

func (*extension) ExtensionType() int8            { return 5 }
func (*extension) Len() int                       { return 1 }
func (*extension) MarshalBinaryTo(b []byte) error { b[0] = 0; return nil }
func (*extension) UnmarshalBinary(b []byte) error { return nil }
