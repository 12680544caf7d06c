package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// Sends: a PayloadMessage body becomes one Invocation, published through
// the backplane (every node delivers it to its own recipients).
//
// The body is JSON, {"target": …, "arguments": […]} (names in any case:
// the Management SDK writes Target and Arguments), or, as the Management
// SDK sends it with Content-Type application/octet-stream (or
// application/x-msgpack; BinaryPayloadMessageContent), a MessagePack map
// of hub-protocol name to the message serialized and framed in that
// protocol: "json" (the record with its 0x1e) and/or "messagepack" (the
// record behind its VarInt length), one entry per protocol the app has.
// Each recipient gets its protocol's entry as it is: fanout.Frames frames
// the json entry for JSON clients and the messagepack entry for
// MessagePack ones, and the backplane carries both to the other nodes. A
// body without a json entry has its messagepack entry converted to JSON
// once, here (hubproto.MessagePackToJSON: binary becomes base64, a
// timestamp RFC 3339 text), for the JSON clients; one that JSON cannot
// express (another extension type, a non-string map key that has no
// text) is refused with 400, since the node cannot know that no JSON
// client will get it. A body without a messagepack entry reaches
// MessagePack clients converted by fanout, as a JSON body does.

type sendBody struct {
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
}

// errBody is a body that cannot become an invocation, with the status to
// answer.
type errBody struct {
	status int
	msg    string
}

func (e *errBody) Error() string { return e.msg }

func invalidBody(format string, args ...any) *errBody {
	return &errBody{http.StatusBadRequest, "invalid body: " + fmt.Sprintf(format, args...)}
}

// sendMessage is a send's message: its JSON record (0x1e included) and,
// when the body carried one, its MessagePack record (behind its VarInt
// length).
type sendMessage struct {
	json, messagePack []byte
}

// readInvocation reads a send's body (at most maxBody bytes).
func readInvocation(w http.ResponseWriter, r *http.Request) (sendMessage, *errBody) {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == contentTypeOctetStream || mt == contentTypeXMessagePack {
		b, err := io.ReadAll(body)
		if err != nil {
			return sendMessage{}, bodyReadError(err)
		}
		return payloadMapInvocation(b)
	}
	var sb sendBody
	if err := json.NewDecoder(body).Decode(&sb); err != nil {
		return sendMessage{}, bodyReadError(err)
	}
	if sb.Target == "" {
		return sendMessage{}, invalidBody("target is required")
	}
	if len(sb.Arguments) > 0 && strings.TrimSpace(string(sb.Arguments))[0] != '[' {
		return sendMessage{}, invalidBody("arguments must be a JSON array")
	}
	rec, err := hubproto.JSON.AppendInvocation(nil, "", sb.Target, sb.Arguments)
	if err != nil {
		return sendMessage{}, invalidBody("%v", err)
	}
	return sendMessage{json: rec}, nil
}

func bodyReadError(err error) *errBody {
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		return &errBody{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", tooBig.Limit)}
	}
	return invalidBody("%v", err)
}

// payloadMapInvocation reads a MessagePack payload map ({protocol name:
// serialized message}): its json and messagepack entries, each one
// non-blocking Invocation record; the json one made from the messagepack
// one when the map has none. Entries of other protocols are ignored.
func payloadMapInvocation(b []byte) (sendMessage, *errBody) {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return sendMessage{}, invalidBody("a %s body is a MessagePack map of protocol name to serialized message: %v", contentTypeOctetStream, err)
	}
	var inv sendMessage
	var names []string
	for range n {
		var name, ser []byte
		if name, rest, err = readStrOrBin(rest); err != nil {
			return sendMessage{}, invalidBody("protocol name: %v", err)
		}
		if ser, rest, err = readStrOrBin(rest); err != nil {
			return sendMessage{}, invalidBody("message for protocol %q: %v", name, err)
		}
		names = append(names, string(name))
		switch {
		case strings.EqualFold(string(name), wire.ProtocolJSON):
			inv.json = ser
		case strings.EqualFold(string(name), wire.ProtocolMessagePack):
			inv.messagePack = ser
		}
	}
	if len(rest) != 0 {
		return sendMessage{}, invalidBody("%d bytes after the payload map", len(rest))
	}
	if inv.json == nil && inv.messagePack == nil {
		return sendMessage{}, invalidBody("the payload map has neither a \"json\" nor a \"messagepack\" entry (it has %q)", names)
	}
	var mp hubproto.Message
	if inv.messagePack != nil {
		recs := 0
		err := hubproto.MessagePack.Split(inv.messagePack, func(rec []byte) error {
			recs++
			var perr error
			mp, perr = hubproto.MessagePack.Parse(rec)
			return perr
		})
		if err == nil && recs != 1 {
			err = fmt.Errorf("%d records, want one", recs)
		}
		if err != nil {
			return sendMessage{}, invalidBody("the \"messagepack\" entry is not a MessagePack hub-protocol record behind its VarInt length: %v", err)
		}
		if bad := notInvocation(mp); bad != "" {
			return sendMessage{}, invalidBody("the \"messagepack\" entry is a %s, want a non-blocking Invocation", bad)
		}
		inv.messagePack = append([]byte(nil), inv.messagePack...)
	}
	if inv.json == nil {
		args := []byte("[]")
		if mp.Arguments != nil {
			if args, err = hubproto.MessagePackToJSON(nil, mp.Arguments); err != nil {
				return sendMessage{}, invalidBody("the payload map has no \"json\" entry and the \"messagepack\" entry's arguments cannot be converted to JSON for the JSON clients (%v): add the JSON hub protocol to the app", err)
			}
		}
		if inv.json, err = hubproto.JSON.AppendInvocation(nil, "", mp.Target, args); err != nil {
			return sendMessage{}, invalidBody("the \"messagepack\" entry as JSON: %v", err)
		}
		return inv, nil
	}
	rec := inv.json
	if len(rec) == 0 || rec[len(rec)-1] != 0x1e {
		return sendMessage{}, invalidBody("the \"json\" entry is not a JSON hub-protocol record ending in 0x1e")
	}
	m, err := hubproto.JSON.Parse(rec[:len(rec)-1])
	if err != nil {
		return sendMessage{}, invalidBody("the \"json\" entry: %v", err)
	}
	if bad := notInvocation(m); bad != "" {
		return sendMessage{}, invalidBody("the \"json\" entry is a %s, want a non-blocking Invocation", bad)
	}
	inv.json = append([]byte(nil), rec...)
	return inv, nil
}

// notInvocation says what m is when it is not a non-blocking Invocation
// ("" when it is one).
func notInvocation(m hubproto.Message) string {
	switch {
	case m.Type != hubproto.TypeInvocation:
		return m.Type.String()
	case m.InvocationID != "":
		return m.Type.String() + " with an invocation id"
	}
	return ""
}

func readStrOrBin(b []byte) ([]byte, []byte, error) {
	if msgp.NextType(b) == msgp.StrType {
		return msgp.ReadStringZC(b)
	}
	return msgp.ReadBytesZC(b)
}

func (h *Handler) send(kind backplane.Kind, nameVar string) restHandler {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		if !c.requireHub(w) {
			return
		}
		inv, bad := readInvocation(w, r)
		if bad != nil {
			apiError(w, bad.status, bad.msg)
			return
		}
		rec := inv.json
		// What every node's router would drop, refused here with the
		// reason: a record that is not UTF-8 would break every recipient's
		// connection, one larger than a connection's queue would reach no
		// one.
		if err := h.cfg.Router.Check(rec); err != nil {
			if errors.Is(err, fanout.ErrTooLarge) {
				apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
					"message too large: its frame would be %d bytes, a connection's outbound queue holds at most %d (--max-queue-bytes)",
					fanout.FrameSize(len(rec)), h.cfg.Router.MaxFrameBytes))
				return
			}
			apiError(w, http.StatusBadRequest, "invalid body: arguments are not valid UTF-8")
			return
		}
		if limit := h.cfg.Router.MaxFrameBytes; limit > 0 && inv.messagePack != nil && fanout.FrameSize(len(inv.messagePack)) > limit {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
				"message too large: its MessagePack frame would be %d bytes, a connection's outbound queue holds at most %d (--max-queue-bytes)",
				fanout.FrameSize(len(inv.messagePack)), limit))
			return
		}
		m := &backplane.Message{Hub: c.hub, Kind: kind, Payload: rec, MessagePack: inv.messagePack, Excluded: excluded(r)}
		if nameVar != "" {
			m.Name = r.PathValue(nameVar)
		}
		if err := h.cfg.Backplane.Publish(r.Context(), m); err != nil {
			apiError(w, backplaneStatus(err), "publish: "+err.Error())
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// backplaneStatus is the status of a backplane error: 503 while it cannot
// publish, 500 otherwise.
func backplaneStatus(err error) int {
	if errors.Is(err, backplane.ErrUnavailable) || errors.Is(err, backplane.ErrClosed) || errors.Is(err, backplane.ErrIncomplete) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
