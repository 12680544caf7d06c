package fanout

import (
	"sync"
	"sync/atomic"

	"github.com/edgeplane/edgeplane/internal/hubproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// Frames is one message on its way to its local recipients: its complete
// WebSocket frame in each hub protocol, each built at most once, on the
// first Frame call for that protocol, so that a protocol no recipient
// speaks costs nothing and every recipient of one protocol gets the same
// bytes.
//
//   - JSON: the record as it came (REST, upstream, the backplane's json
//     entry) in a text frame.
//   - MessagePack: the backplane message's messagepack entry, as it is,
//     when it had one (an ASP.NET Core server with MessagePack writes
//     both); else the JSON records converted once
//     (hubproto.JSONRecordsToMessagePack). In a binary frame.
//
// Member.Deliver calls Frame during the delivery and keeps only the
// returned frame. A large delivery runs on several goroutines at once
// (Hub.Deliver), so Frame is safe for concurrent use: the first caller for
// a protocol builds its frame under mu, later callers see it through an
// atomic flag. Frame's fast path (the frame is built) is inlined into the
// member: a recipient costs a load and a comparison more than when every
// frame was JSON.
type Frames struct {
	json, mp []byte // the records as received; mp nil when the message had none
	per      [hubproto.NumIDs]protoFrame
	sse      []byte      // the JSON records as one Server-Sent Event (sse.go), built on first use under mu
	sseReady atomic.Bool // sse is built (empty: too large)
	r        *Router     // limits and counters; nil for NewFrames
	mu       sync.Mutex  // serialises build (and guards scratch)
	scratch  []byte      // transcoding buffer (pooled with the Frames)
}

// protoFrame is the frame of one protocol. frame and failed are written
// once, under Frames.mu, before ready is set.
type protoFrame struct {
	frame  []byte
	ready  atomic.Bool // frame is built (it may be nil: failed)
	failed bool        // cannot be sent in this protocol (counted once)
}

// NewFrames returns the frames of a message whose JSON records are json
// (each ended by 0x1e) and, when not nil, whose MessagePack records (each
// behind its VarInt length) are messagePack. Outside a Router there is no
// size limit and nothing is counted.
func NewFrames(json, messagePack []byte) *Frames {
	return &Frames{json: json, mp: messagePack}
}

// Frame returns the message's frame for the protocol numbered id, built on
// the first call: shared, never modify it. It returns nil when the message
// cannot be sent in that protocol (its records do not convert, or the
// frame is larger than a connection's outbound queue): the recipient gets
// nothing and the Router has counted the drop once.
func (f *Frames) Frame(id hubproto.ID) []byte {
	p := &f.per[id]
	if !p.ready.Load() {
		return f.build(id)
	}
	return p.frame
}

// build makes the frame for id (Frame's slow path).
func (f *Frames) build(id hubproto.ID) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &f.per[id]
	if p.ready.Load() || p.failed {
		return p.frame
	}
	var fr []byte
	switch id {
	case hubproto.IDJSON:
		fr = wsframe.TextFrame(f.json)
	case hubproto.IDMessagePack:
		rec := f.mp
		if len(rec) == 0 || hubproto.MessagePack.Split(rec, func([]byte) error { return nil }) != nil {
			// JSON only (or an entry that does not frame: the JSON is
			// the same message).
			var err error
			if f.scratch, err = hubproto.JSONRecordsToMessagePack(f.scratch[:0], f.json); err != nil {
				f.fail(id, dropTranscode)
				return nil
			}
			rec = f.scratch
			if f.r != nil {
				f.r.transcoded.Inc()
			}
		}
		fr = wsframe.BinaryFrame(rec)
	default:
		return nil
	}
	if f.r != nil {
		if f.r.MaxFrameBytes > 0 && len(fr) > f.r.MaxFrameBytes {
			f.fail(id, dropTooLarge)
			return nil
		}
		f.r.encodes[id].Inc()
	}
	p.frame = fr
	p.ready.Store(true)
	return fr
}

// fail marks id unsendable. f.mu must be held.
func (f *Frames) fail(id hubproto.ID, reason int) {
	f.per[id].failed = true
	f.per[id].ready.Store(true)
	if f.r != nil {
		f.r.dropped[reason].Inc()
	}
}

var framesPool = sync.Pool{New: func() any { return new(Frames) }}

// getFrames returns pooled Frames for a message of r.
func (r *Router) getFrames(json, mp []byte) *Frames {
	f := framesPool.Get().(*Frames)
	f.json, f.mp, f.r = json, mp, r
	return f
}

// putFrames pools f once its delivery is over: members keep the frames,
// never f.
func putFrames(f *Frames) {
	scratch := f.scratch
	if cap(scratch) > 64<<10 {
		scratch = nil
	}
	f.json, f.mp, f.r, f.scratch, f.sse = nil, nil, nil, scratch[:0], nil
	f.sseReady.Store(false)
	for i := range f.per {
		p := &f.per[i]
		p.frame, p.failed = nil, false
		p.ready.Store(false)
	}
	framesPool.Put(f)
}
