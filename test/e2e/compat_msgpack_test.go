package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// canon is v (JSON) with object keys sorted and numbers as the decoder
// reads them: two clients that decoded the same values print the same.
func canon(t *testing.T, v json.RawMessage) string {
	t.Helper()
	var x any
	if err := json.Unmarshal(v, &x); err != nil {
		t.Fatalf("%s: %v", v, err)
	}
	b, _ := json.Marshal(x)
	return string(b)
}

// messages lists, in arrival order, the canonical arguments of every
// message with target a client received.
func (j *jsClients) messages(name, target string) []string {
	var out []string
	for _, e := range j.find(name, "message") {
		if e.Target == target {
			b, _ := json.Marshal(e.Args)
			out = append(out, canon(j.t, b))
		}
	}
	return out
}

// upTo waits until every named client has received a message whose
// arguments contain marker (target t) and returns what each received
// before it on target t.
func (j *jsClients) upTo(marker string, names ...string) map[string][]string {
	j.t.Helper()
	out := make(map[string][]string, len(names))
	testutil.WaitUntil(j.t, 15*time.Second, "marker "+marker, func() bool {
		for _, name := range names {
			got := j.messages(name, "t")
			i := slices.IndexFunc(got, func(s string) bool { return strings.Contains(s, `"`+marker+`"`) })
			if i < 0 {
				return false
			}
			out[name] = got[:i]
		}
		return true
	})
	return out
}

// TestCompatMessagePack: unmodified @microsoft/signalr clients, JSON and
// MessagePack (@microsoft/signalr-protocol-msgpack) side by side on one
// hub mapped at a path of several segments (reached in another case),
// get every send path (all, all-except, group, group-except, user,
// connection) with unequal argument types, each in the order sent and
// decoded to the same values whatever their protocol; their invocations
// reach the upstream app (examples/upstream, which reads JSON) and its
// answers and broadcasts come back in each client's protocol. A
// backplane message carrying a messagepack entry, as an ASP.NET Core
// server with MessagePack publishes it, gives MessagePack clients its
// binary as binary, which no JSON source (REST, upstream) can express;
// every MessagePack frame but that one was converted from JSON, once per
// message.
func TestCompatMessagePack(t *testing.T) {
	testutil.ForEachBackend(t, func(t *testing.T, backend string) {
		rs := redistest.Start(t)
		const key = "compat-msgpack-key-0123456789-abcdef"
		n := startNode(t, backend, "--redis", rs.URL(), "--hub", "chat=/hubs/chat", "--access-key", key, "--server-name", "node-mp")
		startApp(t, "--redis", rs.URL(), "--hub", "chat", "--group", "app")
		tok := func(user string) string {
			return clientToken(t, key, n, "hubs/chat", map[string]any{"nameid": user})
		}
		targets := []string{"t", "broadcast", "bin"}
		binArgs := map[string]any{"$bin": "AAEC/w=="}
		js := startJS(t, "http://"+n.client, []jsClientSpec{
			{Name: "ja", Hub: "Hubs/Chat", AccessToken: tok("alice"), Targets: targets,
				Invokes: []map[string]any{{"target": "Echo", "args": []any{map[string]any{"n": []any{1, 2.5, "x"}, "deep": map[string]any{"a": []any{nil, true}}}}}}},
			{Name: "jb", Hub: "hubs/chat", AccessToken: tok("bob"), Targets: targets},
			{Name: "mc", Hub: "hubs/CHAT", Protocol: "messagepack", AccessToken: tok("alice"), Targets: targets,
				Invokes: []map[string]any{
					{"target": "Echo", "args": []any{map[string]any{"n": []any{1, 2.5, "x"}, "deep": map[string]any{"a": []any{nil, true}}}}},
					{"target": "Echo", "args": []any{binArgs}},
					{"target": "Echo", "args": []any{map[string]any{"$date": "2024-05-06T07:08:09.123Z"}}},
					{"target": "Nope", "args": []any{}},
				}},
			{Name: "md", Hub: "hubs/chat", Protocol: "messagepack", AccessToken: tok("bob"), Targets: targets},
			{Name: "me", Hub: "hubs/chat", Protocol: "messagepack", SkipNegotiation: true, AccessToken: tok("carol"), Targets: targets},
		})
		// Invocations to the upstream and their completions, per protocol.
		echo := func(name string, i int) string {
			t.Helper()
			var ok []jsEvent
			for _, e := range js.find(name, "invokeOk") {
				if e.Target == "Echo" {
					ok = append(ok, e)
				}
			}
			if len(ok) <= i || len(ok[i].Args) != 1 {
				t.Fatalf("client %s: Echo answers %+v, errors %+v", name, ok, js.find(name, "invokeError"))
			}
			return canon(t, ok[i].Args[0])
		}
		obj := `{"deep":{"a":[null,true]},"n":[1,2.5,"x"]}`
		if got := echo("ja", 0); got != obj {
			t.Errorf("JSON client: Echo gave %s, want %s", got, obj)
		}
		if got := echo("mc", 0); got != obj {
			t.Errorf("MessagePack client: Echo gave %s, want %s", got, obj)
		}
		// The upstream reads JSON: binary went as base64, a timestamp as
		// an RFC 3339 string, and that is what comes back.
		if got := echo("mc", 1); got != `"AAEC/w=="` {
			t.Errorf("MessagePack client: Echo(binary) gave %s, want the base64 string", got)
		}
		if got := echo("mc", 2); got != `"2024-05-06T07:08:09.123Z"` {
			t.Errorf("MessagePack client: Echo(date) gave %s, want the RFC 3339 string", got)
		}
		if e := js.find("mc", "invokeError"); len(e) != 1 || !strings.Contains(*e[0].Error, "unknown method Nope") {
			t.Errorf("MessagePack client: invoke errors %+v", e)
		}

		ids := map[string]string{}
		for _, name := range []string{"ja", "jb", "mc", "md"} {
			ids[name] = js.connID(name)
		}
		// (me connected with skipNegotiation: the client does not know
		// its connection id, so users and everyone reach it.)
		for _, c := range []string{"ja", "mc", "md"} {
			if code, body := n.restAPI("PUT", "/api/hubs/chat/groups/g1/connections/"+ids[c], "", key); code != 200 {
				t.Fatalf("add %s to g1: %d %s", c, code, body)
			}
		}
		// Unequal argument types: strings, integers, a float, a negative,
		// nested maps and arrays, null, booleans, a large integer.
		args := `,1,1.5,-7,12345678901,{"k":[true,null,"s"],"m":{"x":0.25}},[],null`
		sends := []struct{ path, msg string }{
			{"/api/hubs/chat/:send", "all"},
			{"/api/hubs/chat/:send?excluded=" + ids["ja"] + "," + ids["mc"], "all-except"},
			{"/api/hubs/chat/groups/g1/:send", "group"},
			{"/api/hubs/chat/groups/g1/:send?excluded=" + ids["md"], "group-except"},
			{"/api/hubs/chat/users/alice/:send", "user-alice"},
			{"/api/hubs/chat/users/bob/:send", "user-bob"},
			{"/api/hubs/chat/users/carol/:send", "user-carol"},
			{"/api/hubs/chat/connections/" + ids["md"] + "/:send", "conn-md"},
			{"/api/hubs/chat/connections/" + ids["ja"] + "/:send", "conn-ja"},
		}
		for round := 0; round < 3; round++ { // three of each, interleaved: order is checked
			for _, s := range sends {
				body := fmt.Sprintf(`{"target":"t","arguments":["%s-%d"%s]}`, s.msg, round, args)
				if code, b := n.restAPI("POST", s.path, body, key); code != 202 {
					t.Fatalf("POST %s: %d %s", s.path, code, b)
				}
			}
		}
		if code, b := n.restAPI("POST", "/api/hubs/chat/:send", `{"target":"t","arguments":["fence"]}`, key); code != 202 {
			t.Fatalf("fence: %d %s", code, b)
		}
		want := map[string][]string{
			"ja": {"all", "group", "group-except", "user-alice", "conn-ja"},
			"jb": {"all", "all-except", "user-bob"},
			"mc": {"all", "group", "group-except", "user-alice"},
			"md": {"all", "all-except", "group", "user-bob", "conn-md"},
			"me": {"all", "all-except", "user-carol"},
		}
		for name, got := range js.upTo("fence", "ja", "jb", "mc", "md", "me") {
			var w []string
			for round := 0; round < 3; round++ {
				for _, s := range sends {
					if slices.Contains(want[name], s.msg) {
						w = append(w, canon(t, json.RawMessage(fmt.Sprintf(`["%s-%d"%s]`, s.msg, round, args))))
					}
				}
			}
			if !slices.Equal(got, w) {
				t.Errorf("client %s received\n%v\nwant\n%v", name, got, w)
			}
		}

		// Broadcasts through the upstream app: a MessagePack sender's and
		// a JSON sender's (sends, no answer), in order, to everyone.
		senders := startJS(t, "http://"+n.client, []jsClientSpec{
			{Name: "ms", Hub: "hubs/chat", Protocol: "messagepack", AccessToken: tok("dave"), Targets: targets,
				Sends: []map[string]any{{"target": "Broadcast", "args": []any{"from-mp", 3, map[string]any{"deep": []any{1.5, nil}}}}}},
		})
		testutil.WaitUntil(t, 15*time.Second, "the MessagePack broadcast", func() bool {
			for _, name := range []string{"ja", "jb", "mc", "md", "me"} {
				if len(js.messages(name, "broadcast")) < 1 {
					return false
				}
			}
			return len(senders.messages("ms", "broadcast")) == 1
		})
		for _, name := range []string{"ja", "jb", "mc", "md", "me"} {
			if got := js.messages(name, "broadcast"); !slices.Equal(got, []string{`["from-mp",3,{"deep":[1.5,null]}]`}) {
				t.Errorf("client %s: broadcasts %v", name, got)
			}
		}

		// An ASP.NET Core server with MessagePack publishes both entries:
		// MessagePack clients get its bytes as they are (a binary
		// argument), JSON clients the json entry (ASP.NET writes byte[] as
		// base64 there).
		before := n.metric(`edgeplane_fanout_transcoded_total`)
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		defer rdb.Close()
		jsonRec := []byte(`{"type":1,"target":"bin","arguments":["AAEC/w=="]}` + "\x1e")
		mpBody := []byte{0x95, 0x01, 0x80, 0xc0, 0xa3, 'b', 'i', 'n', 0x91, 0xc4, 0x04, 0x00, 0x01, 0x02, 0xff}
		mpRec := append([]byte{byte(len(mpBody))}, mpBody...)
		payload := wire.AppendInvocationProtocols(nil, nil, []string{"json", "messagepack"}, [][]byte{jsonRec, mpRec})
		if err := rdb.Publish(context.Background(), "chat:all", payload).Err(); err != nil {
			t.Fatal(err)
		}
		testutil.WaitUntil(t, 10*time.Second, "the backplane message", func() bool {
			for _, name := range []string{"ja", "jb", "mc", "md", "me"} {
				if len(js.messages(name, "bin")) < 1 {
					return false
				}
			}
			return true
		})
		for name, want := range map[string]string{"ja": `["AAEC/w=="]`, "jb": `["AAEC/w=="]`, "mc": `[{"$bin":"AAEC/w=="}]`, "md": `[{"$bin":"AAEC/w=="}]`, "me": `[{"$bin":"AAEC/w=="}]`} {
			if got := js.messages(name, "bin"); !slices.Equal(got, []string{want}) {
				t.Errorf("client %s: %v, want %s", name, got, want)
			}
		}
		if after := n.metric(`edgeplane_fanout_transcoded_total`); after != before {
			t.Errorf("the backplane's messagepack entry was converted anyway (transcoded %v → %v)", before, after)
		}
		// Every MessagePack frame but that one was converted from JSON;
		// each was built once per message.
		mp, tr := n.metric(`edgeplane_fanout_encodes_total{protocol="messagepack"}`), n.metric(`edgeplane_fanout_transcoded_total`)
		if mp != tr+1 || mp > n.metric(`edgeplane_fanout_messages_total`) {
			t.Errorf("MessagePack encodes %v, conversions %v, messages %v: want encodes = conversions + 1 ≤ messages", mp, tr, n.metric(`edgeplane_fanout_messages_total`))
		}
		for _, e := range js.find("", "closed") {
			t.Errorf("client %s closed: %v", e.Name, e.Error)
		}
	})
}
