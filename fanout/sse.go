package fanout

import "github.com/edgeplane/edgeplane/internal/sse"

// SSE returns the message as one Server-Sent Event carrying its JSON
// records (the ServerSentEvents transport is text only), built on the
// first call and shared by every recipient on that transport: never
// modify it. It returns nil when the event is larger than a connection's
// outbound queue (the drop is counted once).
func (f *Frames) SSE() []byte {
	if f.sse != nil {
		if len(f.sse) == 0 {
			return nil // too large, counted
		}
		return f.sse
	}
	ev := sse.AppendEvent(make([]byte, 0, len(f.json)+16), f.json)
	if f.r != nil && f.r.MaxFrameBytes > 0 && len(ev) > f.r.MaxFrameBytes {
		f.sse = []byte{}
		f.r.dropped[dropTooLarge].Inc()
		return nil
	}
	f.sse = ev
	return ev
}
