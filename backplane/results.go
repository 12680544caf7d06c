package backplane

import (
	"context"
	"strings"
)

// Client results: a server-to-client Invocation with an invocation id
// whose Completion goes back to whoever sent it, as ASP.NET Core's
// Redis backplane does (Message.ReturnChannel; wire/results.go).

// Returner is what the client-result path needs of a backplane: Memory
// and Redis implement it.
type Returner interface {
	// ReturnChannel is the channel on which this node receives the
	// completions of the client results it asked for on hub
	// (P:internal:return:{server}).
	ReturnChannel(hub string) string
	// Return publishes a client's Completion record, framed as protocol
	// frames it, to a return channel.
	Return(ctx context.Context, channel, protocol string, completion []byte) error
}

// ReturnReceiver is the part of a Receiver that takes the completions
// arriving on this node's return channels. A Receiver without it drops
// them.
type ReturnReceiver interface {
	DeliverReturn(hub, protocol string, completion []byte)
}

// memoryReturnSuffix ends a Memory return channel: the hub name before it.
const memoryReturnSuffix = ":internal:return"

// ReturnChannel implements Returner.
func (b *Memory) ReturnChannel(hub string) string { return hub + memoryReturnSuffix }

// Return implements Returner: it hands the completion to the local
// receiver (the only node).
func (b *Memory) Return(_ context.Context, channel, protocol string, completion []byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	hub, ok := strings.CutSuffix(channel, memoryReturnSuffix)
	if rr, isRR := b.r.(ReturnReceiver); ok && isRR {
		rr.DeliverReturn(hub, protocol, completion)
	}
	return nil
}
