package backplane

import (
	"context"
	"sync/atomic"

	"github.com/edgeplane/edgeplane/internal/metricset"
)

// Memory is the single-node backplane: Publish delivers straight to the
// local receiver. It is the default when no Redis is configured.
type Memory struct {
	r      Receiver
	cmd    CommandHandler
	closed atomic.Bool
}

// NewMemory returns an in-memory backplane.
func NewMemory() *Memory { return &Memory{} }

// Start implements Backplane.
func (b *Memory) Start(r Receiver) error { b.r = r; return nil }

// Publish implements Backplane: it delivers synchronously.
func (b *Memory) Publish(_ context.Context, m *Message) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.r.Deliver(m)
	return nil
}

// Subscribe implements Backplane; the memory backplane needs no channels.
func (b *Memory) Subscribe(string, Kind, string) {}

// Unsubscribe implements Backplane.
func (b *Memory) Unsubscribe(string, Kind, string) {}

// RemoteGroup implements Backplane: on a single node a connection that is
// not local does not exist.
func (b *Memory) RemoteGroup(context.Context, string, GroupAction, string, string) error {
	return ErrNotFound
}

// Ready implements Backplane.
func (b *Memory) Ready() bool { return !b.closed.Load() }

// Close implements Backplane.
func (b *Memory) Close() error { b.closed.Store(true); return nil }

// Metrics returns nil: the memory backplane has no connection, channels or
// losses to count, so a single node exposes no edgeplane_backplane_*
// series (a Registry skips a nil Set).
func (b *Memory) Metrics() *metricset.Set { return nil }
