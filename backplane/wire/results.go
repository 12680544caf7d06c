package wire

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// Client results (ASP.NET Core's Clients.Client(id).InvokeAsync<T> over
// the Redis backplane): the invocation to the connection's channel
// carries two more items, the invocation id and the channel the
// client's Completion must go back to (P:internal:return:{server}); the
// owner of the connection publishes the Completion there as
// [protocolName, bin(the Completion, framed as that protocol frames it)].

// AppendInvocationReturn appends [[excluded...], {"json": record},
// invocationID, returnChannel] to b.
func AppendInvocationReturn(b []byte, excluded []string, record []byte, invocationID, returnChannel string) []byte {
	b = msgp.AppendArrayHeader(b, 4)
	b = msgp.AppendArrayHeader(b, uint32(len(excluded)))
	for _, id := range excluded {
		b = msgp.AppendString(b, id)
	}
	b = msgp.AppendMapHeader(b, 1)
	b = msgp.AppendString(b, ProtocolJSON)
	b = msgp.AppendBytes(b, record)
	b = msgp.AppendString(b, invocationID)
	return msgp.AppendString(b, returnChannel)
}

// ReadInvocationReturn returns an invocation's invocation id and return
// channel (strings that alias b), both "" when it has none (an ordinary
// two-item invocation). It reads no further than it needs: call it on a
// payload ReadInvocation accepted.
func ReadInvocationReturn(b []byte) (invocationID, returnChannel string, err error) {
	extra, b, err := readArrayAtLeast(b, 2, "invocation")
	if err != nil || extra < 2 {
		return "", "", err
	}
	for i := 0; i < 2; i++ {
		if b, err = msgp.Skip(b); err != nil {
			return "", "", malformed("invocation", err)
		}
	}
	id, b, err := msgp.ReadStringZC(b)
	if err != nil {
		return "", "", malformed("invocation id", err)
	}
	ch, _, err := msgp.ReadStringZC(b)
	if err != nil {
		return "", "", malformed("return channel", err)
	}
	if len(id) == 0 || len(ch) == 0 {
		return "", "", fmt.Errorf("%w: empty invocation id or return channel", ErrMalformed)
	}
	return msgp.UnsafeString(id), msgp.UnsafeString(ch), nil
}

// AppendCompletion appends a client's Completion for a return channel:
// [protocol, bin(completion)], completion framed as protocol frames it
// (a JSON record ends in 0x1e, a MessagePack one has its length prefix).
func AppendCompletion(b []byte, protocol string, completion []byte) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendString(b, protocol)
	return msgp.AppendBytes(b, completion)
}

// ReadCompletion decodes what AppendCompletion wrote; the results alias
// b.
func ReadCompletion(b []byte) (protocol string, completion []byte, err error) {
	extra, b, err := readArrayAtLeast(b, 2, "completion")
	if err != nil {
		return "", nil, err
	}
	p, b, err := msgp.ReadStringZC(b)
	if err != nil {
		return "", nil, malformed("protocol name", err)
	}
	c, b, err := readBinOrStr(b)
	if err != nil {
		return "", nil, malformed("completion", err)
	}
	if err := skipRest(b, extra); err != nil {
		return "", nil, err
	}
	return msgp.UnsafeString(p), c, nil
}
