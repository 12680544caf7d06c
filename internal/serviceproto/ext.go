package serviceproto

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"
)

// Ext is a message's extension-member map: a MessagePack map of int keys
// that ends most messages (GroupMemberQuery has it second). Which keys a
// message type carries is fixed by the SDK's classes (extKeys); the
// writer writes only those, because the SDK's older readers do not skip
// a key they do not expect on that type and then misparse the rest of the
// message. The reader takes every known key on any type and skips keys it
// does not know, as current SDKs do.
type Ext struct {
	// Has says which of TracingID, TTL, Protocol and Filter are present.
	Has       ExtKeys
	TracingID uint64 // key 1
	TTL       int32  // key 2, seconds
	Protocol  string // key 3
	Filter    string // key 4, OData subscriber filter
	// DataType (key 5) is written unless DataUnknown; Partial (key 6)
	// only when true: the SDK writes them so.
	DataType DataMessageType
	Partial  bool
}

// ExtKeys is a set of extension members, by key.
type ExtKeys uint8

// Extension-member keys, as bits of ExtKeys.
const (
	ExtTracingID ExtKeys = 1 << iota // key 1
	ExtTTL                           // key 2
	ExtProtocol                      // key 3
	ExtFilter                        // key 4
	ExtDataType                      // key 5
	ExtPartial                       // key 6
)

// Extension-member keys on the wire.
const (
	extKeyTracingID = 1
	extKeyTTL       = 2
	extKeyProtocol  = 3
	extKeyFilter    = 4
	extKeyDataType  = 5
	extKeyPartial   = 6
)

// WithTracingID returns e with a tracing id.
func (e Ext) WithTracingID(id uint64) Ext { e.Has |= ExtTracingID; e.TracingID = id; return e }

// WithTTL returns e with a time to live in seconds.
func (e Ext) WithTTL(seconds int32) Ext { e.Has |= ExtTTL; e.TTL = seconds; return e }

// WithProtocol returns e with a hub protocol name.
func (e Ext) WithProtocol(p string) Ext { e.Has |= ExtProtocol; e.Protocol = p; return e }

// WithFilter returns e with a subscriber filter.
func (e Ext) WithFilter(f string) Ext { e.Has |= ExtFilter; e.Filter = f; return e }

// extKeys is the set of keys each message type carries, from the
// interfaces its SDK class implements (IMessageWithTracingId, IHasTtl,
// IHasProtocol, IHasSubscriberFilter, IHasDataMessageType,
// IPartializable). Types not listed carry an empty map.
var extKeys = func() [TypeGroupMemberQuery + 1]ExtKeys {
	var k [TypeGroupMemberQuery + 1]ExtKeys
	for _, t := range []Type{
		TypeOpenConnection, TypeCloseConnection, TypeConnectionData,
		TypeMultiConnectionData, TypeUserData, TypeMultiUserData, TypeBroadcastData,
		TypeGroupBroadcastData, TypeMultiGroupBroadcastData, TypeClientInvocation,
		TypeJoinGroup, TypeLeaveGroup, TypeUserJoinGroup, TypeUserLeaveGroup,
		TypeJoinGroupWithAck, TypeLeaveGroupWithAck, TypeUserJoinGroupWithAck, TypeUserLeaveGroupWithAck,
		TypeCheckUserInGroupWithAck, TypeCheckGroupExistenceWithAck,
		TypeCheckConnectionExistenceWithAck, TypeCheckUserExistenceWithAck,
		TypeCloseConnectionWithAck, TypeCloseConnectionsWithAck,
		TypeCloseUserConnectionsWithAck, TypeCloseGroupConnectionsWithAck,
		TypeClientCompletion, TypeErrorCompletion, TypeGroupMemberQuery,
	} {
		k[t] |= ExtTracingID
	}
	k[TypeUserJoinGroup] |= ExtTTL
	k[TypeUserJoinGroupWithAck] |= ExtTTL
	k[TypeOpenConnection] |= ExtProtocol
	k[TypeClientCompletion] |= ExtProtocol
	for _, t := range []Type{TypeMultiConnectionData, TypeUserData, TypeMultiUserData,
		TypeBroadcastData, TypeGroupBroadcastData, TypeMultiGroupBroadcastData} {
		k[t] |= ExtFilter
	}
	k[TypeConnectionData] |= ExtDataType | ExtPartial
	return k
}()

// Keys reports the extension members a message type carries.
func (t Type) Keys() ExtKeys {
	if t > 0 && int(t) < len(extKeys) {
		return extKeys[t]
	}
	return 0
}

// appendExt writes e's members that type t carries, in key order, as the
// SDK does (WriteExtensionMembers).
func appendExt(b []byte, t Type, e *Ext) []byte {
	keys := t.Keys()
	has := e.Has & keys
	if e.DataType != DataUnknown && keys&ExtDataType != 0 {
		has |= ExtDataType
	}
	if e.Partial && keys&ExtPartial != 0 {
		has |= ExtPartial
	}
	n := 0
	for k := has; k != 0; k &= k - 1 {
		n++
	}
	b = msgp.AppendMapHeader(b, uint32(n))
	if has&ExtTracingID != 0 {
		b = append(b, extKeyTracingID)
		b = msgp.AppendUint64(b, e.TracingID)
	}
	if has&ExtTTL != 0 {
		b = append(b, extKeyTTL)
		b = appendInt(b, int64(e.TTL))
	}
	if has&ExtProtocol != 0 {
		b = append(b, extKeyProtocol)
		b = msgp.AppendString(b, e.Protocol)
	}
	if has&ExtFilter != 0 {
		b = append(b, extKeyFilter)
		b = msgp.AppendString(b, e.Filter)
	}
	if has&ExtDataType != 0 {
		b = append(b, extKeyDataType)
		b = appendInt(b, int64(e.DataType))
	}
	if has&ExtPartial != 0 {
		b = append(b, extKeyPartial)
		b = msgp.AppendBool(b, true)
	}
	return b
}

// readExt reads an extension-member map into e. Known keys are read
// whatever the message type; unknown keys are skipped.
func readExt(b []byte, t Type, e *Ext) ([]byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return b, fieldError(t, "ext", err)
	}
	for i := uint32(0); i < n; i++ {
		var key int32
		if key, b, err = msgp.ReadInt32Bytes(b); err != nil {
			return b, fieldError(t, "ext key", err)
		}
		switch key {
		case extKeyTracingID:
			e.Has |= ExtTracingID
			e.TracingID, b, err = msgp.ReadUint64Bytes(b)
		case extKeyTTL:
			e.Has |= ExtTTL
			e.TTL, b, err = msgp.ReadInt32Bytes(b)
		case extKeyProtocol:
			e.Has |= ExtProtocol
			e.Protocol, b, err = readString(b)
		case extKeyFilter:
			e.Has |= ExtFilter
			e.Filter, b, err = readString(b)
		case extKeyDataType:
			var v int32
			v, b, err = msgp.ReadInt32Bytes(b)
			e.DataType = DataMessageType(v)
		case extKeyPartial:
			e.Partial, b, err = msgp.ReadBoolBytes(b)
		default:
			b, err = msgp.Skip(b)
		}
		if err != nil {
			return b, fieldError(t, fmt.Sprintf("ext[%d]", key), err)
		}
	}
	return b, nil
}
