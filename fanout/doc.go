// Package fanout is the registry of a node's local connections, groups and
// users per hub, and the encode-once delivery path: a message is framed
// once per hub protocol into a complete WebSocket frame and the same bytes
// are queued to every recipient of that protocol, with no per-recipient
// allocation or encoding.
//
// Frames (frames.go) builds each protocol's frame lazily, on the first
// recipient that speaks it: JSON as the record came, MessagePack from the
// backplane's messagepack entry when it has one, else converted from the
// JSON once (hubproto.JSONRecordsToMessagePack). A member asks for the
// frame of its own protocol (Member.Deliver calls Frames.Frame); a
// protocol nobody in the message's audience speaks is never encoded.
// edgeplane_fanout_encodes_total{protocol} counts the frames built (at most
// one per message and protocol), edgeplane_fanout_transcoded_total the
// conversions.
//
// Registries are sharded (64 shards, each behind its own RWMutex); a
// delivery snapshots the recipients into a pooled slice, releases the lock
// and then queues, so no I/O happens under a lock. A message to 2,048
// recipients or more is split over up to GOMAXPROCS goroutines (each
// recipient's delivery is a socket write, ~5-10 µs), as the kernel floor
// splits its write loop over one thread per core; Deliver returns once
// every recipient has it.
//
// A shard's connections are a dense slice, which broadcasts copy, indexed
// by connection id with a compact open-addressing table of int32 positions
// (linear probing, backward-shift deletion) instead of a map: ~16-20 B per
// connection for both rather than ~52-60 B with map[string]*Entry. The
// table and the slice shrink again after a mass disconnect. Each
// connection embeds its Entry (56 B); the groups it joined, which are rare,
// sit behind a pointer. See index.go.
//
// Router.Deliver is where every backplane message enters delivery; a
// record that no client could take is dropped there and counted
// (edgeplane_fanout_dropped_total{reason}): one that is not valid UTF-8
// (in a text frame it would make every recipient's browser or Node client
// fail its connection) or whose frame is larger than a connection's
// outbound queue (Router.MaxFrameBytes: it would close every recipient as
// a slow client). Router.Check says the same to the REST API. A message
// that cannot be sent in one protocol only (it does not convert, or its
// frame in that protocol is too large) reaches that protocol's recipients
// never and is counted once (transcode, too_large).
//
//	r := fanout.NewRouter([]string{"chat"}, backplane)
//	e, _ := r.Hub("chat").Add(member, connID, userID)
//	r.Hub("chat").AddToGroup(connID, "room1")
//	r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.Group, Name: "room1", Payload: rec})
//	r.Hub("chat").Remove(e)
package fanout
