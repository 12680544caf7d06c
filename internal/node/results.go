package node

import (
	"sync/atomic"

	"github.com/edgeplane/edgeplane/admin"
	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/fanout"
)

// resultsReceiver is what the backplane delivers to: the router, with
// client results on the way. A connection message that asks for a
// result is recorded by the connection layer before it is delivered (so
// the client's Completion cannot outrun it); a Completion that arrives
// on this node's return channel goes to the REST request waiting for it
// (the admin handler, set once it exists).
type resultsReceiver struct {
	*fanout.Router
	srv   *conn.Server
	admin atomic.Pointer[admin.Handler]
}

func (r *resultsReceiver) Deliver(m *backplane.Message) {
	if m.ReturnChannel != "" {
		r.srv.ExpectResult(m)
	}
	r.Router.Deliver(m)
}

func (r *resultsReceiver) DeliverReturn(hub, protocol string, completion []byte) {
	if a := r.admin.Load(); a != nil {
		a.DeliverReturn(hub, protocol, completion)
	}
}
