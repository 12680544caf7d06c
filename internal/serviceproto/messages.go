package serviceproto

import "github.com/tinylib/msgp/msgp"

// Message is one service protocol message. Every message type of the SDK
// is a struct of this package; a pointer to it is a Message.
type Message interface {
	// Type is the message's type id.
	Type() Type
	// AppendBody appends the message's MessagePack array, as the current
	// SDK writes it (its newest layout), without the length prefix.
	AppendBody(b []byte) []byte
}

// Unknown is a message whose type this package does not know: Parse
// returns it rather than an error, because the SDK ignores unknown types
// ("future protocol changes can add message types").
type Unknown struct {
	T Type
}

func (m *Unknown) Type() Type { return m.T }

// AppendBody writes [type]: an Unknown carries nothing else.
func (m *Unknown) AppendBody(b []byte) []byte {
	return appendInt(msgp.AppendArrayHeader(b, 1), int64(m.T))
}

// head writes the array header and the type id.
func head(b []byte, n uint32, t Type) []byte {
	return appendInt(msgp.AppendArrayHeader(b, n), int64(t))
}

// HandshakeRequest is the first message of a server connection:
// [1, version, connectionType, target, migrationLevel, ext,
// allowStatefulReconnects]. Older SDKs wrote 2, 4, 5 or 6 items.
type HandshakeRequest struct {
	Version        int32
	ConnectionType ConnectionType
	// Target is the service instance an OnDemand connection is for; the
	// SDK writes "" for Default connections whatever it holds.
	Target                  string
	MigrationLevel          MigrationLevel
	Ext                     Ext
	AllowStatefulReconnects bool
}

func (*HandshakeRequest) Type() Type { return TypeHandshakeRequest }

func (m *HandshakeRequest) AppendBody(b []byte) []byte {
	b = head(b, 7, TypeHandshakeRequest)
	b = appendInt(b, int64(m.Version))
	b = appendInt(b, int64(m.ConnectionType))
	if m.ConnectionType == ConnectionDefault {
		b = msgp.AppendString(b, "")
	} else {
		b = msgp.AppendString(b, m.Target)
	}
	b = appendInt(b, int64(m.MigrationLevel))
	b = appendExt(b, TypeHandshakeRequest, &m.Ext)
	return msgp.AppendBool(b, m.AllowStatefulReconnects)
}

// HandshakeResponse answers a HandshakeRequest: [2, errorMessage, ext,
// connectionId]. An empty ErrorMessage is success. Older services wrote
// 2 or 3 items.
type HandshakeResponse struct {
	ErrorMessage string
	Ext          Ext
	ConnectionID NullString
}

func (*HandshakeResponse) Type() Type { return TypeHandshakeResponse }

func (m *HandshakeResponse) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeHandshakeResponse)
	b = msgp.AppendString(b, m.ErrorMessage)
	b = appendExt(b, TypeHandshakeResponse, &m.Ext)
	return appendNullString(b, m.ConnectionID)
}

// AccessKeyRequest carries an Entra ID token: [28, token, kid, ext].
type AccessKeyRequest struct {
	Token string
	Kid   NullString
	Ext   Ext
}

func (*AccessKeyRequest) Type() Type { return TypeAccessKeyRequest }

func (m *AccessKeyRequest) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeAccessKeyRequest)
	b = msgp.AppendString(b, m.Token)
	b = appendNullString(b, m.Kid)
	return appendExt(b, TypeAccessKeyRequest, &m.Ext)
}

// AccessKeyResponse answers an AccessKeyRequest: [29, kid, accessKey,
// errorType, errorMessage, ext].
type AccessKeyResponse struct {
	Kid, AccessKey, ErrorType, ErrorMessage NullString
	Ext                                     Ext
}

func (*AccessKeyResponse) Type() Type { return TypeAccessKeyResponse }

func (m *AccessKeyResponse) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeAccessKeyResponse)
	b = appendNullString(b, m.Kid)
	b = appendNullString(b, m.AccessKey)
	b = appendNullString(b, m.ErrorType)
	b = appendNullString(b, m.ErrorMessage)
	return appendExt(b, TypeAccessKeyResponse, &m.Ext)
}

// Ping is a keep-alive, possibly with key/value strings: [3, s0, s1, …]
// (ping.go has the known ones).
type Ping struct {
	Messages []string
}

func (*Ping) Type() Type { return TypePing }

func (m *Ping) AppendBody(b []byte) []byte {
	b = head(b, uint32(len(m.Messages))+1, TypePing)
	for _, s := range m.Messages {
		b = msgp.AppendString(b, s)
	}
	return b
}

// OpenConnection tells the app server a client connected: [4,
// connectionId, claims, headers, queryString, ext]. The client's hub
// protocol is Ext.Protocol (current SDKs need it). Older services wrote
// 3 or 5 items.
type OpenConnection struct {
	ConnectionID string
	Claims       []Claim
	Headers      []Header
	QueryString  string
	Ext          Ext
}

func (*OpenConnection) Type() Type { return TypeOpenConnection }

func (m *OpenConnection) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeOpenConnection)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendClaims(b, m.Claims)
	b = appendHeaders(b, m.Headers)
	b = msgp.AppendString(b, m.QueryString)
	return appendExt(b, TypeOpenConnection, &m.Ext)
}

// CloseConnection closes a client, from either side: [5, connectionId,
// errorMessage, headers, ext]. The SDK writes a nil errorMessage for a
// normal close. Older layouts had 3 or 4 items.
type CloseConnection struct {
	ConnectionID string
	ErrorMessage NullString
	Headers      []Header
	Ext          Ext
}

func (*CloseConnection) Type() Type { return TypeCloseConnection }

func (m *CloseConnection) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeCloseConnection)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendNullString(b, m.ErrorMessage)
	b = appendHeaders(b, m.Headers)
	return appendExt(b, TypeCloseConnection, &m.Ext)
}

// ConnectionData carries a client's bytes, either way: [6, connectionId,
// payload, ext]. Ext.DataType says what it holds (current SDKs).
type ConnectionData struct {
	ConnectionID string
	Payload      []byte
	Ext          Ext
}

func (*ConnectionData) Type() Type { return TypeConnectionData }

func (m *ConnectionData) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeConnectionData)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendBytes(b, m.Payload)
	return appendExt(b, TypeConnectionData, &m.Ext)
}

// ConnectionReconnect tells the app server a client came back (stateful
// reconnect): [38, connectionId, ext].
type ConnectionReconnect struct {
	ConnectionID string
	Ext          Ext
}

func (*ConnectionReconnect) Type() Type { return TypeConnectionReconnect }

func (m *ConnectionReconnect) AppendBody(b []byte) []byte {
	b = head(b, 3, TypeConnectionReconnect)
	b = msgp.AppendString(b, m.ConnectionID)
	return appendExt(b, TypeConnectionReconnect, &m.Ext)
}

// MultiConnectionData sends to connections: [7, connectionIds, payloads,
// ext].
type MultiConnectionData struct {
	ConnectionIDs []string
	Payloads      Payloads
	Ext           Ext
}

func (*MultiConnectionData) Type() Type { return TypeMultiConnectionData }

func (m *MultiConnectionData) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeMultiConnectionData)
	b = appendStrings(b, m.ConnectionIDs)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeMultiConnectionData, &m.Ext)
}

// UserData sends to a user's connections: [8, userId, payloads, ext].
type UserData struct {
	UserID   string
	Payloads Payloads
	Ext      Ext
}

func (*UserData) Type() Type { return TypeUserData }

func (m *UserData) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeUserData)
	b = msgp.AppendString(b, m.UserID)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeUserData, &m.Ext)
}

// MultiUserData sends to users: [9, userIds, payloads, ext].
type MultiUserData struct {
	UserIDs  []string
	Payloads Payloads
	Ext      Ext
}

func (*MultiUserData) Type() Type { return TypeMultiUserData }

func (m *MultiUserData) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeMultiUserData)
	b = appendStrings(b, m.UserIDs)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeMultiUserData, &m.Ext)
}

// BroadcastData sends to every client of the hub but the excluded
// connections: [10, excluded, payloads, ext].
type BroadcastData struct {
	Excluded []string
	Payloads Payloads
	Ext      Ext
}

func (*BroadcastData) Type() Type { return TypeBroadcastData }

func (m *BroadcastData) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeBroadcastData)
	b = appendStrings(b, m.Excluded)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeBroadcastData, &m.Ext)
}

// GroupBroadcastData sends to a group but the excluded connections and
// users: [13, group, excluded, payloads, ext, excludedUsers,
// callerUserId]. Older SDKs wrote 4 or 5 items.
type GroupBroadcastData struct {
	Group         string
	Excluded      []string
	Payloads      Payloads
	Ext           Ext
	ExcludedUsers []string
	CallerUserID  NullString
}

func (*GroupBroadcastData) Type() Type { return TypeGroupBroadcastData }

func (m *GroupBroadcastData) AppendBody(b []byte) []byte {
	b = head(b, 7, TypeGroupBroadcastData)
	b = msgp.AppendString(b, m.Group)
	b = appendStrings(b, m.Excluded)
	b = appendPayloads(b, m.Payloads)
	b = appendExt(b, TypeGroupBroadcastData, &m.Ext)
	b = appendStrings(b, m.ExcludedUsers)
	return appendNullString(b, m.CallerUserID)
}

// MultiGroupBroadcastData sends to the union of groups: [14, groups,
// payloads, ext].
type MultiGroupBroadcastData struct {
	Groups   []string
	Payloads Payloads
	Ext      Ext
}

func (*MultiGroupBroadcastData) Type() Type { return TypeMultiGroupBroadcastData }

func (m *MultiGroupBroadcastData) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeMultiGroupBroadcastData)
	b = appendStrings(b, m.Groups)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeMultiGroupBroadcastData, &m.Ext)
}

// ServiceError tells the app server the service will not serve this
// connection any more: [15, errorMessage]. The SDK stops writing to it.
type ServiceError struct {
	ErrorMessage string
}

func (*ServiceError) Type() Type { return TypeServiceError }

func (m *ServiceError) AppendBody(b []byte) []byte {
	return msgp.AppendString(head(b, 2, TypeServiceError), m.ErrorMessage)
}

// ServiceEvent informs the app server (logged by the SDK): [22,
// objectType, id, kind, message, ext].
type ServiceEvent struct {
	ObjectType ServiceEventObjectType
	ID         string
	Kind       ServiceEventKind
	Message    string
	Ext        Ext
}

func (*ServiceEvent) Type() Type { return TypeServiceEvent }

func (m *ServiceEvent) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeServiceEvent)
	b = appendInt(b, int64(m.ObjectType))
	b = msgp.AppendString(b, m.ID)
	b = appendInt(b, int64(m.Kind))
	b = msgp.AppendString(b, m.Message)
	return appendExt(b, TypeServiceEvent, &m.Ext)
}

// JoinGroup adds a connection to a group, unacknowledged: [11,
// connectionId, group, ext].
type JoinGroup struct {
	ConnectionID, Group string
	Ext                 Ext
}

func (*JoinGroup) Type() Type { return TypeJoinGroup }

func (m *JoinGroup) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeJoinGroup)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendString(b, m.Group)
	return appendExt(b, TypeJoinGroup, &m.Ext)
}

// LeaveGroup removes a connection from a group, unacknowledged: [12,
// connectionId, group, ext].
type LeaveGroup struct {
	ConnectionID string
	Group        NullString
	Ext          Ext
}

func (*LeaveGroup) Type() Type { return TypeLeaveGroup }

func (m *LeaveGroup) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeLeaveGroup)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendNullString(b, m.Group)
	return appendExt(b, TypeLeaveGroup, &m.Ext)
}

// UserJoinGroup adds a user (current and future connections) to a group,
// for Ext.TTL seconds if set: [16, userId, group, ext].
type UserJoinGroup struct {
	UserID, Group string
	Ext           Ext
}

func (*UserJoinGroup) Type() Type { return TypeUserJoinGroup }

func (m *UserJoinGroup) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeUserJoinGroup)
	b = msgp.AppendString(b, m.UserID)
	b = msgp.AppendString(b, m.Group)
	return appendExt(b, TypeUserJoinGroup, &m.Ext)
}

// UserLeaveGroup removes a user from a group (nil: from every group):
// [17, userId, group, ext].
type UserLeaveGroup struct {
	UserID string
	Group  NullString
	Ext    Ext
}

func (*UserLeaveGroup) Type() Type { return TypeUserLeaveGroup }

func (m *UserLeaveGroup) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeUserLeaveGroup)
	b = msgp.AppendString(b, m.UserID)
	b = appendNullString(b, m.Group)
	return appendExt(b, TypeUserLeaveGroup, &m.Ext)
}

// JoinGroupWithAck adds a connection to a group, answered with an Ack
// (Ok, or NotFound for an unknown connection): [18, connectionId, group,
// ackId, ext].
type JoinGroupWithAck struct {
	ConnectionID, Group string
	AckID               int32
	Ext                 Ext
}

func (*JoinGroupWithAck) Type() Type { return TypeJoinGroupWithAck }

func (m *JoinGroupWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeJoinGroupWithAck)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeJoinGroupWithAck, &m.Ext)
}

// LeaveGroupWithAck removes a connection from a group (nil: every group,
// the Management SDK), answered with an Ack: [19, connectionId, group,
// ackId, ext].
type LeaveGroupWithAck struct {
	ConnectionID string
	Group        NullString
	AckID        int32
	Ext          Ext
}

func (*LeaveGroupWithAck) Type() Type { return TypeLeaveGroupWithAck }

func (m *LeaveGroupWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeLeaveGroupWithAck)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendNullString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeLeaveGroupWithAck, &m.Ext)
}

// UserJoinGroupWithAck is UserJoinGroup answered with an Ack: [26,
// userId, group, ackId, ext].
type UserJoinGroupWithAck struct {
	UserID, Group string
	AckID         int32
	Ext           Ext
}

func (*UserJoinGroupWithAck) Type() Type { return TypeUserJoinGroupWithAck }

func (m *UserJoinGroupWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeUserJoinGroupWithAck)
	b = msgp.AppendString(b, m.UserID)
	b = msgp.AppendString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeUserJoinGroupWithAck, &m.Ext)
}

// UserLeaveGroupWithAck is UserLeaveGroup answered with an Ack: [27,
// userId, group, ackId, ext].
type UserLeaveGroupWithAck struct {
	UserID string
	Group  NullString
	AckID  int32
	Ext    Ext
}

func (*UserLeaveGroupWithAck) Type() Type { return TypeUserLeaveGroupWithAck }

func (m *UserLeaveGroupWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeUserLeaveGroupWithAck)
	b = msgp.AppendString(b, m.UserID)
	b = appendNullString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeUserLeaveGroupWithAck, &m.Ext)
}

// CheckUserInGroupWithAck asks whether a user is in a group (Ack Ok or
// NotFound): [21, userId, group, ackId, ext].
type CheckUserInGroupWithAck struct {
	UserID, Group string
	AckID         int32
	Ext           Ext
}

func (*CheckUserInGroupWithAck) Type() Type { return TypeCheckUserInGroupWithAck }

func (m *CheckUserInGroupWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeCheckUserInGroupWithAck)
	b = msgp.AppendString(b, m.UserID)
	b = msgp.AppendString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeCheckUserInGroupWithAck, &m.Ext)
}

// CheckGroupExistenceWithAck asks whether a group has members: [23,
// group, ackId, ext].
type CheckGroupExistenceWithAck struct {
	Group string
	AckID int32
	Ext   Ext
}

func (*CheckGroupExistenceWithAck) Type() Type { return TypeCheckGroupExistenceWithAck }

func (m *CheckGroupExistenceWithAck) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeCheckGroupExistenceWithAck)
	b = msgp.AppendString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeCheckGroupExistenceWithAck, &m.Ext)
}

// CheckConnectionExistenceWithAck asks whether a connection is connected:
// [24, connectionId, ackId, ext].
type CheckConnectionExistenceWithAck struct {
	ConnectionID string
	AckID        int32
	Ext          Ext
}

func (*CheckConnectionExistenceWithAck) Type() Type { return TypeCheckConnectionExistenceWithAck }

func (m *CheckConnectionExistenceWithAck) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeCheckConnectionExistenceWithAck)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeCheckConnectionExistenceWithAck, &m.Ext)
}

// CheckUserExistenceWithAck asks whether a user has connections: [25,
// userId, ackId, ext].
type CheckUserExistenceWithAck struct {
	UserID string
	AckID  int32
	Ext    Ext
}

func (*CheckUserExistenceWithAck) Type() Type { return TypeCheckUserExistenceWithAck }

func (m *CheckUserExistenceWithAck) AppendBody(b []byte) []byte {
	b = head(b, 4, TypeCheckUserExistenceWithAck)
	b = msgp.AppendString(b, m.UserID)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeCheckUserExistenceWithAck, &m.Ext)
}

// CloseConnectionWithAck closes a connection, acknowledged (obsolete in
// the SDK): [30, connectionId, reason, ackId, ext].
type CloseConnectionWithAck struct {
	ConnectionID string
	Reason       NullString
	AckID        int32
	Ext          Ext
}

func (*CloseConnectionWithAck) Type() Type { return TypeCloseConnectionWithAck }

func (m *CloseConnectionWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeCloseConnectionWithAck)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendNullString(b, m.Reason)
	b = appendInt(b, int64(m.AckID))
	return appendExt(b, TypeCloseConnectionWithAck, &m.Ext)
}

// CloseConnectionsWithAck closes every connection of the hub but the
// excluded (obsolete in the SDK): [31, reason, ackId, excluded, ext].
type CloseConnectionsWithAck struct {
	Reason   NullString
	AckID    int32
	Excluded []string
	Ext      Ext
}

func (*CloseConnectionsWithAck) Type() Type { return TypeCloseConnectionsWithAck }

func (m *CloseConnectionsWithAck) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeCloseConnectionsWithAck)
	b = appendNullString(b, m.Reason)
	b = appendInt(b, int64(m.AckID))
	b = appendStrings(b, m.Excluded)
	return appendExt(b, TypeCloseConnectionsWithAck, &m.Ext)
}

// CloseUserConnectionsWithAck closes a user's connections but the
// excluded: [32, userId, reason, ackId, excluded, ext].
type CloseUserConnectionsWithAck struct {
	UserID   string
	Reason   NullString
	AckID    int32
	Excluded []string
	Ext      Ext
}

func (*CloseUserConnectionsWithAck) Type() Type { return TypeCloseUserConnectionsWithAck }

func (m *CloseUserConnectionsWithAck) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeCloseUserConnectionsWithAck)
	b = msgp.AppendString(b, m.UserID)
	b = appendNullString(b, m.Reason)
	b = appendInt(b, int64(m.AckID))
	b = appendStrings(b, m.Excluded)
	return appendExt(b, TypeCloseUserConnectionsWithAck, &m.Ext)
}

// CloseGroupConnectionsWithAck closes a group's connections but the
// excluded: [33, group, reason, ackId, excluded, ext].
type CloseGroupConnectionsWithAck struct {
	Group    string
	Reason   NullString
	AckID    int32
	Excluded []string
	Ext      Ext
}

func (*CloseGroupConnectionsWithAck) Type() Type { return TypeCloseGroupConnectionsWithAck }

func (m *CloseGroupConnectionsWithAck) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeCloseGroupConnectionsWithAck)
	b = msgp.AppendString(b, m.Group)
	b = appendNullString(b, m.Reason)
	b = appendInt(b, int64(m.AckID))
	b = appendStrings(b, m.Excluded)
	return appendExt(b, TypeCloseGroupConnectionsWithAck, &m.Ext)
}

// Ack answers a *WithAck message on the connection it came on: [20,
// ackId, status, message, ext, payload]. Payload nil is written as nil
// (GroupMemberQuery answers carry one). Older layouts had 4 or 5 items.
type Ack struct {
	AckID   int32
	Status  AckStatus
	Message string
	Ext     Ext
	Payload []byte
}

func (*Ack) Type() Type { return TypeAck }

func (m *Ack) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeAck)
	b = appendInt(b, int64(m.AckID))
	b = appendInt(b, int64(m.Status))
	b = msgp.AppendString(b, m.Message)
	b = appendExt(b, TypeAck, &m.Ext)
	if m.Payload == nil {
		return msgp.AppendNil(b)
	}
	return msgp.AppendBytes(b, m.Payload)
}

// ClientInvocation is a server-to-client invocation that expects a
// result (client results, .NET 7+): [34, invocationId, connectionId,
// callerServerId, payloads, ext].
type ClientInvocation struct {
	InvocationID, ConnectionID, CallerServerID string
	Payloads                                   Payloads
	Ext                                        Ext
}

func (*ClientInvocation) Type() Type { return TypeClientInvocation }

func (m *ClientInvocation) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeClientInvocation)
	b = msgp.AppendString(b, m.InvocationID)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendString(b, m.CallerServerID)
	b = appendPayloads(b, m.Payloads)
	return appendExt(b, TypeClientInvocation, &m.Ext)
}

// ClientCompletion is a client's result for a ClientInvocation: [35,
// invocationId, connectionId, callerServerId, protocol, payload, ext].
// Protocol is also written as the ext's protocol (the SDK's class holds
// one property for both); Ext.Protocol is ignored when writing.
type ClientCompletion struct {
	InvocationID, ConnectionID, CallerServerID string
	Protocol                                   string
	Payload                                    []byte
	Ext                                        Ext
}

func (*ClientCompletion) Type() Type { return TypeClientCompletion }

func (m *ClientCompletion) AppendBody(b []byte) []byte {
	b = head(b, 7, TypeClientCompletion)
	b = msgp.AppendString(b, m.InvocationID)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendString(b, m.CallerServerID)
	b = msgp.AppendString(b, m.Protocol)
	b = msgp.AppendBytes(b, m.Payload)
	ext := m.Ext.WithProtocol(m.Protocol)
	return appendExt(b, TypeClientCompletion, &ext)
}

// ErrorCompletion fails a ClientInvocation (the client left): [36,
// invocationId, connectionId, callerServerId, error, ext].
type ErrorCompletion struct {
	InvocationID, ConnectionID, CallerServerID string
	Error                                      string
	Ext                                        Ext
}

func (*ErrorCompletion) Type() Type { return TypeErrorCompletion }

func (m *ErrorCompletion) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeErrorCompletion)
	b = msgp.AppendString(b, m.InvocationID)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendString(b, m.CallerServerID)
	b = msgp.AppendString(b, m.Error)
	return appendExt(b, TypeErrorCompletion, &m.Ext)
}

// ServiceMapping tells a caller server which service instance holds the
// client of its invocation: [37, invocationId, connectionId, instanceId,
// ext].
type ServiceMapping struct {
	InvocationID, ConnectionID, InstanceID string
	Ext                                    Ext
}

func (*ServiceMapping) Type() Type { return TypeServiceMapping }

func (m *ServiceMapping) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeServiceMapping)
	b = msgp.AppendString(b, m.InvocationID)
	b = msgp.AppendString(b, m.ConnectionID)
	b = msgp.AppendString(b, m.InstanceID)
	return appendExt(b, TypeServiceMapping, &m.Ext)
}

// ConnectionFlowControl pauses or resumes a connection: [39,
// connectionId, connectionType, operation, ext], the two ints always as
// 5-byte int32s.
type ConnectionFlowControl struct {
	ConnectionID   string
	ConnectionType FlowConnectionType
	Operation      FlowOperation
	Ext            Ext
}

func (*ConnectionFlowControl) Type() Type { return TypeConnectionFlowControl }

func (m *ConnectionFlowControl) AppendBody(b []byte) []byte {
	b = head(b, 5, TypeConnectionFlowControl)
	b = msgp.AppendString(b, m.ConnectionID)
	b = appendInt32Fixed(b, int32(m.ConnectionType))
	b = appendInt32Fixed(b, int32(m.Operation))
	return appendExt(b, TypeConnectionFlowControl, &m.Ext)
}

// GroupMemberQuery asks for a page of a group's members (answered with an
// Ack carrying a MessagePack payload): [40, ext, group, ackId, max,
// continuationToken] — the ext second.
type GroupMemberQuery struct {
	Ext               Ext
	Group             string
	AckID             int32
	Max               int32
	ContinuationToken NullString
}

func (*GroupMemberQuery) Type() Type { return TypeGroupMemberQuery }

func (m *GroupMemberQuery) AppendBody(b []byte) []byte {
	b = head(b, 6, TypeGroupMemberQuery)
	b = appendExt(b, TypeGroupMemberQuery, &m.Ext)
	b = msgp.AppendString(b, m.Group)
	b = appendInt(b, int64(m.AckID))
	b = appendInt(b, int64(m.Max))
	return appendNullString(b, m.ContinuationToken)
}
