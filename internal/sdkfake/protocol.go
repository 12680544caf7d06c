package sdkfake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/edgeplane/edgeplane/internal/hubproto"
)

// The hub protocols as the app's HubConnectionHandler speaks them to its
// clients through the service: JSON and MessagePack records, written with
// internal/hubproto's writers (byte for byte ASP.NET Core's), read here.

const (
	protoJSON        = "json"
	protoMessagePack = "messagepack"
)

func protocolOf(name string) hubproto.Protocol {
	switch name {
	case protoJSON:
		return hubproto.JSON
	case protoMessagePack:
		return hubproto.MessagePack
	}
	return nil
}

// appendInvocation writes an Invocation of target with the JSON array
// args in protocol p.
func appendInvocation(p, invocationID, target string, args []byte) ([]byte, error) {
	switch p {
	case protoJSON:
		return hubproto.JSON.AppendInvocation(nil, invocationID, target, args)
	case protoMessagePack:
		mp, err := hubproto.JSONToMessagePack(nil, args)
		if err != nil {
			return nil, err
		}
		return hubproto.MessagePack.AppendInvocation(nil, invocationID, target, mp)
	}
	return nil, fmt.Errorf("sdkfake: protocol %q", p)
}

// appendCompletion writes a Completion with a JSON result (nil: void) or
// an error.
func appendCompletion(p, invocationID string, result []byte, errMsg string) ([]byte, error) {
	proto := protocolOf(p)
	if proto == nil {
		return nil, fmt.Errorf("sdkfake: protocol %q", p)
	}
	if errMsg != "" {
		return proto.AppendCompletionError(nil, invocationID, errMsg), nil
	}
	if p == protoMessagePack && result != nil {
		var err error
		if result, err = hubproto.JSONToMessagePack(nil, result); err != nil {
			return nil, err
		}
	}
	return proto.AppendCompletion(nil, invocationID, result)
}

// record is a client's hub message, arguments and result as JSON.
type record struct {
	Type         hubproto.MessageType
	InvocationID string
	Target       string
	Args         []json.RawMessage
	Result       json.RawMessage // nil: void
	Error        string
	HasError     bool
}

// splitRecords cuts complete records off buf in protocol p and returns
// them and the incomplete rest.
func splitRecords(p string, buf []byte) (recs [][]byte, rest []byte, err error) {
	switch p {
	case protoJSON:
		for {
			i := bytes.IndexByte(buf, hubproto.RecordSeparator)
			if i < 0 {
				return recs, buf, nil
			}
			recs = append(recs, buf[:i])
			buf = buf[i+1:]
		}
	case protoMessagePack:
		for len(buf) > 0 {
			var n uint64
			k := 0
			for ; k < 5 && k < len(buf); k++ {
				n |= uint64(buf[k]&0x7f) << (7 * k)
				if buf[k]&0x80 == 0 {
					break
				}
			}
			if k == 5 {
				return nil, nil, errors.New("sdkfake: bad MessagePack length prefix")
			}
			if k == len(buf) || uint64(len(buf)-k-1) < n {
				return recs, buf, nil
			}
			recs = append(recs, buf[k+1:k+1+int(n)])
			buf = buf[k+1+int(n):]
		}
		return recs, nil, nil
	}
	return nil, nil, fmt.Errorf("sdkfake: protocol %q", p)
}

// parseRecord decodes one record of protocol p.
func parseRecord(p string, rec []byte) (record, error) {
	if p == protoJSON {
		var m struct {
			Type         hubproto.MessageType `json:"type"`
			InvocationID string               `json:"invocationId"`
			Target       string               `json:"target"`
			Arguments    []json.RawMessage    `json:"arguments"`
			Result       json.RawMessage      `json:"result"`
			Error        *string              `json:"error"`
		}
		if err := json.Unmarshal(rec, &m); err != nil {
			return record{}, err
		}
		r := record{Type: m.Type, InvocationID: m.InvocationID, Target: m.Target, Args: m.Arguments, Result: m.Result}
		if m.Error != nil {
			r.Error, r.HasError = *m.Error, true
		}
		return r, nil
	}
	return parseMessagePack(rec)
}

// parseMessagePack reads the MessagePack records a client sends:
// Invocation [1, headers, invocationId, target, arguments, streamIds?],
// Completion [3, headers, invocationId, kind, result?], Ping, Close and
// the others by type only.
func parseMessagePack(rec []byte) (record, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(rec)
	if err != nil || n == 0 {
		return record{}, fmt.Errorf("sdkfake: MessagePack record: %v", err)
	}
	t, b, err := msgp.ReadInt32Bytes(b)
	if err != nil {
		return record{}, err
	}
	r := record{Type: hubproto.MessageType(t)}
	readID := func() error {
		if b, err = msgp.Skip(b); err != nil { // headers
			return err
		}
		if msgp.IsNil(b) {
			b, err = msgp.ReadNilBytes(b)
			return err
		}
		r.InvocationID, b, err = msgp.ReadStringBytes(b)
		return err
	}
	switch r.Type {
	case hubproto.TypeInvocation, hubproto.TypeStreamInvocation:
		if err := readID(); err != nil {
			return r, err
		}
		if r.Target, b, err = msgp.ReadStringBytes(b); err != nil {
			return r, err
		}
		var k uint32
		if k, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return r, err
		}
		for i := uint32(0); i < k; i++ {
			start := b
			if b, err = msgp.Skip(b); err != nil {
				return r, err
			}
			js, err := msgpackToJSON(start[:len(start)-len(b)])
			if err != nil {
				return r, err
			}
			r.Args = append(r.Args, js)
		}
	case hubproto.TypeCompletion:
		if err := readID(); err != nil {
			return r, err
		}
		var kind int32
		if kind, b, err = msgp.ReadInt32Bytes(b); err != nil {
			return r, err
		}
		switch kind {
		case 1:
			r.HasError = true
			r.Error, _, err = msgp.ReadStringBytes(b)
		case 3:
			start := b
			if b, err = msgp.Skip(b); err == nil {
				r.Result, err = msgpackToJSON(start[:len(start)-len(b)])
			}
		}
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// msgpackToJSON converts one MessagePack value to JSON.
func msgpackToJSON(v []byte) (json.RawMessage, error) {
	var x any
	if err := msgpack.Unmarshal(v, &x); err != nil {
		return nil, err
	}
	return json.Marshal(x)
}
