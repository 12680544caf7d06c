package service_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/sdkfake"
	"github.com/edgeplane/edgeplane/service"
)

// MessagePack clients in service mode: the same client type as the JSON
// tests' (records kept as JSON-like maps so wait and messages work), fed
// by a reader that decodes binary frames of MessagePack records and keeps
// each record's bytes, to compare them with what the app wrote.

// mpRaw keeps the MessagePack records a client received, per client.
type mpRaw struct {
	mu   sync.Mutex
	recs map[*client][][]byte
	text map[*client]int // text frames received after the handshake
}

var mpSeen = &mpRaw{recs: map[*client][][]byte{}, text: map[*client]int{}}

func (r *mpRaw) raw(c *client) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs[c])
}

func (r *mpRaw) texts(c *client) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text[c]
}

// connectMP connects a MessagePack client of hub through the app's
// negotiate at base, as user.
func connectMP(t *testing.T, base, hub, user string) *client {
	t.Helper()
	u, tok, id := redirect(t, base, hub, user, nil)
	return dialMP(t, u, tok, id)
}

// dialMP opens the WebSocket and does the MessagePack handshake: the
// response, {} and 0x1e, must come in a binary frame, as ASP.NET Core
// writes it once the transfer format is binary.
func dialMP(t *testing.T, u, tok, id string) *client {
	t.Helper()
	ws := dialWS(t, u, tok)
	c := &client{t: t, ws: ws, id: id, done: make(chan struct{})}
	ws.WriteMessage(websocket.TextMessage, []byte(`{"protocol":"messagepack","version":1}`+"\x1e"))
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	op, hs, err := ws.ReadMessage()
	if err != nil || string(hs) != "{}\x1e" || op != websocket.BinaryMessage {
		ws.Close()
		t.Fatalf("handshake response %q (opcode %d), %v", hs, op, err)
	}
	ws.SetReadDeadline(time.Time{})
	t.Cleanup(func() { ws.Close(); <-c.done })
	go readMP(c)
	return c
}

func readMP(c *client) {
	defer close(c.done)
	for {
		op, msg, err := c.ws.ReadMessage()
		if err != nil {
			c.ended(err)
			return
		}
		if op != websocket.BinaryMessage {
			mpSeen.mu.Lock()
			mpSeen.text[c]++
			mpSeen.mu.Unlock()
			c.t.Errorf("client %s: a text frame %q", c.id, msg)
			continue
		}
		err = hubproto.MessagePack.Split(msg, func(rec []byte) error {
			m, err := mpRecord(rec)
			if err != nil {
				return err
			}
			mpSeen.mu.Lock()
			mpSeen.recs[c] = append(mpSeen.recs[c], slices.Clone(rec))
			mpSeen.mu.Unlock()
			c.mu.Lock()
			c.recs = append(c.recs, m)
			c.mu.Unlock()
			return nil
		})
		if err != nil {
			c.t.Errorf("client %s: bad MessagePack message % x: %v", c.id, msg, err)
		}
	}
}

// mpRecord decodes a MessagePack record into the map a JSON client's
// record would give: Invocation, Completion, Ping and Close.
func mpRecord(rec []byte) (map[string]any, error) {
	var a []any
	if err := msgpack.Unmarshal(rec, &a); err != nil || len(a) == 0 {
		return nil, fmt.Errorf("record % x: %v", rec, err)
	}
	typ, _ := strconv.Atoi(fmt.Sprint(a[0]))
	m := map[string]any{"type": float64(typ)}
	at := func(i int) any {
		if i < len(a) {
			return a[i]
		}
		return nil
	}
	asJSON := func(v any) any { // numbers as a JSON decoder reads them
		b, _ := json.Marshal(v)
		var x any
		json.Unmarshal(b, &x)
		return x
	}
	switch typ {
	case 1: // [1, headers, invocationId, target, arguments, streamIds]
		if id, ok := at(2).(string); ok {
			m["invocationId"] = id
		}
		m["target"] = at(3)
		m["arguments"] = asJSON(at(4))
	case 3: // [3, headers, invocationId, kind, result|error]
		m["invocationId"] = at(2)
		switch fmt.Sprint(at(3)) {
		case "1":
			m["error"] = at(4)
		case "3":
			m["result"] = asJSON(at(4))
		}
	case 7: // [7, error, allowReconnect]
		m["error"] = at(1)
		m["allowReconnect"] = at(2)
	}
	return m, nil
}

// invokeMP calls a hub method from a MessagePack client and waits for its
// completion.
func invokeMP(c *client, target string, args ...any) map[string]any {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := fmt.Sprint(c.next)
	c.mu.Unlock()
	if args == nil {
		args = []any{}
	}
	js, _ := json.Marshal(args)
	mp, err := hubproto.JSONToMessagePack(nil, js)
	if err != nil {
		c.t.Fatal(err)
	}
	rec, err := hubproto.MessagePack.AppendInvocation(nil, id, target, mp)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.ws.WriteMessage(websocket.BinaryMessage, rec); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	return c.wait("completion "+id, func(m map[string]any) bool { return m["type"] == 3.0 && m["invocationId"] == id })
}

// mpInvocation is the MessagePack record the app writes for an
// invocation of target with the JSON arguments args.
func mpInvocation(t *testing.T, target, args string) []byte {
	t.Helper()
	mp, err := hubproto.JSONToMessagePack(nil, []byte(args))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := hubproto.MessagePack.AppendInvocation(nil, "", target, mp)
	if err != nil {
		t.Fatal(err)
	}
	_, k, _ := readVarInt(rec)
	return rec[k:]
}

func readVarInt(b []byte) (uint64, int, bool) {
	var v uint64
	for i := 0; i < len(b) && i < 5; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
	}
	return 0, 0, false
}

// counter reads one sample of the node's metrics (0 if absent).
func counter(t *testing.T, n *node.Node, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(metrics(t, n), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == name {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestMessagePackClients: MessagePack clients, redirected by the app's
// negotiate, beside JSON clients in the same hub and group. A hub
// method's result comes back in MessagePack (the app sees the protocol
// in OpenConnection); Clients.All, Others, Caller, Group, User and Client
// reach exactly the clients they name, each in its own protocol, in
// binary frames only; a MessagePack client gets the bytes the app
// serialized for MessagePack, and nothing was converted by the node
// (Caller and Client of a hosted MessagePack client carry a messagepack
// payload only: the node converts that one to JSON for its JSON form,
// never the other way). On both backplanes: Redis carries the app's
// messagepack entry between nodes.
func TestMessagePackClients(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			cfg := node.Config{Hubs: []node.Hub{{Name: "chathub"}}, Service: &service.Config{}, Conn: conn.Config{AccessKey: key}}
			if backend == "redis" {
				cfg.Redis = &backplane.RedisConfig{URL: redistest.Start(t).URL()}
			}
			n := nodetest.Start(t, cfg)
			s := newSeen()
			a, base := startApp(t, n, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(s)}})
			alice := connectMP(t, base, "ChatHub", "alice")
			bob := connect(t, base, "ChatHub", "bob")
			carol := connectMP(t, base, "ChatHub", "carol")
			alice2 := connect(t, base, "ChatHub", "alice")
			h := a.Hub("ChatHub")

			got := invokeMP(alice, "Echo", map[string]any{"n": 1, "s": []any{"x", true, nil}})
			if r, _ := json.Marshal(got["result"]); string(r) != `{"n":1,"s":["x",true,null]}` || got["error"] != nil {
				t.Fatalf("Echo: %v", got)
			}
			if who := invokeMP(alice, "Whoami")["result"].(map[string]any); who["user"] != "alice" || who["protocol"] != "messagepack" {
				t.Fatalf("the app saw %v", who)
			}
			if r := invokeMP(alice, "Join", "g")["result"]; r != true {
				t.Fatalf("Join acked %v", r)
			}
			if r := bob.invoke("Join", "g")["result"]; r != true {
				t.Fatalf("Join acked %v", r)
			}

			bob.invoke("ToAll", "1")
			invokeMP(alice, "ToOthers", "2")
			invokeMP(carol, "ToCaller", "3")
			invokeMP(carol, "ToGroup", "g", "4")
			if err := h.User("alice").Send("user", "5"); err != nil {
				t.Fatal(err)
			}
			if err := h.Client(carol.id).Send("client", "6"); err != nil { // hosted: messagepack only
				t.Fatal(err)
			}
			if err := h.Client(bob.id).Send("client", "7"); err != nil { // hosted: json only
				t.Fatal(err)
			}
			want := map[*client][]string{
				alice:  {"all", "group", "user"},
				bob:    {"all", "others", "group", "client"},
				carol:  {"all", "others", "caller", "client"},
				alice2: {"all", "others", "user"},
			}
			for c, targets := range want {
				for _, tg := range targets {
					c.wait(tg+" at "+c.id, func(m map[string]any) bool { return m["target"] == tg })
				}
			}
			if err := h.All().Send("marker"); err != nil {
				t.Fatal(err)
			}
			for c := range want {
				c.wait("marker", func(m map[string]any) bool { return m["target"] == "marker" })
			}
			names := map[*client]string{alice: "alice (mp)", bob: "bob (json)", carol: "carol (mp)", alice2: "alice2 (json)"}
			args := map[string]any{"all": "1", "others": "2", "caller": "3", "group": "4", "user": "5", "client": "6"}
			for c, targets := range want {
				for _, tg := range []string{"all", "others", "caller", "group", "user", "client"} {
					var w []any
					if slices.Contains(targets, tg) {
						a := args[tg]
						if c == bob && tg == "client" {
							a = "7"
						}
						w = []any{a}
					}
					if got := c.messages(tg); !slices.Equal(got, w) {
						t.Errorf("%s: %s messages %v, want %v", names[c], tg, got, w)
					}
				}
			}
			// The MessagePack clients got the app's own MessagePack bytes.
			for _, c := range []*client{alice, carol} {
				raws := mpSeen.raw(c)
				wantAll := mpInvocation(t, "all", `["1"]`)
				if !slices.ContainsFunc(raws, func(r []byte) bool { return string(r) == string(wantAll) }) {
					t.Errorf("%s: no record % x among % x", names[c], wantAll, raws)
				}
				if n := mpSeen.texts(c); n != 0 {
					t.Errorf("%s: %d text frames", names[c], n)
				}
			}
			if v := counter(t, n, "edgeplane_fanout_transcoded_total"); v != 0 {
				t.Errorf("fanout converted %v MessagePack frames from JSON, want 0: the app's bytes are used", v)
			}
			if v := counter(t, n, `edgeplane_fanout_encodes_total{protocol="messagepack"}`); v == 0 {
				t.Errorf("no MessagePack frame was built by fanout")
			}
			for _, reason := range []string{"no_payload", "no_json_form"} {
				if v := counter(t, n, `edgeplane_service_dropped_total{reason="`+reason+`"}`); v != 0 {
					t.Errorf("dropped %s: %v", reason, v)
				}
			}
		})
	}
}

// TestMessagePackFleet: the app's messages reach a MessagePack client on
// another node of a Redis fleet (a /{hub} client, not relayed) with the
// bytes the app serialized, carried in the backplane's messagepack entry.
func TestMessagePackFleet(t *testing.T) {
	a, b := startMixedFleet(t)
	app, _ := startApp(t, a, sdkfake.Config{Hubs: []*sdkfake.Hub{chatHub(newSeen())}})

	u, tok, id := negotiateDirect(t, b, "chathub", "yolanda")
	y := dialMP(t, u, tok, id)

	if err := app.Hub("ChatHub").User("yolanda").Send("user", "3"); err != nil {
		t.Fatal(err)
	}
	y.wait("user on the other node", func(m map[string]any) bool { return m["target"] == "user" })
	if want := mpInvocation(t, "user", `["3"]`); !slices.ContainsFunc(mpSeen.raw(y), func(r []byte) bool { return string(r) == string(want) }) {
		t.Errorf("no record % x among % x", want, mpSeen.raw(y))
	}
	if v := counter(t, b, "edgeplane_fanout_transcoded_total"); v != 0 {
		t.Errorf("the other node converted %v MessagePack frames from JSON, want 0", v)
	}
}
