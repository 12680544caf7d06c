// Package fanout is the registry of a node's local connections, groups and
// users per hub, and the encode-once delivery path: a message is framed
// once into a complete WebSocket frame and the same bytes are queued to
// every recipient, with no per-recipient allocation or encoding.
//
// Registries are sharded (64 shards, each behind its own RWMutex); a
// delivery snapshots the recipients into a pooled slice, releases the lock
// and then queues, so no I/O happens under a lock.
//
//	r := fanout.NewRouter([]string{"chat"}, backplane)
//	e, _ := r.Hub("chat").Add(member, connID, userID)
//	r.Hub("chat").AddToGroup(connID, "room1")
//	r.Deliver(&backplane.Message{Hub: "chat", Kind: backplane.Group, Name: "room1", Payload: rec})
//	r.Hub("chat").Remove(e)
package fanout
