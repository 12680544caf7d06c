package hubproto

import "slices"

// The caller's side of streams: a StreamInvocation (with upload streams)
// and a CancelInvocation. A node never sends them to its clients; test
// clients and tools do, and they complete the protocol's primitives.
// They are methods of the concrete protocols, not of Protocol.

// AppendStreamInvocation appends
// {"type":4,"invocationId":id,"target":target,"arguments":args} with
// "streamIds" when there are any.
func (JSONProtocol) AppendStreamInvocation(dst []byte, invocationID, target string, args []byte, streamIDs []string) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, 60+len(invocationID)+len(target)+len(args))
	dst = appendTypeID(dst, TypeStreamInvocation, invocationID)
	dst = append(dst, `,"target":`...)
	dst = appendString(dst, target)
	dst, err := appendArguments(dst, n, "stream invocation", target, args)
	if err != nil {
		return dst, err
	}
	if len(streamIDs) > 0 {
		dst = append(dst, `,"streamIds":[`...)
		for i, id := range streamIDs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, id)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}', RecordSeparator), nil
}

// AppendCancelInvocation appends {"type":5,"invocationId":id}.
func (JSONProtocol) AppendCancelInvocation(dst []byte, invocationID string) []byte {
	dst = appendTypeID(dst, TypeCancelInvocation, invocationID)
	return append(dst, '}', RecordSeparator)
}

// AppendStreamInvocation appends [4, {}, id, target, args, streamIds].
func (MessagePackProtocol) AppendStreamInvocation(dst []byte, invocationID, target string, args []byte, streamIDs []string) ([]byte, error) {
	return appendMPInvocation(dst, TypeStreamInvocation, invocationID, target, args, streamIDs)
}

// AppendCancelInvocation appends [5, {}, id].
func (MessagePackProtocol) AppendCancelInvocation(dst []byte, invocationID string) []byte {
	return framed(dst, func(b []byte) []byte { return appendHeadID(b, 3, TypeCancelInvocation, invocationID) })
}
