package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/redistest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// streamsJS runs test/compat/streams.js: one unmodified @microsoft/signalr
// client.
type streamsJS struct {
	*nodeJS[map[string]json.RawMessage]
}

func startStreamsJS(t *testing.T, base, transport, protocol string) streamsJS {
	t.Helper()
	return streamsJS{startNodeJS[map[string]json.RawMessage](t, "streams.js", map[string]any{"base": base, "hub": "chat", "transport": transport, "protocol": protocol})}
}

// eventIs reports whether e is an event named ev.
func eventIs(e map[string]json.RawMessage, ev string) bool { return string(e["event"]) == `"`+ev+`"` }

// event waits for the first event named ev and returns its fields; an
// error event before it fails the test.
func (j streamsJS) event(ev string) map[string]json.RawMessage {
	j.t.Helper()
	e := j.first(30*time.Second, "event "+ev, func(e map[string]json.RawMessage) bool { return eventIs(e, ev) || eventIs(e, "error") })
	if !eventIs(e, ev) {
		j.t.Fatalf("streams.js: %s", e["error"])
	}
	return e
}

func (j streamsJS) count(ev string) int {
	return len(j.find(func(e map[string]json.RawMessage) bool { return eventIs(e, ev) }))
}

// TestCompatStreams: an unmodified @microsoft/signalr client on each
// transport with each protocol it carries (WebSockets: JSON, MessagePack;
// Server-Sent Events: JSON; Long Polling: JSON, MessagePack), against a
// node whose upstream is examples/upstream (a real app on the Redis
// stream): invoke with a result; a send (no answer) whose broadcast the
// app sends back to the client; a server-to-client stream whose items
// and completion arrive in order; a stream of an unknown method fails
// with the app's error; a stream the client disposes of reaches the app
// as a cancel (the app says so to the client); an upload stream (Subject
// argument) whose items and completion reach the app, which answers the
// sum. Client results: REST :invoke answers the client's result, its
// error (400), and when the client disconnects with the result pending,
// "Connection disconnected."; an ASP.NET Core-format invocation published
// raw to Redis with an invocation id and a return channel gets the
// client's Completion on that channel as [protocol, bytes].
func TestCompatStreams(t *testing.T) {
	rs := redistest.Start(t)
	n := startNode(t, "epoll", "--redis", rs.URL(), "--hub", "chat", "--server-name", "node-streams")
	startApp(t, "--redis", rs.URL(), "--hub", "chat", "--group", "app")
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(rs.URL(), "redis://")})
	t.Cleanup(func() { rdb.Close() })
	for _, tc := range []struct{ transport, proto, class string }{
		{"websockets", "json", "WebSocketTransport"},
		{"websockets", "messagepack", "WebSocketTransport"},
		{"sse", "json", "ServerSentEventsTransport"},
		{"longpolling", "json", "LongPollingTransport"},
		{"longpolling", "messagepack", "LongPollingTransport"},
	} {
		proto := tc.proto
		t.Run(tc.transport+"/"+proto, func(t *testing.T) {
			js := startStreamsJS(t, "http://"+n.client, tc.transport, proto)
			var id, class string
			json.Unmarshal(js.event("connected")["connectionId"], &id)
			json.Unmarshal(js.event("connected")["transport"], &class)
			if class != tc.class {
				t.Fatalf("the client runs on %q, want %s", class, tc.class)
			}
			if got := string(js.event("echo")["result"]); got != `{"a":[1,"x"]}` {
				t.Errorf("Echo: %s", got)
			}
			if s := js.event("send"); string(s["args"]) != `["sent",7]` {
				t.Errorf("send Broadcast(\"sent\", 7): broadcast back %s, error %s", s["args"], s["error"])
			}
			s := js.event("stream")
			if string(s["items"]) != "[0,1,2]" || string(s["error"]) != "null" {
				t.Errorf("stream Counter(3): items %s, error %s", s["items"], s["error"])
			}
			if e := js.event("streamError"); !strings.Contains(string(e["error"]), "unknown streaming method Nope") {
				t.Errorf("stream of an unknown method: %s", e["error"])
			}
			c := js.event("cancelled")
			if string(c["items"]) != "[0,1]" || string(c["id"]) == "null" {
				t.Errorf("cancelled stream: items %s, the app's streamCancelled id %s", c["items"], c["id"])
			}
			if u := js.event("upload"); string(u["result"]) != "6.5" {
				t.Errorf("upload stream Sum(1, 2.5, 3): %s %s", u["result"], u["error"])
			}
			js.event("ready")

			// Client results through the REST API.
			code, body := n.api("POST", "/api/hubs/chat/connections/"+id+"/:invoke", `{"target":"double","arguments":[21]}`, "")
			if code != 200 || !strings.Contains(body, `"result":42`) || !strings.Contains(body, `"protocol":"`+proto+`"`) {
				t.Errorf(":invoke double(21): %d %s", code, body)
			}
			code, body = n.api("POST", "/api/hubs/chat/connections/"+id+"/:invoke", `{"target":"fail","arguments":[]}`, "")
			if code != 400 || !strings.Contains(body, "no can do") {
				t.Errorf(":invoke fail(): %d %s", code, body)
			}

			// Client results from an ASP.NET Core server over Redis.
			ret := "chat:internal:return:aspnet-" + tc.transport + "-" + proto
			sub := rdb.Subscribe(context.Background(), ret)
			defer sub.Close()
			if _, err := sub.Receive(context.Background()); err != nil {
				t.Fatal(err)
			}
			rec := []byte("{\"type\":1,\"invocationId\":\"asp-1\",\"target\":\"double\",\"arguments\":[4.5]}\x1e")
			if err := rdb.Publish(context.Background(), "chat:connection:"+id, wire.AppendInvocationReturn(nil, nil, rec, "asp-1", ret)).Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case msg := <-sub.Channel():
				p, comp, err := wire.ReadCompletion([]byte(msg.Payload))
				if err != nil || p != proto {
					t.Fatalf("return channel: protocol %q, %v", p, err)
				}
				hp := hubproto.Lookup(p)
				var m hubproto.Message
				if err := hp.Split(comp, func(r []byte) error { m, err = hp.Parse(r); return err }); err != nil {
					t.Fatalf("completion % x: %v", comp, err)
				}
				res := m.Arguments
				if hp.Binary() {
					res, _ = hubproto.MessagePackToJSON(nil, res)
				}
				if m.Type != hubproto.TypeCompletion || m.InvocationID != "asp-1" || string(res) != "9" {
					t.Errorf("completion on the return channel: %+v result %s", m, res)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no completion on the return channel")
			}

			// A result pending when the client goes: an error Completion.
			type answer struct {
				code int
				body string
			}
			hung := make(chan answer, 1)
			go func() {
				code, body := n.api("POST", "/api/hubs/chat/connections/"+id+"/:invoke", `{"target":"hang","arguments":[]}`, "")
				hung <- answer{code, body}
			}()
			testutil.WaitUntil(t, 10*time.Second, "the client got hang", func() bool { return js.count("invoked") >= 4 })
			js.writeLine("stop")
			select {
			case a := <-hung:
				if a.code != 400 || !strings.Contains(a.body, "Connection disconnected.") {
					t.Errorf(":invoke hang() when the client left: %d %s", a.code, a.body)
				}
			case <-time.After(15 * time.Second):
				t.Fatal(":invoke hang() did not end when the client left")
			}
		})
	}
}
