package webhook

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// unframed is a MessagePack record without its VarInt length.
func unframed(t *testing.T, framed []byte) []byte {
	t.Helper()
	rec, ok := oneRecord(framed)
	if !ok {
		t.Fatalf("%x is not one framed record", framed)
	}
	return rec
}

// TestWebhookMessagePackInvocations: a MessagePack client's invocation
// is posted as its own record, unframed, with Content-Type
// application/x-msgpack (binary arguments stay binary: no JSON on the
// way), and the answer comes back in MessagePack: the upstream's framed
// Completion as is, a MessagePack value as the result, an empty answer as
// an empty Completion, a Completion of another invocation, a body that is
// not MessagePack and another status as error Completions. Each answer's
// JSON form goes along.
func TestWebhookMessagePackInvocations(t *testing.T) {
	bin := []byte{0, 1, 2, 0xff}
	rc := newReceiver(t, testKey, func(r *http.Request, body []byte) (int, string) {
		if r.Header.Get("Content-Type") != "application/x-msgpack" {
			return 400, "not MessagePack"
		}
		m, err := hubproto.MessagePack.Parse(body)
		if err != nil || m.Type != hubproto.TypeInvocation || m.Target != r.Header.Get("X-ASRS-Event") {
			return 400, fmt.Sprintf("not an unframed Invocation: %v", err)
		}
		var first []byte
		if _, rest, err := msgp.ReadArrayHeaderBytes(m.Arguments); err == nil && len(rest) > 0 {
			if after, err := msgp.Skip(rest); err == nil {
				first = rest[:len(rest)-len(after)]
			}
		}
		switch m.Target {
		case "framed": // what the Functions extension writes: the first argument back
			rec, err := hubproto.MessagePack.AppendCompletion(nil, m.InvocationID, first)
			if err != nil {
				return 400, err.Error()
			}
			return 200, string(rec)
		case "value":
			return 200, string(msgp.AppendInt(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "n"), 42))
		case "empty":
			return 204, ""
		case "empty200":
			return 200, ""
		case "wrong":
			rec, _ := hubproto.MessagePack.AppendCompletion(nil, "someone-else", msgp.AppendInt(nil, 1))
			return 200, string(rec)
		case "json":
			return 200, `{"n":42}`
		case "fail":
			return 500, "boom"
		}
		return 200, ""
	})
	d := &delivered{}
	u := newUpstream(t, Config{Settings: []Setting{{URLTemplate: rc.srv.URL + "/{event}"}}, AccessKeys: []string{testKey}, Deliver: d.deliver})
	args := msgp.AppendString(msgp.AppendBytes(msgp.AppendArrayHeader(nil, 2), bin), "x")
	targets := []string{"framed", "value", "empty", "empty200", "wrong", "json", "fail"}
	var records [][]byte
	for i, target := range targets {
		inv, err := hubproto.MessagePack.AppendInvocation(nil, fmt.Sprint(i+1), target, args)
		if err != nil {
			t.Fatal(err)
		}
		rec := unframed(t, inv)
		records = append(records, slices.Clone(rec))
		e := &backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c", InvocationID: fmt.Sprint(i + 1),
			Target: target, Arguments: []byte(`["AAEC/w==","x"]`), Protocol: "messagepack", Record: rec}
		if err := u.Send(e); err != nil {
			t.Fatal(err)
		}
		clear(rec) // valid only during Send: the upstream keeps a copy
	}
	testutil.WaitUntil(t, 5*time.Second, "7 answers", func() bool { return len(d.list()) == len(targets) })
	for i, got := range rc.list() {
		if !got.signed || got.contentType != "application/x-msgpack" || got.body != string(records[i]) {
			t.Errorf("request %d: signed %v, %q, body %x, want the client's record %x", i, got.signed, got.contentType, got.body, records[i])
		}
	}
	mpCompletion := func(id string, result []byte) []byte {
		rec, err := hubproto.MessagePack.AppendCompletion(nil, id, result)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	wantMP := [][]byte{
		mpCompletion("1", msgp.AppendBytes(nil, bin)),
		mpCompletion("2", msgp.AppendInt(msgp.AppendString(msgp.AppendMapHeader(nil, 1), "n"), 42)),
		mpCompletion("3", nil),
		mpCompletion("4", nil),
		hubproto.MessagePack.AppendCompletionError(nil, "5", "Invocation failed: the upstream's answer is not a Completion of this invocation"),
		hubproto.MessagePack.AppendCompletionError(nil, "6", "Invocation failed: the upstream's answer is neither a MessagePack Completion of this invocation nor one MessagePack value"),
		hubproto.MessagePack.AppendCompletionError(nil, "7", "Invocation failed, status code 500"),
	}
	got := d.messagePack()
	for i := range wantMP {
		if !bytes.Equal(got[i], wantMP[i]) {
			m, err := hubproto.MessagePack.Parse(unframed(t, got[i]))
			t.Errorf("answer %d (%s): %x (%+v, %v), want %x", i, targets[i], got[i], m, err, wantMP[i])
		}
	}
	wantJSON := []string{
		`chat/c {"type":3,"invocationId":"1","result":"AAEC/w=="}` + "\x1e",
		`chat/c {"type":3,"invocationId":"2","result":{"n":42}}` + "\x1e",
		`chat/c {"type":3,"invocationId":"3"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"4"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"5","error":"Invocation failed: the upstream's answer is not a Completion of this invocation"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"6","error":"Invocation failed: the upstream's answer is neither a MessagePack Completion of this invocation nor one MessagePack value"}` + "\x1e",
		`chat/c {"type":3,"invocationId":"7","error":"Invocation failed, status code 500"}` + "\x1e",
	}
	if got := d.list(); !slices.Equal(got, wantJSON) {
		t.Errorf("JSON forms:\n%q\nwant\n%q", got, wantJSON)
	}
}

// TestWebhookMessagePackWithoutRecord: an event that says MessagePack but
// carries only the JSON arguments (a producer other than conn) is posted
// as the same invocation in MessagePack.
func TestWebhookMessagePackWithoutRecord(t *testing.T) {
	rc := newReceiver(t, testKey, nil)
	u := newUpstream(t, Config{Settings: []Setting{{URLTemplate: rc.srv.URL + "/{event}"}}})
	if err := u.Send(&backplane.Event{Kind: backplane.EventInvocation, Hub: "chat", ConnID: "c", Target: "note",
		Arguments: []byte(`["hi",1]`), Protocol: "messagepack"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, 5*time.Second, "the request", func() bool { return len(rc.list()) == 1 })
	got := rc.list()[0]
	want := unframed(t, must(hubproto.MessagePack.AppendInvocation(nil, "", "note", msgp.AppendInt(msgp.AppendString(msgp.AppendArrayHeader(nil, 2), "hi"), 1))))
	if got.contentType != "application/x-msgpack" || got.body != string(want) {
		t.Errorf("request %q %x, want application/x-msgpack %x", got.contentType, got.body, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
