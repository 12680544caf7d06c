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
// per-connection buffers).
package poller
