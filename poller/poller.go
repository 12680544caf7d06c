package poller

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"time"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrQueueFull is returned by Conn.Send when queuing the frame would take
	// the connection's unsent bytes over Config.MaxQueueBytes. The frame is
	// not queued; the caller decides what to do (conn/ disconnects the client
	// as a slow client).
	ErrQueueFull = errors.New("poller: outbound queue full")
	// ErrClosed is returned by Conn.Send after the connection was closed or
	// shut down.
	ErrClosed = errors.New("poller: connection closed")
	// ErrUnknownBackend is returned by New for a backend name it does not know.
	ErrUnknownBackend = errors.New("poller: unknown backend")
)

// Conn is one accepted connection as the rest of edgeplane sees it. Nothing
// outside poller/ sees a backend type.
//
// Send, Shutdown, Close, QueuedBytes and RemoteAddr are safe for concurrent
// use from any goroutine and never block on the network.
type Conn interface {
	// Send queues frame for writing. The slice is NOT copied: it may be
	// shared by many connections, and nobody may modify it after Send.
	// Send never blocks and never writes to the socket from the caller's
	// goroutine (backends may write immediately if they can do it without
	// blocking). It returns ErrQueueFull if the unsent bytes would exceed
	// the queue limit (the frame is dropped) and ErrClosed after Close or
	// Shutdown.
	Send(frame []byte) error
	// Shutdown queues final (ignoring the queue limit; may be nil), stops
	// accepting further Sends, and closes the connection once everything
	// queued has been written or after Config.ShutdownTimeout, whichever
	// comes first.
	Shutdown(final []byte)
	// Close closes the connection at once, dropping anything unsent.
	Close() error
	// QueuedBytes is the number of bytes queued but not yet written.
	QueuedBytes() int
	// RemoteAddr is the peer address.
	RemoteAddr() net.Addr
}

// Session is the per-connection receiver of events, created by
// Handler.OnOpen. The poller calls OnData and OnClose of one Session
// serially, never concurrently; OnClose exactly once and last.
type Session interface {
	// OnData hands over bytes read from the socket. data is valid only
	// during the call (it is usually a shared read buffer): the session must
	// consume all of it, copying whatever it needs to keep. The session may
	// modify data in place (e.g. to unmask). OnData runs on an event loop or
	// a short-lived worker: it must not block.
	OnData(data []byte)
	// OnClose is called once when the connection is gone, for whatever
	// reason (peer hang-up, Close, Shutdown completed, I/O error). err is nil
	// for an orderly close.
	OnClose(err error)
}

// Handler creates a Session for each connection that passed admission.
type Handler interface {
	OnOpen(c Conn) Session
}

// RejectReason says why admission turned a connection away.
type RejectReason string

// Admission rejection reasons, used as metric labels.
const (
	RejectMaxConns    RejectReason = "max_conns"
	RejectFDReserve   RejectReason = "fd_reserve"
	RejectAcceptRate  RejectReason = "accept_rate"
	RejectAcceptError RejectReason = "accept_error"
)

// Config is the poller configuration. The zero value works.
type Config struct {
	// MaxConns is the maximum number of open connections; a connection over
	// it gets HTTP 503 with Retry-After and is closed. 0 means no limit
	// (the file-descriptor reserve still applies).
	MaxConns int
	// FDReserve is how many file descriptors stay free for everything else
	// (admin port, Redis, log files): a connection that would leave fewer than
	// FDReserve descriptors under RLIMIT_NOFILE is rejected with 503.
	// Default 64; negative disables the check.
	FDReserve int
	// MaxQueueBytes bounds each connection's unsent bytes. Default 1 MiB.
	MaxQueueBytes int
	// ShutdownTimeout bounds how long Shutdown waits for queued bytes.
	// Default 5s.
	ShutdownTimeout time.Duration
	// RetryAfter is the Retry-After value in seconds sent with 503. Default 5.
	RetryAfter int
	// Loops is the number of event loops. Default GOMAXPROCS.
	Loops int
	// OnReject, if set, is called (from the accept path; must be quick) for
	// each connection turned away by admission.
	OnReject func(RejectReason)
}

// Defaults applied in one place.
const (
	DefaultFDReserve       = 64
	DefaultMaxQueueBytes   = 1 << 20
	DefaultShutdownTimeout = 5 * time.Second
	DefaultRetryAfter      = 5
)

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.FDReserve == 0 {
		c.FDReserve = DefaultFDReserve
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultRetryAfter
	}
	return c
}

// Poller accepts connections on one listening address and runs their I/O.
type Poller interface {
	// Serve starts accepting on ln's address and returns at once. The
	// backend may take over ln (netpoll) or re-create the socket from it.
	Serve(ln net.Listener) error
	// Addr is the listening address.
	Addr() net.Addr
	// Conns is the number of open connections.
	Conns() int
	// StopAccepting closes the listener; open connections stay.
	StopAccepting() error
	// Close stops accepting and closes every connection.
	Close() error
}

// Factory builds a Poller. Backends register one in init.
type Factory func(cfg Config, h Handler) (Poller, error)

var backends = map[string]Factory{}

// Register makes a backend available to New. It is called from backend
// init functions.
func Register(name string, f Factory) { backends[name] = f }

// New builds a poller of the named backend ("netpoll" or "epoll").
func New(backend string, cfg Config, h Handler) (Poller, error) {
	f, ok := backends[backend]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownBackend, backend)
	}
	return f(cfg.WithDefaults(), h)
}

// Backends lists the registered backend names.
func Backends() []string {
	out := make([]string, 0, len(backends))
	for k := range backends {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
