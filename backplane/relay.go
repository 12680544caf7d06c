package backplane

import (
	"context"
	"time"
)

// Relay carries service mode's traffic between two nodes of a fleet (a
// client on one node, the app server connection hosting it on another)
// and the fleet's service-mode presence: which nodes are alive and which
// hubs' app servers each holds connections of. The Redis backplane
// implements it; on one node (Memory) there is no other node to relay to.
//
// On Redis a node's relay messages travel on edgeplane:relay:{node}, one
// channel per node that only that node subscribes to (ASP.NET Core
// servers sharing the backplane never see it), and presence is two sorted
// sets scored by expiry (RelayNodesKey, RelayHostsKey).
type Relay interface {
	// NodeName is this node's name in the fleet (its relay channel's).
	NodeName() string
	// HandleRelay sets the handler of what other nodes send to this one.
	// Call it before Start. It runs on the backplane's receive path, in
	// the order messages were published: it must not block on I/O. b is
	// valid only during the call.
	HandleRelay(h func(b []byte))
	// SendRelay publishes b to node. ErrNotFound: no node listens on its
	// relay channel (it is gone, or deaf): b is lost. ErrUnavailable:
	// Redis did not take it.
	SendRelay(ctx context.Context, node string, b []byte) error
	// Announce records this node alive, and as holding hosts (Node is
	// filled in), until ttl from now; hosts this node announced before
	// and no longer lists are removed. It returns the fleet's presence as
	// Redis has it now, expired entries left out. Withdraw is the same
	// with no hosts and this node no longer alive.
	Announce(ctx context.Context, hosts []RelayHost, ttl time.Duration) (*Presence, error)
	Withdraw(ctx context.Context) error
}

// RelayHost says that app server Server of Hub has connections on Node.
type RelayHost struct {
	Node, Hub, Server string
}

// Presence is the fleet's service-mode presence at one moment: the nodes
// alive (with the expiry of their last announcement) and the hubs' hosts.
type Presence struct {
	Nodes map[string]time.Time
	Hosts []RelayHost
}

// Presence keys on Redis (sorted sets scored by expiry, Unix ms; one hash
// tag so that a cluster keeps them in one slot).
const (
	RelayNodesKey = "edgeplane:{svc}:nodes"
	RelayHostsKey = "edgeplane:{svc}:hosts"
	relayChannel  = "edgeplane:relay:"
)
