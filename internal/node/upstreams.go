package node

import (
	"errors"
	"slices"
	"strings"

	"github.com/edgeplane/edgeplane/backplane"
)

// Upstream composition: the Redis stream upstream for the hubs chosen
// (StreamHubs), the webhook upstream for the hubs its settings name, both
// when both take a hub.

// StreamHubsNone as Config.StreamHubs sends no hub's events to the Redis
// stream.
var StreamHubsNone = []string{"-"}

// streamHubs limits up to the hubs named ("*", or none named: all).
func streamHubs(up backplane.Upstream, hubs []string) backplane.Upstream {
	if len(hubs) == 0 || slices.Contains(hubs, "*") {
		return up
	}
	return &hubUpstream{next: up, hubs: hubs}
}

type hubUpstream struct {
	next backplane.Upstream
	hubs []string
}

func (h *hubUpstream) Send(e *backplane.Event) error {
	for _, name := range h.hubs {
		if strings.EqualFold(name, e.Hub) {
			return h.next.Send(e)
		}
	}
	if e.Kind == backplane.EventInvocation {
		return backplane.ErrNoUpstream
	}
	return nil
}

// both sends each event to a and b (a may be nil): an invocation is
// refused only if both refuse it; a connection event's error is the
// first refusal.
func both(a, b backplane.Upstream) backplane.Upstream {
	if a == nil {
		return b
	}
	return &teeUpstream{a, b}
}

type teeUpstream struct{ a, b backplane.Upstream }

func (t *teeUpstream) Send(e *backplane.Event) error {
	ea, eb := t.a.Send(e), t.b.Send(e)
	if e.Kind == backplane.EventInvocation {
		if ea == nil || eb == nil {
			return nil
		}
		return errors.Join(ea, eb)
	}
	if ea != nil {
		return ea
	}
	return eb
}
