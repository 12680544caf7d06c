package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"golang.org/x/sys/unix"
)

// The loader's HTTP transports, on the same epoll loop as its WebSockets
// and with no goroutine per connection (TransportProtocols.md of
// dotnet/aspnetcore has the protocol):
//
//   - Long Polling: one keep-alive socket per connection carries, one
//     after the other, the first GET ?id= (answered at once: it creates
//     the connection), the POST with the handshake, then polls: each 200
//     body is the connection's messages, counted as WebSocket ones are,
//     and the next poll goes out as soon as one is answered; 204 (the
//     connection ended) is a drop. No pings: the polls keep it alive.
//   - Server-Sent Events: the GET ?id= with Accept: text/event-stream
//     holds one socket; its data events are messages. Each POST (the
//     handshake, then a ping every KeepAlive, as the official client
//     sends them: the node's client time-out applies to SSE) goes on a
//     short-lived second socket: connect, POST with Connection: close,
//     read the 200, close. At most maxAux of them are open at once per
//     process (more wait their turn), so a process never needs more than
//     Conns+maxAux descriptors, nor a node more than its connections and
//     maxAux per process (Fleet takes it off the node's room).

// transport is a loader's transport.
type transport uint8

const (
	trWebSockets transport = iota
	trSSE
	trLongPolling
)

// Transport names, as LoaderConfig.Transport and edgebench --transport
// take them.
const (
	TransportWebSockets  = "websockets"
	TransportSSE         = "sse"
	TransportLongPolling = "longpolling"
)

func (t transport) String() string {
	return [...]string{TransportWebSockets, TransportSSE, TransportLongPolling}[t]
}

// ParseTransport reads a transport name ("" is websockets; ws, lp,
// longpoll, serversentevents are accepted too) as its canonical name.
func ParseTransport(s string) (string, error) {
	t, err := parseTransport(s)
	if err != nil {
		return "", err
	}
	return t.String(), nil
}

func parseTransport(s string) (transport, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "websockets", "websocket", "ws":
		return trWebSockets, nil
	case "sse", "serversentevents":
		return trSSE, nil
	case "longpolling", "longpoll", "lp":
		return trLongPolling, nil
	}
	return 0, fmt.Errorf("bench: unknown transport %q (websockets, sse, longpolling)", s)
}

// maxAux bounds the short-lived SSE POST sockets open at once in one
// loader process.
const maxAux = 256

// aux socket states
const (
	auxNone uint8 = iota
	auxQueued
	auxConnect
	auxRead
)

// httpConnected sends the first request on the socket of an HTTP
// transport: the first poll, or the SSE stream's GET.
func (l *Loader) httpConnected(c *cconn) {
	if l.tr == trSSE {
		c.state = stSSEHead
		l.write(c, SSERequest(l.host, l.cfg.hub(), c.token))
		return
	}
	c.state = stLPFirst
	l.poll(c)
}

func (l *Loader) poll(c *cconn) {
	l.write(c, PollRequest(l.host, l.cfg.hub(), c.token))
}

// handshakeBody is the handshake a connection sends.
func handshakeBody(c *cconn) []byte {
	if c.mp {
		return handshakeRequestMP
	}
	return handshakeRequest
}

// onHTTPData handles bytes read on the socket of an HTTP transport; data
// is c.in or the shared read buffer.
func (l *Loader) onHTTPData(c *cconn, data []byte) {
	if l.tr == trSSE {
		l.onSSEData(c, data)
		return
	}
	for len(data) > 0 {
		r, err := ParseResponseHead(data)
		if errors.Is(err, ErrIncomplete) {
			break
		}
		if err != nil {
			l.lost(c, "longpolling: bad response")
			return
		}
		if r.ContentLength < 0 {
			l.lost(c, "longpolling: response without Content-Length")
			return
		}
		end := r.HeaderLen + r.ContentLength
		if len(data) < end {
			break
		}
		l.onPollResponse(c, r.Status, data[r.HeaderLen:end])
		if c.fd < 0 {
			return
		}
		data = data[end:]
	}
	keepIn(c, data)
}

// keepIn keeps the unprocessed data (a partial response) for the next read.
func keepIn(c *cconn, data []byte) {
	if len(data) == 0 {
		c.in = nil
	} else {
		c.in = append(c.in[:0:0], data...)
	}
}

// onPollResponse handles one complete response on a Long Polling socket.
func (l *Loader) onPollResponse(c *cconn, status int, body []byte) {
	switch c.state {
	case stLPFirst:
		if status != 200 {
			l.httpRefused(c, "longpolling: first poll", status)
			return
		}
		c.state = stLPPost
		l.st.Posts++
		l.write(c, PostRequest(l.host, l.cfg.hub(), c.token, handshakeBody(c), false, false))
	case stLPPost:
		if status != 200 {
			l.httpRefused(c, "longpolling: handshake post", status)
			return
		}
		c.state = stHandshake
		l.poll(c)
	case stHandshake, stOpen:
		switch status {
		case 200:
			l.st.Polls++
			if len(body) > 0 {
				l.onMessage(c, body)
				if c.fd < 0 {
					return
				}
			}
			l.poll(c)
		case 204:
			l.lost(c, "longpolling: poll 204 (connection ended)")
		default:
			l.lost(c, "longpolling: poll status "+strconv.Itoa(status))
		}
	}
}

// httpRefused fails an attempt whose request was answered status.
func (l *Loader) httpRefused(c *cconn, what string, status int) {
	if status == 503 {
		l.st.Rejected503++
	}
	l.fail(c, what+" status "+strconv.Itoa(status))
}

// onSSEData handles bytes read on an SSE stream: the response head, then
// events.
func (l *Loader) onSSEData(c *cconn, data []byte) {
	if c.state == stSSEHead {
		r, err := ParseResponseHead(data)
		if errors.Is(err, ErrIncomplete) {
			keepIn(c, data)
			return
		}
		if err != nil {
			l.fail(c, "sse: bad response")
			return
		}
		if r.Status != 200 {
			l.httpRefused(c, "sse: stream", r.Status)
			return
		}
		c.state = stHandshake
		c.sse = &SSEParser{}
		l.startPost(c, false)
		data = data[r.HeaderLen:]
	}
	c.in = nil // the parser keeps partial lines
	err := c.sse.Feed(data, func(ev []byte) error {
		l.onMessage(c, ev)
		if c.fd < 0 {
			return errConnGone
		}
		return nil
	})
	if err != nil && c.fd >= 0 {
		l.lost(c, "sse: "+err.Error())
	}
}

var errConnGone = errors.New("connection gone")

// ssePing sends an SSE connection's keep-alive Ping by POST, unless one of
// its POSTs is already under way.
func (l *Loader) ssePing(c *cconn) {
	if c.auxState == auxNone {
		l.startPost(c, true)
	}
}

// startPost sends a POST of SSE connection c (ping: a Ping, else the
// handshake) on a short-lived socket, or queues it while maxAux are open.
func (l *Loader) startPost(c *cconn, ping bool) {
	c.auxPing = ping
	if l.auxOpen >= maxAux {
		c.auxState = auxQueued
		l.auxWait = append(l.auxWait, c)
		return
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: l.src[c.idx%len(l.src)]}); err == nil {
			dst := l.dst
			if err = unix.Connect(fd, &dst); errors.Is(err, unix.EINPROGRESS) {
				err = nil
			}
		}
		if err == nil {
			err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(fd)})
		}
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		l.postDone(c, "sse: post socket: "+errName(err))
		return
	}
	for fd >= len(l.byFD) {
		l.byFD = append(l.byFD, make([]*cconn, len(l.byFD)+1024)...)
	}
	l.byFD[fd] = c
	c.aux, c.auxState = fd, auxConnect
	body := handshakeBody(c)
	if ping {
		body = hubproto.JSON.Ping()
	}
	c.auxOut = PostRequest(l.host, l.cfg.hub(), c.token, body, false, true)
	l.st.Posts++
	l.auxOpen++
	l.st.AuxPeak = max(l.st.AuxPeak, l.auxOpen)
}

// onAux handles an event of an SSE connection's POST socket.
func (l *Loader) onAux(c *cconn, ev uint32) {
	if c.auxState == auxConnect {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if e, err := unix.GetsockoptInt(c.aux, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
			l.postDone(c, "sse: post connect: "+unix.ErrnoName(unix.Errno(e)))
			return
		}
		c.auxState = auxRead
	}
	if len(c.auxOut) > 0 {
		n, err := unix.Write(c.aux, c.auxOut)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			l.postDone(c, "sse: post write: "+errName(err))
			return
		}
		c.auxOut = c.auxOut[max(n, 0):]
		if len(c.auxOut) > 0 {
			return // EPOLLOUT again
		}
		c.auxOut = nil
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.aux, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.aux)})
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	n, err := unix.Read(c.aux, l.readBuf)
	if errors.Is(err, unix.EAGAIN) {
		return
	}
	if err != nil || n == 0 {
		l.postDone(c, "sse: post: no answer")
		return
	}
	c.auxIn = append(c.auxIn, l.readBuf[:n]...)
	r, err := ParseResponseHead(c.auxIn)
	if errors.Is(err, ErrIncomplete) {
		return
	}
	switch {
	case err != nil:
		l.postDone(c, "sse: post: bad response")
	case r.Status != 200:
		l.postDone(c, "sse: post status "+strconv.Itoa(r.Status))
	default:
		l.postDone(c, "")
	}
}

// postDone ends connection c's POST: failure "" is success. A failed
// handshake POST fails the attempt; a failed ping is counted (the stream
// tells whether the connection is gone).
func (l *Loader) postDone(c *cconn, failure string) {
	ping := c.auxPing
	l.closeAux(c)
	if failure != "" {
		if ping {
			l.noteErr(failure)
		} else if c.fd >= 0 {
			l.fail(c, failure)
		}
	}
}

// closeAux closes connection c's POST socket, if any, and starts a
// waiting POST in its place.
func (l *Loader) closeAux(c *cconn) {
	st := c.auxState
	c.auxState, c.auxOut, c.auxIn = auxNone, nil, nil
	if c.aux >= 0 {
		l.byFD[c.aux] = nil
		unix.Close(c.aux)
		c.aux = -1
	}
	if st != auxConnect && st != auxRead {
		return // none open, or queued: skipped when its turn comes
	}
	l.auxOpen--
	for len(l.auxWait) > 0 && l.auxOpen < maxAux {
		w := l.auxWait[0]
		l.auxWait[0] = nil
		l.auxWait = l.auxWait[1:]
		if w.auxState == auxQueued && w.fd >= 0 {
			l.startPost(w, w.auxPing)
		}
	}
	if len(l.auxWait) == 0 {
		l.auxWait = nil
	}
}
