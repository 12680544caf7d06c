package fanout

import "github.com/edgeplane/edgeplane/internal/sse"

// SSE returns the message as one Server-Sent Event carrying its JSON
// records (the ServerSentEvents transport is text only), built on the
// first call and shared by every recipient on that transport: never
// modify it. It returns nil when the event is larger than a connection's
// outbound queue (the drop is counted once). Safe for concurrent use, as
// Frame is: a large delivery is split over several goroutines.
func (f *Frames) SSE() []byte {
	if !f.sseReady.Load() {
		f.mu.Lock()
		if !f.sseReady.Load() {
			ev := sse.AppendEvent(make([]byte, 0, len(f.json)+16), f.json)
			if f.r != nil && f.r.MaxFrameBytes > 0 && len(ev) > f.r.MaxFrameBytes {
				ev = []byte{}
				f.r.dropped[dropTooLarge].Inc()
			}
			f.sse = ev
			f.sseReady.Store(true)
		}
		f.mu.Unlock()
	}
	if len(f.sse) == 0 {
		return nil // too large, counted
	}
	return f.sse
}
