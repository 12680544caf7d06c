package bench

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// EncodeInvocation encodes a backplane invocation in the ASP.NET Core
// SignalR Redis wire format: [ [excluded...], { "json": record } ], where
// record is the complete JSON hub-protocol record, 0x1e included.
func EncodeInvocation(dst []byte, excluded []string, record []byte) []byte {
	dst = msgp.AppendArrayHeader(dst, 2)
	dst = msgp.AppendArrayHeader(dst, uint32(len(excluded)))
	for _, e := range excluded {
		dst = msgp.AppendString(dst, e)
	}
	dst = msgp.AppendMapHeader(dst, 1)
	dst = msgp.AppendString(dst, "json")
	return msgp.AppendBytes(dst, record)
}

// DecodeInvocation decodes a backplane invocation and returns the excluded
// connection ids and the "json" record (aliasing b).
func DecodeInvocation(b []byte) (excluded []string, record []byte, err error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 2 {
		return nil, nil, fmt.Errorf("bench: backplane invocation: outer array (%d): %w", n, err)
	}
	ne, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: backplane invocation: excluded: %w", err)
	}
	for i := uint32(0); i < ne; i++ {
		var s string
		s, b, err = msgp.ReadStringBytes(b)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: backplane invocation: excluded id: %w", err)
		}
		excluded = append(excluded, s)
	}
	nm, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: backplane invocation: protocol map: %w", err)
	}
	for i := uint32(0); i < nm; i++ {
		var k string
		k, b, err = msgp.ReadStringBytes(b)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: backplane invocation: protocol name: %w", err)
		}
		var v []byte
		v, b, err = msgp.ReadBytesZC(b)
		if err != nil {
			return nil, nil, fmt.Errorf("bench: backplane invocation: payload: %w", err)
		}
		if k == "json" {
			record = v
		}
	}
	if record == nil {
		return excluded, nil, fmt.Errorf("bench: backplane invocation: no json payload")
	}
	return excluded, record, nil
}
