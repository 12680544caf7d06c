package main

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Streams (entry fields in backplane/doc.go):
//
//   - Counter(n, delayMs), a stream invocation: n StreamItems 0..n-1,
//     delayMs apart, then a Completion. A cancelInvocation entry (the
//     client disposed of its subscription), or the connection's
//     disconnected entry listing it as abandoned, stops it; the app then
//     sends the caller a "streamCancelled" invocation with the stream's
//     id, so that a test can see the cancel reached the app.
//   - Sum(stream), an invocation with an upload stream (streamIds): adds
//     the numbers the client streams and completes with the total when
//     the client completes the stream; an error Completion of the stream
//     fails the invocation with that error.
//
// The XREADGROUP loop handles entries one at a time, in order; a
// running Counter is one goroutine of this app (not of edgeplane).

// streams is what the app knows of running streams.
type streams struct {
	mu      sync.Mutex
	running map[string]context.CancelFunc // conn/invocationId → stop a Counter
	uploads map[string]*upload            // conn/streamId → its Sum
}

type upload struct {
	conn, invID string
	sum         float64
}

func key(conn, id string) string { return conn + "/" + id }

// streamInvocation handles an invocation entry whose messageType is
// streamInvocation.
func (a *App) streamInvocation(ctx context.Context, m redis.XMessage, conn, target, invID string, args []json.RawMessage) {
	if target != "Counter" {
		a.complete(ctx, conn, invID, nil, "unknown streaming method "+target)
		return
	}
	var n, delay int
	if len(args) != 2 || json.Unmarshal(args[0], &n) != nil || json.Unmarshal(args[1], &delay) != nil || n < 0 || delay < 0 {
		a.complete(ctx, conn, invID, nil, "Counter(n, delayMs) needs two non-negative integers")
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	a.streams.mu.Lock()
	if a.streams.running == nil {
		a.streams.running = make(map[string]context.CancelFunc)
	}
	a.streams.running[key(conn, invID)] = cancel
	a.streams.mu.Unlock()
	go func() {
		defer func() {
			a.streams.mu.Lock()
			delete(a.streams.running, key(conn, invID))
			a.streams.mu.Unlock()
			cancel()
		}()
		ch := a.cfg.Prefix + ":connection:" + conn
		for i := 0; i < n; i++ {
			if i > 0 && delay > 0 {
				select {
				case <-sctx.Done():
				case <-time.After(time.Duration(delay) * time.Millisecond):
				}
			}
			if sctx.Err() != nil {
				a.log.Info("stream cancelled", "connectionId", conn, "invocationId", invID, "sent", i)
				a.invokeClient(ctx, conn, "streamCancelled", invID)
				return
			}
			item, _ := json.Marshal(struct {
				Type         int    `json:"type"`
				InvocationID string `json:"invocationId"`
				Item         int    `json:"item"`
			}{2, invID, i})
			_ = a.publish(ctx, ch, nil, append(item, 0x1e))
		}
		a.complete(ctx, conn, invID, nil, "")
	}()
	_ = m
}

// cancelStream stops a running Counter; it reports whether one ran.
func (a *App) cancelStream(conn, invID string) bool {
	a.streams.mu.Lock()
	cancel := a.streams.running[key(conn, invID)]
	a.streams.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return cancel != nil
}

// startUpload handles an invocation entry with streamIds.
func (a *App) startUpload(ctx context.Context, conn, target, invID string, streamIDs []string) {
	if target != "Sum" || len(streamIDs) != 1 {
		a.complete(ctx, conn, invID, nil, "unknown method "+target+" with "+strconv.Itoa(len(streamIDs))+" upload streams")
		return
	}
	a.streams.mu.Lock()
	if a.streams.uploads == nil {
		a.streams.uploads = make(map[string]*upload)
	}
	a.streams.uploads[key(conn, streamIDs[0])] = &upload{conn: conn, invID: invID}
	a.streams.mu.Unlock()
}

// streamItem handles a client's streamItem entry.
func (a *App) streamItem(m redis.XMessage, conn string) {
	var v float64
	if err := json.Unmarshal([]byte(field(m, "item")), &v); err != nil {
		a.log.Warn("stream item that is not a number", "connectionId", conn, "err", err)
		return
	}
	a.streams.mu.Lock()
	if u := a.streams.uploads[key(conn, field(m, "invocationId"))]; u != nil {
		u.sum += v
	}
	a.streams.mu.Unlock()
}

// clientCompletion handles a client's completion entry: the end of an
// upload stream (or the answer to an invocation the app sent the client,
// which this app does not send).
func (a *App) clientCompletion(ctx context.Context, m redis.XMessage, conn string) {
	k := key(conn, field(m, "invocationId"))
	a.streams.mu.Lock()
	u := a.streams.uploads[k]
	delete(a.streams.uploads, k)
	a.streams.mu.Unlock()
	if u == nil {
		a.log.Info("client completion", "connectionId", conn, "invocationId", field(m, "invocationId"), "result", field(m, "result"), "error", field(m, "error"))
		return
	}
	if e, ok := m.Values["error"].(string); ok {
		a.complete(ctx, conn, u.invID, nil, "upload failed: "+e)
		return
	}
	total, _ := json.Marshal(u.sum)
	a.complete(ctx, conn, u.invID, total, "")
}

// abandoned stops what a disconnected connection left running.
func (a *App) abandoned(m redis.XMessage, conn string) {
	var ids []string
	if s := field(m, "abandoned"); s != "" {
		_ = json.Unmarshal([]byte(s), &ids)
	}
	for _, id := range ids {
		if a.cancelStream(conn, id) {
			a.log.Info("stream abandoned", "connectionId", conn, "invocationId", id)
		}
		a.streams.mu.Lock()
		delete(a.streams.uploads, key(conn, id))
		a.streams.mu.Unlock()
	}
}

// invokeClient sends the caller a non-blocking invocation.
func (a *App) invokeClient(ctx context.Context, conn, target string, args ...any) {
	rec, _ := json.Marshal(struct {
		Type      int    `json:"type"`
		Target    string `json:"target"`
		Arguments []any  `json:"arguments"`
	}{1, target, args})
	_ = a.publish(ctx, a.cfg.Prefix+":connection:"+conn, nil, append(rec, 0x1e))
}
