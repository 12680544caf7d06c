package admin

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// POST /api/hubs/{hub}/connections/{id}/:invoke (Azure SignalR data
// plane 2024-12-01): an Invocation with an invocation id goes to the
// connection, wherever it is, as ASP.NET Core's Redis backplane sends a
// client result (the 4-item payload naming this node's return channel);
// the node that holds the connection sends the client's Completion back
// on that channel, and the request is answered with it: 200
// {"result": value, "protocol": name} (a MessagePack client's result
// converted to JSON), 400 with the client's error text, 504 when no
// Completion came within the time-out (?timeout=seconds, default
// DefaultInvokeTimeout, at most MaxInvokeTimeout), 503 when this node
// already waits for MaxPendingInvokes results. The request's goroutine
// (net/http's) waits; nothing else is started per invocation.

// :invoke bounds.
const (
	DefaultInvokeTimeout = 30 * time.Second
	MaxInvokeTimeout     = 5 * time.Minute
	MaxPendingInvokes    = 10000
)

// invokeResult is a client's Completion, as the waiting request needs it.
type invokeResult struct {
	protocol string
	msg      hubproto.Message
}

// invokes are the :invoke requests of this node waiting for their result.
type invokes struct {
	once    sync.Once
	prefix  string
	seq     atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan invokeResult
}

func (h *Handler) invokes() *invokes {
	iv := &h.inv
	iv.once.Do(func() {
		var b [9]byte
		_, _ = rand.Read(b[:])
		iv.prefix = "rest-" + base64.RawURLEncoding.EncodeToString(b[:]) + "-"
		iv.waiting = make(map[string]chan invokeResult)
	})
	return iv
}

// PendingInvokes is the number of :invoke requests waiting for a client's
// Completion.
func (h *Handler) PendingInvokes() int {
	iv := h.invokes()
	iv.mu.Lock()
	defer iv.mu.Unlock()
	return len(iv.waiting)
}

// DeliverReturn implements backplane.ReturnReceiver for the node: a
// client's Completion arrived on this node's return channel. One that no
// request waits for (timed out) is dropped.
func (h *Handler) DeliverReturn(hub, protocol string, completion []byte) {
	p := hubproto.Lookup(protocol)
	if p == nil {
		h.log.Warn("client result in an unknown protocol dropped", "hub", hub, "protocol", protocol)
		return
	}
	iv := h.invokes()
	_ = p.Split(completion, func(rec []byte) error {
		m, err := p.Parse(rec)
		if err != nil || m.Type != hubproto.TypeCompletion {
			h.log.Warn("client result that is not a Completion dropped", "hub", hub, "err", err)
			return nil
		}
		iv.mu.Lock()
		ch := iv.waiting[m.InvocationID]
		delete(iv.waiting, m.InvocationID)
		iv.mu.Unlock()
		if ch != nil {
			ch <- invokeResult{protocol, m} // buffered, one per request
		}
		return nil
	})
}

func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.requireHub(w) {
		return
	}
	ret, ok := h.cfg.Backplane.(backplane.Returner)
	if !ok {
		apiError(w, http.StatusNotImplemented, "this node's backplane cannot carry client results")
		return
	}
	timeout := DefaultInvokeTimeout
	if t := r.URL.Query().Get("timeout"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n <= 0 || time.Duration(n)*time.Second > MaxInvokeTimeout {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("timeout must be whole seconds, 1 to %d", int(MaxInvokeTimeout/time.Second)))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	var sb sendBody
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&sb); err != nil {
		bad := bodyReadError(err)
		apiError(w, bad.status, bad.msg)
		return
	}
	if sb.Target == "" {
		apiError(w, http.StatusBadRequest, "invalid body: target is required")
		return
	}
	iv := h.invokes()
	id := iv.prefix + strconv.FormatUint(iv.seq.Add(1), 10)
	rec, err := hubproto.JSON.AppendInvocation(nil, id, sb.Target, sb.Arguments)
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid body: "+err.Error())
		return
	}
	if err := h.cfg.Router.Check(rec); err != nil {
		apiError(w, http.StatusBadRequest, "invalid body: "+err.Error())
		return
	}
	ch := make(chan invokeResult, 1)
	iv.mu.Lock()
	if len(iv.waiting) >= MaxPendingInvokes {
		iv.mu.Unlock()
		apiError(w, http.StatusServiceUnavailable, fmt.Sprintf("this node already waits for %d client results", MaxPendingInvokes))
		return
	}
	iv.waiting[id] = ch
	iv.mu.Unlock()
	forget := func() {
		iv.mu.Lock()
		delete(iv.waiting, id)
		iv.mu.Unlock()
	}
	m := &backplane.Message{Hub: c.hub, Kind: backplane.Connection, Name: r.PathValue("connectionId"), Payload: rec,
		InvocationID: id, ReturnChannel: ret.ReturnChannel(c.hub)}
	if err := h.cfg.Backplane.Publish(r.Context(), m); err != nil {
		forget()
		apiError(w, backplaneStatus(err), "publish: "+err.Error())
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	var res invokeResult
	select {
	case res = <-ch:
	case <-t.C:
		forget()
		apiError(w, http.StatusGatewayTimeout, fmt.Sprintf("no result from connection %s within %s", m.Name, timeout))
		return
	case <-r.Context().Done():
		forget()
		return
	}
	if res.msg.HasError {
		apiError(w, http.StatusBadRequest, res.msg.Error)
		return
	}
	result := res.msg.Arguments
	if res.protocol == hubproto.MessagePack.Name() && len(result) > 0 {
		if result, err = hubproto.MessagePackToJSON(nil, result); err != nil {
			apiError(w, http.StatusBadGateway, "the client's result has no JSON form: "+err.Error())
			return
		}
	}
	if len(result) == 0 {
		result = []byte("null")
	}
	w.Header().Set("Content-Type", contentTypeJSONUTF8)
	writeJSON(w, struct {
		Result   json.RawMessage `json:"result"`
		Protocol string          `json:"protocol"`
	}{result, res.protocol})
}
