package serviceproto

import "strconv"

// Type is a message's type id, the first item of its array
// (ServiceProtocolConstants in the SDK).
type Type int32

// Message types. S→A: service to app server; A→S: app server to service.
const (
	TypeHandshakeRequest                Type = 1  // A→S
	TypeHandshakeResponse               Type = 2  // S→A
	TypePing                            Type = 3  // both
	TypeOpenConnection                  Type = 4  // S→A
	TypeCloseConnection                 Type = 5  // both
	TypeConnectionData                  Type = 6  // both
	TypeMultiConnectionData             Type = 7  // A→S
	TypeUserData                        Type = 8  // A→S
	TypeMultiUserData                   Type = 9  // A→S
	TypeBroadcastData                   Type = 10 // A→S
	TypeJoinGroup                       Type = 11 // A→S
	TypeLeaveGroup                      Type = 12 // A→S
	TypeGroupBroadcastData              Type = 13 // A→S
	TypeMultiGroupBroadcastData         Type = 14 // A→S
	TypeServiceError                    Type = 15 // S→A
	TypeUserJoinGroup                   Type = 16 // A→S
	TypeUserLeaveGroup                  Type = 17 // A→S
	TypeJoinGroupWithAck                Type = 18 // A→S
	TypeLeaveGroupWithAck               Type = 19 // A→S
	TypeAck                             Type = 20 // S→A
	TypeCheckUserInGroupWithAck         Type = 21 // A→S
	TypeServiceEvent                    Type = 22 // S→A
	TypeCheckGroupExistenceWithAck      Type = 23 // A→S
	TypeCheckConnectionExistenceWithAck Type = 24 // A→S
	TypeCheckUserExistenceWithAck       Type = 25 // A→S
	TypeUserJoinGroupWithAck            Type = 26 // A→S
	TypeUserLeaveGroupWithAck           Type = 27 // A→S
	TypeAccessKeyRequest                Type = 28 // A→S (Entra ID only)
	TypeAccessKeyResponse               Type = 29 // S→A (Entra ID only)
	TypeCloseConnectionWithAck          Type = 30 // A→S, obsolete
	TypeCloseConnectionsWithAck         Type = 31 // A→S, obsolete
	TypeCloseUserConnectionsWithAck     Type = 32 // A→S
	TypeCloseGroupConnectionsWithAck    Type = 33 // A→S
	TypeClientInvocation                Type = 34 // both
	TypeClientCompletion                Type = 35 // both
	TypeErrorCompletion                 Type = 36 // both
	TypeServiceMapping                  Type = 37 // S→A
	TypeConnectionReconnect             Type = 38 // S→A
	TypeConnectionFlowControl           Type = 39 // both
	TypeGroupMemberQuery                Type = 40 // A→S
)

var typeNames = [...]string{
	TypeHandshakeRequest:                "HandshakeRequest",
	TypeHandshakeResponse:               "HandshakeResponse",
	TypePing:                            "Ping",
	TypeOpenConnection:                  "OpenConnection",
	TypeCloseConnection:                 "CloseConnection",
	TypeConnectionData:                  "ConnectionData",
	TypeMultiConnectionData:             "MultiConnectionData",
	TypeUserData:                        "UserData",
	TypeMultiUserData:                   "MultiUserData",
	TypeBroadcastData:                   "BroadcastData",
	TypeJoinGroup:                       "JoinGroup",
	TypeLeaveGroup:                      "LeaveGroup",
	TypeGroupBroadcastData:              "GroupBroadcastData",
	TypeMultiGroupBroadcastData:         "MultiGroupBroadcastData",
	TypeServiceError:                    "ServiceError",
	TypeUserJoinGroup:                   "UserJoinGroup",
	TypeUserLeaveGroup:                  "UserLeaveGroup",
	TypeJoinGroupWithAck:                "JoinGroupWithAck",
	TypeLeaveGroupWithAck:               "LeaveGroupWithAck",
	TypeAck:                             "Ack",
	TypeCheckUserInGroupWithAck:         "CheckUserInGroupWithAck",
	TypeServiceEvent:                    "ServiceEvent",
	TypeCheckGroupExistenceWithAck:      "CheckGroupExistenceWithAck",
	TypeCheckConnectionExistenceWithAck: "CheckConnectionExistenceWithAck",
	TypeCheckUserExistenceWithAck:       "CheckUserExistenceWithAck",
	TypeUserJoinGroupWithAck:            "UserJoinGroupWithAck",
	TypeUserLeaveGroupWithAck:           "UserLeaveGroupWithAck",
	TypeAccessKeyRequest:                "AccessKeyRequest",
	TypeAccessKeyResponse:               "AccessKeyResponse",
	TypeCloseConnectionWithAck:          "CloseConnectionWithAck",
	TypeCloseConnectionsWithAck:         "CloseConnectionsWithAck",
	TypeCloseUserConnectionsWithAck:     "CloseUserConnectionsWithAck",
	TypeCloseGroupConnectionsWithAck:    "CloseGroupConnectionsWithAck",
	TypeClientInvocation:                "ClientInvocation",
	TypeClientCompletion:                "ClientCompletion",
	TypeErrorCompletion:                 "ErrorCompletion",
	TypeServiceMapping:                  "ServiceMapping",
	TypeConnectionReconnect:             "ConnectionReconnect",
	TypeConnectionFlowControl:           "ConnectionFlowControl",
	TypeGroupMemberQuery:                "GroupMemberQuery",
}

// String is the type's name in the SDK without "Message", or "Type(n)".
func (t Type) String() string {
	if t > 0 && int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Version is the only service protocol version (ServiceProtocol.Version).
const Version = 1

// ConnectionType is what a server connection is for, in its
// HandshakeRequest (ServerConnectionType in the SDK).
type ConnectionType int32

const (
	// ConnectionDefault: one of the app server's connections per hub
	// (InitialHubServerConnectionCount, 5); hosts clients.
	ConnectionDefault ConnectionType = 0
	// ConnectionOnDemand: an extra connection opened on a service's
	// "target" ping, to that service instance; hosts clients.
	ConnectionOnDemand ConnectionType = 1
	// ConnectionWeak: the Management SDK's send-only connection; never
	// hosts clients.
	ConnectionWeak ConnectionType = 2
)

// MigrationLevel is what the app server lets the service do with its
// clients when it shuts down gracefully, in its HandshakeRequest.
type MigrationLevel int32

const (
	MigrationOff          MigrationLevel = 0
	MigrationShutdownOnly MigrationLevel = 1 // GracefulShutdown.Mode = MigrateClients
	MigrationAny          MigrationLevel = 2
)

// AckStatus is an Ack's status (AckStatus in the SDK).
type AckStatus int32

const (
	AckOk                  AckStatus = 1 // done; Check*: exists
	AckNotFound            AckStatus = 2 // no such connection/user/group; Check*: does not exist
	AckTimeout             AckStatus = 3
	AckInternalServerError AckStatus = 4
)

// DataMessageType says what a ConnectionData carries (ext key 5).
type DataMessageType int32

const (
	DataUnknown    DataMessageType = 0 // not written
	DataHandshake  DataMessageType = 1
	DataInvocation DataMessageType = 2 // invocation, completion, stream item...
	DataOther      DataMessageType = 3 // ping and the rest
	DataClose      DataMessageType = 4
)

// ServiceEventObjectType is what a ServiceEvent is about.
type ServiceEventObjectType int32

const (
	EventServiceInstance  ServiceEventObjectType = 0
	EventConnection       ServiceEventObjectType = 1
	EventUser             ServiceEventObjectType = 2
	EventGroup            ServiceEventObjectType = 3
	EventServerConnection ServiceEventObjectType = 4
)

// ServiceEventKind is what happened, in a ServiceEvent.
type ServiceEventKind int32

const (
	EventReloading  ServiceEventKind = 0
	EventInvalid    ServiceEventKind = 1
	EventNotExisted ServiceEventKind = 2
	EventBufferFull ServiceEventKind = 3
)

// FlowConnectionType is the kind of connection a ConnectionFlowControl is
// about.
type FlowConnectionType int32

const (
	FlowClient FlowConnectionType = 1
	FlowServer FlowConnectionType = 2
)

// FlowOperation is a ConnectionFlowControl's operation.
type FlowOperation int32

const (
	FlowPause    FlowOperation = 1
	FlowPauseAck FlowOperation = 2
	FlowResume   FlowOperation = 3
	FlowOffline  FlowOperation = 4
)
