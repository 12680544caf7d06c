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
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// Sends: a PayloadMessage body becomes one JSON hub-protocol Invocation
// record, published through the backplane (every node delivers it to its
// own recipients).
//
// The body is JSON, {"target": …, "arguments": […]} (names in any case:
// the Management SDK writes Target and Arguments), or, as the Management
// SDK sends it with Content-Type application/octet-stream (or
// application/x-msgpack), a MessagePack map of hub-protocol name to the
// message already serialized and framed in that protocol. The node
// delivers JSON to its clients: it takes the map's "json" entry, which the
// SDK writes whenever the app has the JSON protocol (the default); the
// other entries ("messagepack") are not used yet.

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

// readInvocation reads a send's body (at most maxBody bytes) and returns
// the JSON Invocation record to deliver, 0x1e included.
func readInvocation(w http.ResponseWriter, r *http.Request) ([]byte, *errBody) {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == contentTypeOctetStream || mt == contentTypeXMessagePack {
		b, err := io.ReadAll(body)
		if err != nil {
			return nil, bodyReadError(err)
		}
		return messagePackInvocation(b)
	}
	var sb sendBody
	if err := json.NewDecoder(body).Decode(&sb); err != nil {
		return nil, bodyReadError(err)
	}
	if sb.Target == "" {
		return nil, invalidBody("target is required")
	}
	if len(sb.Arguments) > 0 && strings.TrimSpace(string(sb.Arguments))[0] != '[' {
		return nil, invalidBody("arguments must be a JSON array")
	}
	rec, err := hubproto.JSON.AppendInvocation(nil, "", sb.Target, sb.Arguments)
	if err != nil {
		return nil, invalidBody("%v", err)
	}
	return rec, nil
}

func bodyReadError(err error) *errBody {
	if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
		return &errBody{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", tooBig.Limit)}
	}
	return invalidBody("%v", err)
}

// messagePackInvocation takes the "json" entry of a MessagePack payload
// map ({protocol name: serialized message}) and checks it is one
// non-blocking Invocation record.
func messagePackInvocation(b []byte) ([]byte, *errBody) {
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, invalidBody("a %s body is a MessagePack map of protocol name to serialized message: %v", contentTypeOctetStream, err)
	}
	var rec []byte
	var names []string
	for range n {
		var name, ser []byte
		if name, rest, err = readStrOrBin(rest); err != nil {
			return nil, invalidBody("protocol name: %v", err)
		}
		if ser, rest, err = readStrOrBin(rest); err != nil {
			return nil, invalidBody("message for protocol %q: %v", name, err)
		}
		names = append(names, string(name))
		if strings.EqualFold(string(name), "json") {
			rec = ser
		}
	}
	if len(rest) != 0 {
		return nil, invalidBody("%d bytes after the payload map", len(rest))
	}
	if rec == nil {
		return nil, invalidBody("the payload map has no \"json\" entry (it has %q): edgeplane delivers the JSON serialization to its clients; configure the JSON hub protocol on the app", names)
	}
	if len(rec) == 0 || rec[len(rec)-1] != 0x1e {
		return nil, invalidBody("the \"json\" entry is not a JSON hub-protocol record ending in 0x1e")
	}
	m, err := hubproto.JSON.Parse(rec[:len(rec)-1])
	if err != nil {
		return nil, invalidBody("the \"json\" entry: %v", err)
	}
	if m.Type != hubproto.TypeInvocation || m.InvocationID != "" {
		what := m.Type.String()
		if m.InvocationID != "" {
			what += " with an invocation id"
		}
		return nil, invalidBody("the \"json\" entry is a %s, want a non-blocking Invocation", what)
	}
	return append([]byte(nil), rec...), nil
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
		rec, bad := readInvocation(w, r)
		if bad != nil {
			apiError(w, bad.status, bad.msg)
			return
		}
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
		m := &backplane.Message{Hub: c.hub, Kind: kind, Payload: rec, Excluded: excluded(r)}
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
