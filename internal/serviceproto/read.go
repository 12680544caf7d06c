package serviceproto

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// Parse decodes one message body (a MessagePack array, without its length
// prefix). Fields are positional, as in the SDK's reader: an array with
// more items than this package knows has the rest skipped (newer
// layouts), one with fewer is accepted down to each type's oldest layout
// and the missing fields are left zero. A type this package does not know
// is returned as *Unknown with no error, as the SDK ignores it. Anything
// else that does not decode is an error wrapping ErrMalformed that names
// the type and the field; so are bytes after the array.
//
// Strings are copied; []byte fields (payloads) alias body, which
// therefore must not change while the message is in use.
func Parse(body []byte) (Message, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(body)
	if err != nil {
		return nil, fmt.Errorf("%w: not an array: %w", ErrMalformed, err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty array", ErrMalformed)
	}
	t32, b, err := msgp.ReadInt32Bytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: type: %w", ErrMalformed, err)
	}
	r := reader{b: b, left: n - 1, n: n, t: Type(t32)}
	var m Message
	switch r.t {
	case TypeHandshakeRequest:
		m = r.handshakeRequest()
	case TypeHandshakeResponse:
		m = r.handshakeResponse()
	case TypeAccessKeyRequest:
		x := &AccessKeyRequest{}
		r.need(2)
		x.Token = r.str("token")
		x.Kid = r.nstr("kid")
		r.ext(&x.Ext)
		m = x
	case TypeAccessKeyResponse:
		x := &AccessKeyResponse{}
		r.need(4)
		x.Kid = r.nstr("kid")
		x.AccessKey = r.nstr("accessKey")
		x.ErrorType = r.nstr("errorType")
		x.ErrorMessage = r.nstr("errorMessage")
		r.ext(&x.Ext)
		m = x
	case TypePing:
		x := &Ping{}
		if r.left > 0 {
			x.Messages = make([]string, 0, capHint(r.left, r.b))
			for r.left > 0 && r.err == nil {
				x.Messages = append(x.Messages, r.str("messages"))
			}
		}
		m = x
	case TypeOpenConnection:
		x := &OpenConnection{}
		r.need(2)
		x.ConnectionID = r.id("connectionId")
		x.Claims = r.claims()
		if r.n >= 5 { // older layouts end here
			x.Headers = r.headers()
			x.QueryString = r.str("queryString")
			r.ext(&x.Ext)
		}
		m = x
	case TypeCloseConnection:
		x := &CloseConnection{}
		r.need(2)
		x.ConnectionID = r.id("connectionId")
		x.ErrorMessage = r.nstr("errorMessage")
		if r.left > 0 {
			x.Headers = r.headers()
		}
		r.ext(&x.Ext)
		m = x
	case TypeConnectionData:
		x := &ConnectionData{}
		r.need(2)
		x.ConnectionID = r.id("connectionId")
		x.Payload = r.bin("payload")
		r.ext(&x.Ext)
		m = x
	case TypeConnectionReconnect:
		x := &ConnectionReconnect{}
		r.need(1)
		x.ConnectionID = r.id("connectionId")
		r.ext(&x.Ext)
		m = x
	case TypeMultiConnectionData:
		x := &MultiConnectionData{}
		r.need(2)
		x.ConnectionIDs = r.ids("connectionList")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		m = x
	case TypeUserData:
		x := &UserData{}
		r.need(2)
		x.UserID = r.id("userId")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		m = x
	case TypeMultiUserData:
		x := &MultiUserData{}
		r.need(2)
		x.UserIDs = r.ids("userList")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		m = x
	case TypeBroadcastData:
		x := &BroadcastData{}
		r.need(2)
		x.Excluded = r.ids("excludedList")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		m = x
	case TypeGroupBroadcastData:
		x := &GroupBroadcastData{}
		r.need(3)
		x.Group = r.id("groupName")
		x.Excluded = r.ids("excludedList")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		if r.left >= 2 { // 7 items: excluded users and the caller
			x.ExcludedUsers = r.ids("excludedUserList")
			x.CallerUserID = r.nstr("callerUserId")
		}
		m = x
	case TypeMultiGroupBroadcastData:
		x := &MultiGroupBroadcastData{}
		r.need(2)
		x.Groups = r.ids("groupList")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		m = x
	case TypeServiceError:
		x := &ServiceError{}
		r.need(1)
		x.ErrorMessage = r.str("errorMessage")
		m = x
	case TypeServiceEvent:
		x := &ServiceEvent{}
		r.need(4)
		x.ObjectType = ServiceEventObjectType(r.i32("type"))
		x.ID = r.str("id")
		x.Kind = ServiceEventKind(r.i32("kind"))
		x.Message = r.str("message")
		r.ext(&x.Ext)
		m = x
	case TypeJoinGroup:
		x := &JoinGroup{}
		r.need(2)
		x.ConnectionID = r.id("connectionId")
		x.Group = r.id("groupName")
		r.ext(&x.Ext)
		m = x
	case TypeLeaveGroup:
		x := &LeaveGroup{}
		r.need(2)
		x.ConnectionID = r.id("connectionId")
		x.Group = r.nstr("groupName")
		r.ext(&x.Ext)
		m = x
	case TypeUserJoinGroup:
		x := &UserJoinGroup{}
		r.need(2)
		x.UserID = r.id("userId")
		x.Group = r.id("groupName")
		r.ext(&x.Ext)
		m = x
	case TypeUserLeaveGroup:
		x := &UserLeaveGroup{}
		r.need(2)
		x.UserID = r.id("userId")
		x.Group = r.nstr("groupName")
		r.ext(&x.Ext)
		m = x
	case TypeJoinGroupWithAck:
		x := &JoinGroupWithAck{}
		r.need(3)
		x.ConnectionID = r.id("connectionId")
		x.Group = r.id("groupName")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeLeaveGroupWithAck:
		x := &LeaveGroupWithAck{}
		r.need(3)
		x.ConnectionID = r.id("connectionId")
		x.Group = r.nstr("groupName")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeUserJoinGroupWithAck:
		x := &UserJoinGroupWithAck{}
		r.need(3)
		x.UserID = r.id("userId")
		x.Group = r.id("groupName")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeUserLeaveGroupWithAck:
		x := &UserLeaveGroupWithAck{}
		r.need(3)
		x.UserID = r.id("userId")
		x.Group = r.nstr("groupName")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeCheckUserInGroupWithAck:
		x := &CheckUserInGroupWithAck{}
		r.need(3)
		x.UserID = r.id("userId")
		x.Group = r.id("groupName")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeCheckGroupExistenceWithAck:
		x := &CheckGroupExistenceWithAck{}
		r.need(2)
		x.Group = r.id("groupName")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeCheckConnectionExistenceWithAck:
		x := &CheckConnectionExistenceWithAck{}
		r.need(2)
		x.ConnectionID = r.id("connectionId")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeCheckUserExistenceWithAck:
		x := &CheckUserExistenceWithAck{}
		r.need(2)
		x.UserID = r.id("userId")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeCloseConnectionWithAck:
		x := &CloseConnectionWithAck{}
		r.need(3)
		x.ConnectionID = r.id("connectionId")
		x.Reason = r.nstr("reason")
		x.AckID = r.i32("ackId")
		r.ext(&x.Ext)
		m = x
	case TypeCloseConnectionsWithAck:
		x := &CloseConnectionsWithAck{}
		r.need(3)
		x.Reason = r.nstr("reason")
		x.AckID = r.i32("ackId")
		x.Excluded = r.ids("excluded")
		r.ext(&x.Ext)
		m = x
	case TypeCloseUserConnectionsWithAck:
		x := &CloseUserConnectionsWithAck{}
		r.need(4)
		x.UserID = r.id("userId")
		x.Reason = r.nstr("reason")
		x.AckID = r.i32("ackId")
		x.Excluded = r.ids("excluded")
		r.ext(&x.Ext)
		m = x
	case TypeCloseGroupConnectionsWithAck:
		x := &CloseGroupConnectionsWithAck{}
		r.need(4)
		x.Group = r.id("group")
		x.Reason = r.nstr("reason")
		x.AckID = r.i32("ackId")
		x.Excluded = r.ids("excluded")
		r.ext(&x.Ext)
		m = x
	case TypeAck:
		x := &Ack{}
		r.need(3)
		x.AckID = r.i32("ackId")
		x.Status = AckStatus(r.i32("status"))
		x.Message = r.str("message")
		r.ext(&x.Ext)
		if r.left > 0 {
			x.Payload = r.bin("payload")
		}
		m = x
	case TypeClientInvocation:
		x := &ClientInvocation{}
		r.need(4)
		x.InvocationID = r.id("invocationId")
		x.ConnectionID = r.id("connectionId")
		x.CallerServerID = r.id("callerServerId")
		x.Payloads = r.payloads()
		r.ext(&x.Ext)
		m = x
	case TypeClientCompletion:
		x := &ClientCompletion{}
		r.need(5)
		x.InvocationID = r.id("invocationId")
		x.ConnectionID = r.id("connectionId")
		x.CallerServerID = r.id("callerServerId")
		x.Protocol = r.str("protocol")
		x.Payload = r.bin("payload")
		r.ext(&x.Ext)
		if x.Ext.Has&ExtProtocol != 0 { // one property in the SDK's class
			x.Protocol = x.Ext.Protocol
			x.Ext.Has &^= ExtProtocol
			x.Ext.Protocol = ""
		}
		m = x
	case TypeErrorCompletion:
		x := &ErrorCompletion{}
		r.need(4)
		x.InvocationID = r.id("invocationId")
		x.ConnectionID = r.id("connectionId")
		x.CallerServerID = r.id("callerServerId")
		x.Error = r.str("error")
		r.ext(&x.Ext)
		m = x
	case TypeServiceMapping:
		x := &ServiceMapping{}
		r.need(3)
		x.InvocationID = r.id("invocationId")
		x.ConnectionID = r.id("connectionId")
		x.InstanceID = r.id("instanceId")
		r.ext(&x.Ext)
		m = x
	case TypeConnectionFlowControl:
		x := &ConnectionFlowControl{}
		r.need(3)
		x.ConnectionID = r.id("connectionId")
		x.ConnectionType = FlowConnectionType(r.i32("connectionType"))
		x.Operation = FlowOperation(r.i32("operation"))
		if r.err == nil && (x.ConnectionType < FlowClient || x.ConnectionType > FlowServer) {
			r.fail("connectionType", fmt.Errorf("unsupported connection type %d", x.ConnectionType))
		}
		if r.err == nil && (x.Operation < FlowPause || x.Operation > FlowOffline) {
			r.fail("operation", fmt.Errorf("unsupported operation %d", x.Operation))
		}
		r.ext(&x.Ext)
		m = x
	case TypeGroupMemberQuery:
		x := &GroupMemberQuery{}
		r.need(5)
		r.ext(&x.Ext)
		x.Group = r.id("groupName")
		x.AckID = r.i32("ackId")
		x.Max = r.i32("max")
		x.ContinuationToken = r.nstr("continuationToken")
		m = x
	default:
		m = &Unknown{T: r.t}
		r.left = 0 // skipped below, but checked for well-formedness
		r.skip(n - 1)
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

func (r *reader) handshakeRequest() Message {
	x := &HandshakeRequest{}
	r.need(1)
	x.Version = r.i32("version")
	// Layouts of 2, 4, 5, 6 and 7 items, read by length as the SDK does
	// (an item of a layout in between is skipped).
	if r.n >= 4 {
		x.ConnectionType = ConnectionType(r.i32("connectionType"))
		x.Target = r.str("target")
	}
	if r.n >= 5 {
		x.MigrationLevel = MigrationLevel(r.i32("migrationLevel"))
	}
	if r.n >= 6 {
		r.ext(&x.Ext)
	}
	if r.n >= 7 {
		x.AllowStatefulReconnects = r.bool("allowStatefulReconnects")
	}
	return x
}

func (r *reader) handshakeResponse() Message {
	x := &HandshakeResponse{}
	r.need(1)
	x.ErrorMessage = r.str("errorMessage")
	r.ext(&x.Ext)
	if r.left > 0 {
		x.ConnectionID = r.nstr("connectionId")
	}
	return x
}

// reader reads the fields of one message in order. The first error
// sticks: later reads return zero values, and finish reports it.
type reader struct {
	b    []byte
	left uint32 // array items not read yet
	n    uint32 // array items, the type id included
	t    Type
	err  error
}

// need fails unless at least n items are left: the fields every layout
// of the type has.
func (r *reader) need(n uint32) {
	if r.err == nil && r.left < n {
		r.err = fmt.Errorf("%w: %s has %d items, its oldest layout has %d", ErrMalformed, r.t, r.left+1, n+1)
		r.left = 0
	}
}

func (r *reader) fail(field string, err error) {
	if r.err == nil {
		r.err = fieldError(r.t, field, err)
	}
}

// next reserves one item; false if none is left or an error stuck.
func (r *reader) next(field string) bool {
	if r.err != nil {
		return false
	}
	if r.left == 0 {
		r.fail(field, fmt.Errorf("missing"))
		return false
	}
	r.left--
	return true
}

func (r *reader) str(field string) string {
	if !r.next(field) {
		return ""
	}
	s, b, err := readString(r.b)
	if err != nil {
		r.fail(field, err)
		return ""
	}
	r.b = b
	return s
}

func (r *reader) nstr(field string) NullString {
	if !r.next(field) {
		return NullString{}
	}
	s, b, err := readNullString(r.b)
	if err != nil {
		r.fail(field, err)
		return NullString{}
	}
	r.b = b
	return s
}

// id reads a string that must not be nil (ReadStringNotNull): ids,
// group names.
func (r *reader) id(field string) string {
	if !r.next(field) {
		return ""
	}
	if msgp.IsNil(r.b) {
		r.fail(field, fmt.Errorf("nil, want a string"))
		return ""
	}
	s, b, err := msgp.ReadStringBytes(r.b)
	if err != nil {
		r.fail(field, err)
		return ""
	}
	r.b = b
	return s
}

func (r *reader) i32(field string) int32 {
	if !r.next(field) {
		return 0
	}
	v, b, err := msgp.ReadInt32Bytes(r.b)
	if err != nil {
		r.fail(field, err)
		return 0
	}
	r.b = b
	return v
}

func (r *reader) bool(field string) bool {
	if !r.next(field) {
		return false
	}
	v, b, err := msgp.ReadBoolBytes(r.b)
	if err != nil {
		r.fail(field, err)
		return false
	}
	r.b = b
	return v
}

func (r *reader) bin(field string) []byte {
	if !r.next(field) {
		return nil
	}
	v, b, err := readBin(r.b)
	if err != nil {
		r.fail(field, err)
		return nil
	}
	r.b = b
	return v
}

// ids reads an array of non-nil strings.
func (r *reader) ids(field string) []string {
	if !r.next(field) {
		return nil
	}
	n, b, err := msgp.ReadArrayHeaderBytes(r.b)
	if err != nil {
		r.fail(field, err)
		return nil
	}
	var out []string
	if n > 0 {
		out = make([]string, 0, capHint(n, b))
	}
	for i := uint32(0); i < n; i++ {
		if msgp.IsNil(b) {
			r.fail(fmt.Sprintf("%s[%d]", field, i), fmt.Errorf("nil, want a string"))
			return nil
		}
		var s string
		if s, b, err = msgp.ReadStringBytes(b); err != nil {
			r.fail(fmt.Sprintf("%s[%d]", field, i), err)
			return nil
		}
		out = append(out, s)
	}
	r.b = b
	return out
}

func (r *reader) payloads() Payloads {
	if !r.next("payloads") {
		return nil
	}
	n, b, err := msgp.ReadMapHeaderBytes(r.b)
	if err != nil {
		r.fail("payloads", err)
		return nil
	}
	var out Payloads
	if n > 0 {
		out = make(Payloads, 0, capHint(n, b))
	}
	for i := uint32(0); i < n; i++ {
		var p Payload
		if msgp.IsNil(b) {
			r.fail(fmt.Sprintf("payloads[%d].key", i), fmt.Errorf("nil, want a string"))
			return nil
		}
		if p.Protocol, b, err = msgp.ReadStringBytes(b); err != nil {
			r.fail(fmt.Sprintf("payloads[%d].key", i), err)
			return nil
		}
		if p.Data, b, err = readBin(b); err != nil {
			r.fail(fmt.Sprintf("payloads[%d].value", i), err)
			return nil
		}
		out = append(out, p)
	}
	r.b = b
	return out
}

// claims reads the claims map; duplicate keys are kept, in order. A nil
// type or value is refused (the SDK's Claim constructor throws on it).
func (r *reader) claims() []Claim {
	if !r.next("claims") {
		return nil
	}
	n, b, err := msgp.ReadMapHeaderBytes(r.b)
	if err != nil {
		r.fail("claims", err)
		return nil
	}
	var out []Claim
	if n > 0 {
		out = make([]Claim, 0, capHint(n, b))
	}
	for i := uint32(0); i < n; i++ {
		var c Claim
		if c.Type, b, err = msgp.ReadStringBytes(b); err != nil {
			r.fail(fmt.Sprintf("claims[%d].Type", i), err)
			return nil
		}
		if c.Value, b, err = msgp.ReadStringBytes(b); err != nil {
			r.fail(fmt.Sprintf("claims[%d].Value", i), err)
			return nil
		}
		out = append(out, c)
	}
	r.b = b
	return out
}

// headers reads the headers map: name → array of values (a nil value is
// read as "").
func (r *reader) headers() []Header {
	if !r.next("headers") {
		return nil
	}
	n, b, err := msgp.ReadMapHeaderBytes(r.b)
	if err != nil {
		r.fail("headers", err)
		return nil
	}
	var out []Header
	if n > 0 {
		out = make([]Header, 0, capHint(n, b))
	}
	for i := uint32(0); i < n; i++ {
		var h Header
		if msgp.IsNil(b) {
			r.fail(fmt.Sprintf("headers[%d].key", i), fmt.Errorf("nil, want a string"))
			return nil
		}
		if h.Name, b, err = msgp.ReadStringBytes(b); err != nil {
			r.fail(fmt.Sprintf("headers[%d].key", i), err)
			return nil
		}
		var k uint32
		if k, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			r.fail(fmt.Sprintf("headers[%d].value", i), err)
			return nil
		}
		h.Values = make([]string, 0, capHint(k, b))
		for j := uint32(0); j < k; j++ {
			var v string
			if v, b, err = readString(b); err != nil {
				r.fail(fmt.Sprintf("headers[%d].value[%d]", i, j), err)
				return nil
			}
			h.Values = append(h.Values, v)
		}
		out = append(out, h)
	}
	r.b = b
	return out
}

// ext reads the extension map if the array has an item left for it
// (older layouts end before it).
func (r *reader) ext(e *Ext) {
	if r.err != nil || r.left == 0 {
		return
	}
	r.left--
	b, err := readExt(r.b, r.t, e)
	if err != nil {
		r.err = err
		return
	}
	r.b = b
}

// skip skips n items, which must be well-formed MessagePack.
func (r *reader) skip(n uint32) {
	for ; n > 0 && r.err == nil; n-- {
		b, err := msgp.Skip(r.b)
		if err != nil {
			r.fail("extra item", err)
			return
		}
		r.b = b
	}
}

// finish skips the items a newer layout added and requires that nothing
// follows the array.
func (r *reader) finish() error {
	r.skip(r.left)
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %s: %d bytes after the array", ErrMalformed, r.t, len(r.b))
	}
	return nil
}
