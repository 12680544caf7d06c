package fanout

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Router holds the hubs of a node and is the backplane's Receiver: each
// message is encoded once into a WebSocket frame and the same bytes are
// queued to every local recipient.
type Router struct {
	hubs  atomic.Pointer[map[string]*Hub] // replaced whole when a hub is added (AddHub)
	sub   Subscriber
	addMu sync.Mutex
	Stats Stats
	// MaxFrameBytes is the largest frame a connection's outbound queue
	// can take (the poller's MaxQueueBytes). A message whose frame is
	// larger can never be queued: rather than close every recipient as a
	// slow client, Deliver drops it and counts it (too_large). Set it
	// before the first delivery; 0: no limit.
	MaxFrameBytes int

	metricsOnce sync.Once
	metricsDone atomic.Bool // Metrics declared the hubs' gauges: AddHub declares new ones
	metrics     *metricset.Set
	dropped     [dropReasons]*metrics.Counter
	encodes     [hubproto.NumIDs]*metrics.Counter // frames built, per protocol
	transcoded  *metrics.Counter                  // MessagePack frames converted from JSON
}

// Why Deliver drops a message, as the reason label of
// edgeplane_fanout_dropped_total.
const (
	dropInvalidUTF8 = iota
	dropTooLarge
	dropTranscode
	dropReasons
)

var dropLabels = [dropReasons]string{dropInvalidUTF8: "invalid_utf8", dropTooLarge: "too_large", dropTranscode: "transcode"}

// Errors Check reports for a message that cannot be delivered.
var (
	// ErrInvalidUTF8: the record is not valid UTF-8. It would go out in a
	// text frame, and browsers and Node fail the connection on one.
	ErrInvalidUTF8 = errors.New("fanout: message is not valid UTF-8")
	// ErrTooLarge: the message's frame is larger than a connection's
	// outbound queue (MaxFrameBytes), so no recipient could ever take it.
	ErrTooLarge = errors.New("fanout: message is larger than a connection's outbound queue")
)

// NewRouter builds the registries of the named hubs. sub is told about
// first/last local members (the backplane); nil means nobody listens.
func NewRouter(hubs []string, sub Subscriber) *Router {
	if sub == nil {
		sub = nopSubscriber{}
	}
	r := &Router{sub: sub, metrics: metricset.New()}
	m := make(map[string]*Hub, len(hubs))
	for _, name := range hubs {
		m[name] = newHub(name, sub, &r.Stats)
	}
	r.hubs.Store(&m)
	r.declareDropped()
	return r
}

// Hub returns the named hub's registry, or nil if it is not configured.
func (r *Router) Hub(name string) *Hub { return (*r.hubs.Load())[name] }

// HubNames lists the hubs' names, sorted.
func (r *Router) HubNames() []string {
	hubs := *r.hubs.Load()
	names := make([]string, 0, len(hubs))
	for name := range hubs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Hubs calls fn for each hub.
func (r *Router) Hubs(fn func(*Hub)) {
	for _, h := range *r.hubs.Load() {
		fn(h)
	}
}

// Deliver implements backplane.Receiver: m.Payload (complete JSON hub
// records) is framed once per protocol its local recipients speak, and
// each gets the frame of its protocol (Frames): JSON as it came,
// MessagePack from m.MessagePack when the backplane carried it, else
// converted from the JSON once. A message that Check refuses is dropped
// and counted (edgeplane_fanout_dropped_total): it reaches no one and
// closes no one; so is, for its recipients of that protocol only, a
// message that cannot be sent in one protocol (transcode, too_large).
func (r *Router) Deliver(m *backplane.Message) {
	h := r.Hub(m.Hub)
	if h == nil || len(m.Payload) == 0 {
		return
	}
	if err := r.Check(m.Payload); err != nil {
		if errors.Is(err, ErrInvalidUTF8) {
			r.dropped[dropInvalidUTF8].Inc()
		} else {
			r.dropped[dropTooLarge].Inc()
		}
		return
	}
	f := r.getFrames(m.Payload, m.MessagePack)
	h.Deliver(m.Kind, m.Name, m.Excluded, f)
	putFrames(f)
}

// Check reports whether a record can be delivered: it must be valid UTF-8
// (ErrInvalidUTF8) and its frame must fit a connection's outbound queue
// (ErrTooLarge). Deliver drops what it refuses; the REST API asks first
// and answers 400 or 413.
func (r *Router) Check(payload []byte) error {
	if r.MaxFrameBytes > 0 {
		if n := FrameSize(len(payload)); n > r.MaxFrameBytes {
			return fmt.Errorf("%w: a %d-byte frame, the limit is %d bytes", ErrTooLarge, n, r.MaxFrameBytes)
		}
	}
	if !utf8.Valid(payload) {
		return ErrInvalidUTF8
	}
	return nil
}

// FrameSize is the size of the text frame Deliver queues for an n-byte
// record: the record and the frame header.
func FrameSize(n int) int {
	switch {
	case n < 126:
		return n + 2
	case n <= 0xFFFF:
		return n + 4
	}
	return n + 10
}

// ApplyGroup implements backplane.Receiver.
func (r *Router) ApplyGroup(hub string, action backplane.GroupAction, group, connID string) bool {
	h := r.Hub(hub)
	if h == nil {
		return false
	}
	switch action {
	case backplane.GroupAdd:
		return h.AddToGroup(connID, group)
	case backplane.GroupRemove:
		return h.RemoveFromGroup(connID, group)
	}
	return false
}

type nopSubscriber struct{}

func (nopSubscriber) Subscribe(string, backplane.Kind, string)   {}
func (nopSubscriber) Unsubscribe(string, backplane.Kind, string) {}
