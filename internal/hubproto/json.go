package hubproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// JSONProtocol is the JSON hub protocol, version 1: text frames, each
// record a JSON object ended by 0x1e. Use the JSON value.
type JSONProtocol struct{}

// JSON is the JSON hub protocol.
var JSON JSONProtocol

var _ Protocol = JSON

// jsonPing is the Ping record, separator included.
var jsonPing = []byte("{\"type\":6}\x1e")

// Name implements Protocol: "json".
func (JSONProtocol) Name() string { return "json" }

// Version implements Protocol: 1.
func (JSONProtocol) Version() int { return 1 }

// Binary implements Protocol: JSON records travel in text frames.
func (JSONProtocol) Binary() bool { return false }

// ID implements Protocol: IDJSON.
func (JSONProtocol) ID() ID { return IDJSON }

// Split implements Protocol: records end in 0x1e, which JSON text can hold
// only escaped.
func (JSONProtocol) Split(msg []byte, fn func(rec []byte) error) error {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, RecordSeparator)
		if i < 0 {
			return ErrIncompleteRecord
		}
		if err := fn(msg[:i]); err != nil {
			return err
		}
		msg = msg[i+1:]
	}
	return nil
}

// jsonMessage is what Parse decodes: json.RawMessage keeps the arguments
// as sent.
type jsonMessage struct {
	Type         MessageType     `json:"type"`
	InvocationID string          `json:"invocationId"`
	Target       string          `json:"target"`
	Arguments    json.RawMessage `json:"arguments"`
	SequenceID   *int64          `json:"sequenceId"`
	StreamIDs    []string        `json:"streamIds"`
	Item         json.RawMessage `json:"item"`
	Result       json.RawMessage `json:"result"`
	Error        *string         `json:"error"`
}

// Parse implements Protocol with encoding/json: unknown properties are
// ignored, property names match case-insensitively, and a missing or zero
// type is ErrMissingType. Ack and Sequence need their sequenceId; a
// StreamInvocation, StreamItem, Completion and CancelInvocation their
// invocationId; streamIds must be non-empty strings. A StreamItem's item
// and a Completion's result are returned in Arguments, a Completion's
// error in Error (HasError).
func (JSONProtocol) Parse(rec []byte) (Message, error) {
	var m jsonMessage
	if err := json.Unmarshal(rec, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	if m.Type == 0 {
		return Message{}, ErrMissingType
	}
	msg := Message{Type: m.Type, InvocationID: m.InvocationID, Target: m.Target, Arguments: m.Arguments}
	switch m.Type {
	case TypeInvocation, TypeStreamInvocation:
		for _, id := range m.StreamIDs {
			if id == "" {
				return Message{}, fmt.Errorf("%w: null or empty value in streamIds", ErrInvalidMessage)
			}
		}
		msg.StreamIDs = m.StreamIDs
		if m.Type == TypeStreamInvocation && m.InvocationID == "" {
			return Message{}, fmt.Errorf("%w: null or empty invocation ID for StreamInvocation message", ErrInvalidMessage)
		}
	case TypeStreamItem, TypeCompletion, TypeCancelInvocation:
		if m.InvocationID == "" {
			return Message{}, fmt.Errorf("%w: null or empty invocation ID for %s message", ErrInvalidMessage, m.Type)
		}
		msg.Arguments = nil
		switch {
		case m.Type == TypeStreamItem:
			if m.Item == nil {
				return Message{}, fmt.Errorf("%w: missing required property 'item'", ErrInvalidMessage)
			}
			msg.Arguments = m.Item
		case m.Type == TypeCompletion && m.Error != nil:
			if m.Result != nil {
				return Message{}, fmt.Errorf("%w: the 'error' and 'result' properties are mutually exclusive", ErrInvalidMessage)
			}
			msg.Error, msg.HasError = *m.Error, true
		case m.Type == TypeCompletion:
			msg.Arguments = m.Result
		}
	}
	if m.Type == TypeAck || m.Type == TypeSequence {
		if m.SequenceID == nil {
			return Message{}, fmt.Errorf("%w: missing required property 'sequenceId'", ErrInvalidMessage)
		}
		msg.SequenceID = *m.SequenceID
	}
	return msg, nil
}

// PeekType implements Protocol. A record that starts {"type":N, as every
// SignalR implementation writes it, is read without decoding; any other
// is decoded.
func (JSONProtocol) PeekType(rec []byte) MessageType {
	const prefix = `{"type":`
	if len(rec) > len(prefix) && string(rec[:len(prefix)]) == prefix {
		t, i := 0, len(prefix)
		for ; i < len(rec) && rec[i] >= '0' && rec[i] <= '9' && i < len(prefix)+9; i++ {
			t = t*10 + int(rec[i]-'0')
		}
		if i > len(prefix) && i < len(rec) && (rec[i] == ',' || rec[i] == '}') {
			return MessageType(t)
		}
	}
	var m struct {
		Type MessageType `json:"type"`
	}
	if json.Unmarshal(rec, &m) != nil {
		return 0
	}
	return m.Type
}

// IsPing implements Protocol: the exact record {"type":6}.
func (JSONProtocol) IsPing(rec []byte) bool { return string(rec) == `{"type":6}` }

// Ping implements Protocol: {"type":6} and 0x1e.
func (JSONProtocol) Ping() []byte { return jsonPing }

// The writers grow dst once for the usual size (escapes aside), so that a
// nil dst costs one allocation.

// AppendInvocation implements Protocol:
// {"type":1,"invocationId":id,"target":target,"arguments":args}.
func (JSONProtocol) AppendInvocation(dst []byte, invocationID, target string, args []byte) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, 40+len(invocationID)+len(target)+len(args))
	dst = append(dst, `{"type":1,`...)
	if invocationID != "" {
		dst = append(dst, `"invocationId":`...)
		dst = appendString(dst, invocationID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"target":`...)
	dst = appendString(dst, target)
	dst, err := appendArguments(dst, n, "invocation", target, args)
	if err != nil {
		return dst, err
	}
	return append(dst, '}', RecordSeparator), nil
}

// appendArguments appends ,"arguments":args ([] when args is empty) to an
// invocation (what) of target; on invalid args it returns dst[:n], the
// record's start, and an error that names both.
func appendArguments(dst []byte, n int, what, target string, args []byte) ([]byte, error) {
	dst = append(dst, `,"arguments":`...)
	if len(args) == 0 {
		return append(dst, "[]"...), nil
	}
	dst, err := appendRaw(dst, args)
	if err != nil {
		return dst[:n], fmt.Errorf("encode %s %q: arguments: %w", what, target, err)
	}
	return dst, nil
}

// AppendStreamItem implements Protocol:
// {"type":2,"invocationId":id,"item":item}; an empty item is null.
func (JSONProtocol) AppendStreamItem(dst []byte, invocationID string, item []byte) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, 40+len(invocationID)+len(item))
	dst = appendTypeID(dst, TypeStreamItem, invocationID)
	dst = append(dst, `,"item":`...)
	if len(item) == 0 {
		dst = append(dst, "null"...)
	} else {
		var err error
		if dst, err = appendRaw(dst, item); err != nil {
			return dst[:n], fmt.Errorf("encode stream item: %w", err)
		}
	}
	return append(dst, '}', RecordSeparator), nil
}

// AppendCompletion implements Protocol:
// {"type":3,"invocationId":id,"result":result}, without "result" when
// result is empty.
func (JSONProtocol) AppendCompletion(dst []byte, invocationID string, result []byte) ([]byte, error) {
	n := len(dst)
	dst = slices.Grow(dst, 40+len(invocationID)+len(result))
	dst = appendTypeID(dst, TypeCompletion, invocationID)
	if len(result) > 0 {
		dst = append(dst, `,"result":`...)
		var err error
		if dst, err = appendRaw(dst, result); err != nil {
			return dst[:n], fmt.Errorf("encode completion: %w", err)
		}
	}
	return append(dst, '}', RecordSeparator), nil
}

// AppendCompletionError implements Protocol:
// {"type":3,"invocationId":id,"error":errMsg}.
func (JSONProtocol) AppendCompletionError(dst []byte, invocationID, errMsg string) []byte {
	dst = slices.Grow(dst, 40+len(invocationID)+len(errMsg))
	dst = appendTypeID(dst, TypeCompletion, invocationID)
	dst = append(dst, `,"error":`...)
	dst = appendString(dst, errMsg)
	return append(dst, '}', RecordSeparator)
}

// AppendClose implements Protocol:
// {"type":7,"error":errMsg,"allowReconnect":true}, each property only
// when set.
func (JSONProtocol) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	dst = slices.Grow(dst, 40+len(errMsg))
	dst = append(dst, `{"type":7`...)
	if errMsg != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, errMsg)
	}
	if allowReconnect {
		dst = append(dst, `,"allowReconnect":true`...)
	}
	return append(dst, '}', RecordSeparator)
}

// AppendAck implements Protocol: {"type":8,"sequenceId":n}.
func (JSONProtocol) AppendAck(dst []byte, sequenceID int64) []byte {
	return appendSeq(dst, TypeAck, sequenceID)
}

// AppendSequence implements Protocol: {"type":9,"sequenceId":n}.
func (JSONProtocol) AppendSequence(dst []byte, sequenceID int64) []byte {
	return appendSeq(dst, TypeSequence, sequenceID)
}

func appendTypeID(dst []byte, t MessageType, invocationID string) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(t), 10)
	dst = append(dst, `,"invocationId":`...)
	return appendString(dst, invocationID)
}

func appendSeq(dst []byte, t MessageType, id int64) []byte {
	dst = slices.Grow(dst, 40)
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(t), 10)
	dst = append(dst, `,"sequenceId":`...)
	dst = strconv.AppendInt(dst, id, 10)
	return append(dst, '}', RecordSeparator)
}
