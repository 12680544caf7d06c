package sdkfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// Client results (.NET 7+): CallerClientResultsManager (this server
// invoked a client) and RouterClientResultsManager (this server hosts a
// client another server invoked).
type resultsManager struct {
	hr        *hubRuntime
	managerID string
	next      atomic.Int64

	mu     sync.Mutex
	caller map[string]*pending // invocations this server made
	router map[string]routed   // invocations of other servers for clients here
}

type pending struct {
	connID   string
	instance string // from ServiceMapping
	ch       chan completion
}

type routed struct {
	connID, callerServerID string
}

type completion struct {
	result json.RawMessage
	err    error
}

func (r *resultsManager) add(id, connID string) chan completion {
	ch := make(chan completion, 1)
	r.mu.Lock()
	r.caller[id] = &pending{connID: connID, ch: ch}
	r.mu.Unlock()
	return ch
}

func (r *resultsManager) remove(id string) {
	r.mu.Lock()
	delete(r.caller, id)
	r.mu.Unlock()
}

func (r *resultsManager) resolve(id string, c completion) bool {
	r.mu.Lock()
	p, ok := r.caller[id]
	delete(r.caller, id)
	r.mu.Unlock()
	if ok {
		p.ch <- c
	}
	return ok
}

// route records a ClientInvocation the service forwarded: a client here
// owes another server a result (Router.AddInvocation).
func (r *resultsManager) route(id, connID, caller string) {
	r.mu.Lock()
	r.router[id] = routed{connID: connID, callerServerID: caller}
	r.mu.Unlock()
}

func (r *resultsManager) mapped(id, instance string) {
	r.mu.Lock()
	if p, ok := r.caller[id]; ok {
		p.instance = instance
	}
	r.mu.Unlock()
}

// clientCompleted handles a client's Completion (SetConnectionResultAsync):
// an invocation of this server completes here and the service is told
// to forget it (ClientCompletion, empty payload); one routed from another
// server goes back through the service with the client's record as the
// payload. Either message carries this server's id, as the SDK writes
// its own name there.
func (r *resultsManager) clientCompleted(c *client, rec record, raw []byte) {
	var payload []byte
	if r.resolve(rec.InvocationID, completionOf(rec)) {
		payload = []byte{}
	} else {
		r.mu.Lock()
		_, ok := r.router[rec.InvocationID]
		delete(r.router, rec.InvocationID)
		r.mu.Unlock()
		if !ok {
			return // neither ours nor routed: blocked, as the SDK does
		}
		payload = frameRecord(c.protocol, raw)
	}
	c.sc.write(&serviceproto.ClientCompletion{InvocationID: rec.InvocationID, ConnectionID: c.id,
		CallerServerID: r.hr.app.cfg.ServerID, Protocol: c.protocol, Payload: payload})
}

// completeRouted handles a ClientCompletion the service routed here: the
// payload is the client's Completion record in Protocol.
func (r *resultsManager) completeRouted(m *serviceproto.ClientCompletion) {
	recs, _, err := splitRecords(m.Protocol, m.Payload)
	if err != nil || len(recs) != 1 {
		r.resolve(m.InvocationID, completion{err: fmt.Errorf("sdkfake: routed completion: %d records, %v", len(recs), err)})
		return
	}
	rec, err := parseRecord(m.Protocol, recs[0])
	if err != nil {
		r.resolve(m.InvocationID, completion{err: err})
		return
	}
	r.resolve(m.InvocationID, completionOf(rec))
}

func (r *resultsManager) fail(id, msg string) {
	r.resolve(id, completion{err: errors.New(msg)})
}

// offline fails the invocations whose client was on a service instance
// that went away.
func (r *resultsManager) offline(instance string) {
	r.mu.Lock()
	var ids []string
	for id, p := range r.caller {
		if p.instance == instance {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	for _, id := range ids {
		r.fail(id, fmt.Sprintf("Connection is offline: service instance %s went away.", instance))
	}
}

// connectionGone drops the routed invocations of a client that left
// (CleanupInvocationsByConnection); its caller's wait ends with the
// service's ErrorCompletion.
func (r *resultsManager) connectionGone(connID string) {
	r.mu.Lock()
	for id, x := range r.router {
		if x.connID == connID {
			delete(r.router, id)
		}
	}
	r.mu.Unlock()
}

func completionOf(rec record) completion {
	if rec.HasError {
		return completion{err: &HubError{Message: rec.Error}}
	}
	return completion{result: rec.Result}
}

// frameRecord puts a record's framing back: 0x1e for JSON, the length
// prefix for MessagePack.
func frameRecord(p string, rec []byte) []byte {
	if p == protoJSON {
		return append(append([]byte(nil), rec...), hubproto.RecordSeparator)
	}
	return append(serviceproto.AppendPrefix(nil, len(rec)), rec...)
}
