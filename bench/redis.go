package bench

import (
	"fmt"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// EncodeInvocation encodes a backplane invocation in the ASP.NET Core
// SignalR Redis wire format: [ [excluded...], { "json": record } ], where
// record is the complete JSON hub-protocol record, 0x1e included. It is
// the nodes' own encoder, wire.AppendInvocation.
func EncodeInvocation(dst []byte, excluded []string, record []byte) []byte {
	return wire.AppendInvocation(dst, excluded, record)
}

// DecodeInvocation decodes a backplane invocation with the nodes' decoder,
// wire.ReadInvocation, and returns the excluded connection ids and the
// "json" record; both alias b, which must not be modified while they are
// in use. Errors wrap wire.ErrMalformed.
func DecodeInvocation(b []byte) (excluded []string, record []byte, err error) {
	excluded, record, err = wire.ReadInvocation(b, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: backplane invocation: %w", err)
	}
	return excluded, record, nil
}
