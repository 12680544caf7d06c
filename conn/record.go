package conn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// RecordSeparator ends every SignalR JSON hub-protocol record.
const RecordSeparator = 0x1e

// SignalR hub message types.
const (
	msgInvocation       = 1
	msgStreamItem       = 2
	msgCompletion       = 3
	msgStreamInvocation = 4
	msgCancelInvocation = 5
	msgPing             = 6
	msgClose            = 7
	msgAck              = 8
	msgSequence         = 9
)

var errIncompleteRecord = errors.New("record not terminated by 0x1e")

// splitRecords calls fn for each 0x1e-terminated record in msg (without the
// separator). Bytes after the last separator are an error: clients send
// whole records per WebSocket message.
func splitRecords(msg []byte, fn func(rec []byte) error) error {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, RecordSeparator)
		if i < 0 {
			return errIncompleteRecord
		}
		if err := fn(msg[:i]); err != nil {
			return err
		}
		msg = msg[i+1:]
	}
	return nil
}

// parseHandshake validates a handshake record and returns the error text
// to send back to the client, or "" if the handshake is accepted. Property
// names match exactly, as ASP.NET Core's handshake reader does
// (encoding/json alone would also accept "Protocol" or "PROTOCOL").
func parseHandshake(rec []byte) string {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(rec, &fields); err != nil {
		return "Error parsing handshake request: " + err.Error()
	}
	var protocol string
	var version int
	rawP, okP := fields["protocol"]
	rawV, okV := fields["version"]
	if !okP || !okV || string(rawP) == "null" || string(rawV) == "null" {
		return "Handshake request is missing protocol or version."
	}
	if err := json.Unmarshal(rawP, &protocol); err != nil {
		return "Error parsing handshake request: protocol must be a string."
	}
	if err := json.Unmarshal(rawV, &version); err != nil {
		return "Error parsing handshake request: version must be an integer."
	}
	if protocol != "json" {
		return fmt.Sprintf("The protocol '%s' is not supported.", protocol)
	}
	if version != 1 {
		return fmt.Sprintf("The server does not support version %d of the '%s' protocol.", version, protocol)
	}
	return ""
}

// hubMessage holds the fields edgeplane reads from a client record.
type hubMessage struct {
	Type         int             `json:"type"`
	InvocationID string          `json:"invocationId"`
	Target       string          `json:"target"`
	Arguments    json.RawMessage `json:"arguments"`
}

func parseHubMessage(rec []byte) (hubMessage, error) {
	var m hubMessage
	if err := json.Unmarshal(rec, &m); err != nil {
		return m, fmt.Errorf("invalid hub message: %w", err)
	}
	if m.Type == 0 {
		return m, errors.New("invalid hub message: missing type")
	}
	return m, nil
}

// Canned records, encoded once.
var (
	handshakeOK = []byte("{}\x1e")
	pingRecord  = []byte(`{"type":6}` + "\x1e")
)

// handshakeErrorRecord is the handshake response carrying an error.
func handshakeErrorRecord(msg string) []byte {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	return append(b, RecordSeparator)
}

// closeRecord is a SignalR Close message.
func closeRecord(errMsg string, allowReconnect bool) []byte {
	b, _ := json.Marshal(struct {
		Type           int    `json:"type"`
		Error          string `json:"error,omitempty"`
		AllowReconnect bool   `json:"allowReconnect,omitempty"`
	}{msgClose, errMsg, allowReconnect})
	return append(b, RecordSeparator)
}

// completionErrorRecord is a Completion carrying an error.
func completionErrorRecord(invocationID, errMsg string) []byte {
	b, _ := json.Marshal(struct {
		Type         int    `json:"type"`
		InvocationID string `json:"invocationId"`
		Error        string `json:"error"`
	}{msgCompletion, invocationID, errMsg})
	return append(b, RecordSeparator)
}

// InvocationRecord encodes a server-to-client Invocation of target with
// the given JSON arguments array (nil means []).
func InvocationRecord(target string, arguments json.RawMessage) ([]byte, error) {
	if len(arguments) == 0 {
		arguments = json.RawMessage("[]")
	}
	b, err := json.Marshal(struct {
		Type      int             `json:"type"`
		Target    string          `json:"target"`
		Arguments json.RawMessage `json:"arguments"`
	}{msgInvocation, target, arguments})
	if err != nil {
		return nil, fmt.Errorf("encode invocation %q: %w", target, err)
	}
	return append(b, RecordSeparator), nil
}
