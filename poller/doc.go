// Package poller is edgeplane's event-loop layer: it accepts connections,
// applies admission (maximum connections, file-descriptor reserve) before
// any byte is read, hands each connection's readable bytes to a Session as a
// slice valid only during the callback, and writes outbound frames that are
// references to shared byte slices, bounded per connection in bytes.
//
// No goroutine is held per connection. Backends register themselves by
// name; nothing outside this package sees a backend's types:
//
//	p, err := poller.New("netpoll", poller.Config{MaxConns: 19000}, handler)
//	ln, _ := net.Listen("tcp", "127.0.0.1:8080")
//	err = p.Serve(ln)
//
// Backends: "netpoll" (github.com/cloudwego/netpoll, configured for
// density) and "epoll" (our own loop on golang.org/x/sys/unix with no
// per-connection buffers). Both are Linux-only: every file that needs Linux
// is named *_linux.go, and on other systems the package builds with no
// backend registered.
//
// # Accepting
//
// Both backends share one acceptor (accept_linux.go), so a client sees the
// same behaviour whichever runs:
//
//   - Serve takes over the listener: the acceptor accepts on a duplicate of
//     its descriptor from one goroutine per Poller, parked in the Go
//     runtime's poller while nothing is pending. StopAccepting and Close
//     close both and return once that goroutine has.
//   - Admission runs on the accepted descriptor before anything is read or
//     allocated for it: over Config.MaxConns, or leaving fewer than
//     Config.FDReserve descriptors free, the client gets a precompiled
//     "HTTP/1.1 503" with Retry-After (Config.RetryAfter) naming the
//     reason, and the connection is closed. Config.OnReject hears of every
//     connection turned away, with its RejectReason.
//   - Out of descriptors (EMFILE, ENFILE), the acceptor frees a spare
//     descriptor it keeps for the purpose, accepts the pending connection,
//     answers it 503 (accept_error) and closes it, then takes the spare
//     back; with nothing pending it waits for the listener, without
//     spinning.
//   - Accept errors it can neither complete nor shed pause accepting on
//     one back-off schedule (AcceptBackoff: 5 ms doubling to 1 s).
//
// A backend only says what to do with an admitted descriptor: epoll posts
// it to the loop that owns it, netpoll wraps it in a netpoll connection.
// The accept-rate limit is not applied here: conn/ applies it to each new
// SignalR connection (negotiate or upgrade) under the same label,
// accept_rate.
package poller
