package service

import (
	"sync"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// Client results (a server invoking a client and waiting for its answer,
// .NET 7+). The service remembers each pending invocation — which client,
// which app server asked — until the answer comes back:
//
//  1. ClientInvocation from app server A: the payload for the client's
//     protocol goes to the client; when the client is hosted by another
//     app server B, B gets the ClientInvocation too (it will see the
//     client's Completion and must know where it belongs).
//  2. The client's Completion reaches its host as ConnectionData; the host
//     sends ClientCompletion (or ErrorCompletion). One from B goes on to
//     A; one from A only ends the invocation.
//  3. The client leaving first: A gets ErrorCompletion.
type invocations struct {
	mu      sync.Mutex
	pending map[string]invocation // invocation id →
}

type invocation struct {
	caller string // app server id
	connID string
}

func (v *invocations) init() { v.pending = map[string]invocation{} }

func (v *invocations) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.pending)
}

// invoke handles a ClientInvocation from sc.
func (v *invocations) invoke(h *hub, sc *serverConn, m *serviceproto.ClientInvocation) {
	rc := h.clientAny(m.ConnectionID)
	if rc == nil || !rc.accepted.Load() {
		h.s.M.invocations("not_found").Inc()
		sc.send(&serviceproto.ErrorCompletion{InvocationID: m.InvocationID, ConnectionID: m.ConnectionID,
			CallerServerID: m.CallerServerID, Error: "Connection '" + m.ConnectionID + "' does not exist."})
		return
	}
	proto := "json"
	if rc.binary {
		proto = "messagepack"
	}
	payload, ok := m.Payloads.Get(proto)
	if !ok {
		h.s.M.invocations("no_payload").Inc()
		sc.send(&serviceproto.ErrorCompletion{InvocationID: m.InvocationID, ConnectionID: m.ConnectionID,
			CallerServerID: m.CallerServerID, Error: "The invocation has no " + proto + " payload."})
		return
	}
	caller := sc.serverID
	v.mu.Lock()
	v.pending[m.InvocationID] = invocation{caller: caller, connID: m.ConnectionID}
	v.mu.Unlock()
	h.s.M.invocations("sent").Inc()
	if rc.sc != nil && rc.sc.serverID != caller {
		rc.sc.send(m) // the host must know the client's Completion is routed
	}
	if rc.c == nil { // a client of another node hosted here
		h.s.fl.toPeer(h, rc, payload)
		return
	}
	var frame []byte
	if rc.binary {
		frame = wsframe.BinaryFrame(payload)
	} else {
		frame = wsframe.TextFrame(payload)
	}
	rc.c.RelaySend(frame)
}

// complete handles a ClientCompletion or ErrorCompletion from sc: one
// from the client's host goes on to the caller unless the host is the
// caller.
func (v *invocations) complete(h *hub, sc *serverConn, id string, m serviceproto.Message) {
	v.mu.Lock()
	inv, ok := v.pending[id]
	delete(v.pending, id)
	v.mu.Unlock()
	if !ok {
		h.s.M.invocations("unknown_completion").Inc()
		return
	}
	if inv.caller == sc.serverID {
		h.s.M.invocations("completed").Inc()
		return
	}
	to := h.ofServer(inv.caller)
	if to == nil {
		h.s.M.invocations("caller_gone").Inc()
		return
	}
	h.s.M.invocations("routed").Inc()
	to.send(m)
}

// clientGone fails the pending invocations of a client that left.
func (v *invocations) clientGone(h *hub, connID string) {
	v.mu.Lock()
	var failed []string
	for id, inv := range v.pending {
		if inv.connID == connID {
			failed = append(failed, id)
		}
	}
	gone := make([]invocation, len(failed))
	for i, id := range failed {
		gone[i] = v.pending[id]
		delete(v.pending, id)
	}
	v.mu.Unlock()
	for i, id := range failed {
		h.s.M.invocations("client_gone").Inc()
		if to := h.ofServer(gone[i].caller); to != nil {
			to.send(&serviceproto.ErrorCompletion{InvocationID: id, ConnectionID: connID, CallerServerID: gone[i].caller,
				Error: "Connection '" + connID + "' is disconnected."})
		}
	}
}

// serverGone forgets the invocations of an app server whose connections
// are all gone: no one is waiting for them.
func (v *invocations) serverGone(h *hub, serverID string) {
	v.mu.Lock()
	for id, inv := range v.pending {
		if inv.caller == serverID {
			delete(v.pending, id)
		}
	}
	v.mu.Unlock()
}
