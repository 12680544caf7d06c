package serviceproto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// vector is one entry of testdata/asrs-service-protocol.json (a copy of
// shared/vectors/asrs-service-protocol.json): the SDK's own test bytes.
type vector struct {
	Name        string  `json:"name"`
	Set         string  `json:"set"`
	Type        int32   `json:"type"`
	ArrayLength int     `json:"array_length"`
	Fields      []field `json:"fields"`
	Hex         string  `json:"hex"`
	FramedHex   string  `json:"framed_hex"`
}

type field struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	raw, err := os.ReadFile("testdata/asrs-service-protocol.json")
	if err != nil {
		tb.Fatalf("read vectors: %v", err)
	}
	var v struct {
		Count   int      `json:"count"`
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("decode vectors: %v", err)
	}
	if len(v.Vectors) != v.Count || v.Count != 131 {
		tb.Fatalf("%d vectors, file says %d, want 131", len(v.Vectors), v.Count)
	}
	return v.Vectors
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("hex %q: %v", s, err)
	}
	return b
}

// currentLength is the number of items the writer puts in m: its type's
// current layout (fixed for every type but Ping).
func currentLength(m Message) int {
	body := m.AppendBody(nil)
	n, _, err := msgp.ReadArrayHeaderBytes(body)
	if err != nil {
		panic(err)
	}
	return int(n)
}

func allZero() []Message {
	return []Message{
		&HandshakeRequest{}, &HandshakeResponse{}, &AccessKeyRequest{}, &AccessKeyResponse{}, &Ping{},
		&OpenConnection{}, &CloseConnection{}, &ConnectionData{}, &ConnectionReconnect{},
		&MultiConnectionData{}, &UserData{}, &MultiUserData{}, &BroadcastData{}, &GroupBroadcastData{},
		&MultiGroupBroadcastData{}, &ServiceError{}, &ServiceEvent{}, &JoinGroup{}, &LeaveGroup{},
		&UserJoinGroup{}, &UserLeaveGroup{}, &JoinGroupWithAck{}, &LeaveGroupWithAck{},
		&UserJoinGroupWithAck{}, &UserLeaveGroupWithAck{}, &CheckUserInGroupWithAck{},
		&CheckGroupExistenceWithAck{}, &CheckConnectionExistenceWithAck{}, &CheckUserExistenceWithAck{},
		&CloseConnectionWithAck{}, &CloseConnectionsWithAck{}, &CloseUserConnectionsWithAck{},
		&CloseGroupConnectionsWithAck{}, &Ack{}, &ClientInvocation{}, &ClientCompletion{},
		&ErrorCompletion{}, &ServiceMapping{}, &ConnectionFlowControl{}, &GroupMemberQuery{},
	}
}

// TestVectors checks every vector both ways. Reading: the bytes parse to
// the struct that the vector's named fields describe (built here
// independently of Parse). Writing: for the current layouts (TestData
// whose length is the writer's), that struct and the parsed one both
// write exactly the vector's bytes, framed and unframed; older layouts
// write the current layout, which parses back to the same struct.
func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	current, older := 0, 0
	seen := map[Type]bool{}
	for _, v := range vs {
		t.Run(v.Set+"/"+v.Name, func(t *testing.T) {
			body := unhex(t, v.Hex)
			got, err := Parse(body)
			if err != nil {
				t.Fatalf("Parse(%s): %v", v.Hex, err)
			}
			if got.Type() != Type(v.Type) {
				t.Fatalf("type %s, want %d", got.Type(), v.Type)
			}
			seen[got.Type()] = true
			want := fromFields(t, Type(v.Type), v.Fields)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Parse(%s)\n got  %#v\n want %#v", v.Hex, got, want)
			}
			if v.Set == "TestData" && v.ArrayLength == currentLength(got) || v.Set == "derived (not from tests)" {
				current++
				for _, m := range []Message{want, got} {
					if w := hex.EncodeToString(m.AppendBody(nil)); w != v.Hex {
						t.Fatalf("AppendBody(%T)\n got  %s\n want %s", m, w, v.Hex)
					}
					if w := hex.EncodeToString(AppendFrame([]byte("x"), m)[1:]); w != v.FramedHex {
						t.Fatalf("AppendFrame\n got  %s\n want %s", w, v.FramedHex)
					}
				}
				return
			}
			older++
			if v.ArrayLength >= currentLength(got) {
				t.Fatalf("%s: %d items is not an older layout (current %d)", v.Set, v.ArrayLength, currentLength(got))
			}
			again, err := Parse(got.AppendBody(nil))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("rewritten in the current layout: %#v, %v; was %#v", again, err, got)
			}
		})
	}
	t.Logf("%d vectors: %d current layouts written byte for byte, %d older layouts read; %d types", len(vs), current, older, len(seen))
	if current < 80 || older < 40 {
		t.Fatalf("only %d current and %d older vectors checked", current, older)
	}
}

// TestEveryTypeHasAVector: the vectors cover each message type but
// RefreshAuth (41, not readable in any source here).
func TestEveryTypeHasAVector(t *testing.T) {
	seen := map[Type]bool{}
	for _, v := range loadVectors(t) {
		seen[Type(v.Type)] = true
	}
	for _, z := range allZero() {
		if !seen[z.Type()] {
			t.Errorf("no vector for %s", z.Type())
		}
	}
	if len(allZero()) != int(TypeGroupMemberQuery) {
		t.Errorf("%d message structs, want one for each of the %d types", len(allZero()), TypeGroupMemberQuery)
	}
}

// fields reads a vector's named field values.
type fields struct {
	tb testing.TB
	m  map[string]json.RawMessage
}

func (f fields) has(name string) bool { _, ok := f.m[name]; return ok }

func (f fields) raw(name string, into any) {
	f.tb.Helper()
	v, ok := f.m[name]
	if !ok {
		f.tb.Fatalf("vector has no field %q", name)
	}
	if err := json.Unmarshal(v, into); err != nil {
		f.tb.Fatalf("field %q: %v", name, err)
	}
}

func (f fields) str(name string) string {
	if !f.has(name) {
		return ""
	}
	var s *string
	f.raw(name, &s)
	if s == nil {
		return ""
	}
	return *s
}

func (f fields) nstr(name string) NullString {
	if !f.has(name) {
		return NullString{}
	}
	var s *string
	f.raw(name, &s)
	if s == nil {
		return NullString{}
	}
	return Str(*s)
}

func (f fields) i32(name string) int32 {
	if !f.has(name) {
		return 0
	}
	var v int32
	f.raw(name, &v)
	return v
}

func (f fields) boolean(name string) bool {
	if !f.has(name) {
		return false
	}
	var v bool
	f.raw(name, &v)
	return v
}

func (f fields) strs(name string) []string {
	if !f.has(name) {
		return nil
	}
	var v []string
	f.raw(name, &v)
	if len(v) == 0 {
		return nil
	}
	return v
}

func (f fields) bin(name string) []byte {
	if !f.has(name) {
		return nil
	}
	var v *struct {
		Bin string `json:"bin"`
	}
	f.raw(name, &v)
	if v == nil {
		return nil
	}
	return unhex(f.tb, v.Bin)
}

// pairs reads a {"map": [[k, v], ...]} field.
func (f fields) pairs(name string) [][2]json.RawMessage {
	if !f.has(name) {
		return nil
	}
	var v struct {
		Map [][2]json.RawMessage `json:"map"`
	}
	f.raw(name, &v)
	return v.Map
}

func unq[T any](tb testing.TB, raw json.RawMessage) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatalf("%s: %v", raw, err)
	}
	return v
}

func (f fields) payloads(name string) Payloads {
	var p Payloads
	for _, kv := range f.pairs(name) {
		v := unq[struct {
			Bin string `json:"bin"`
		}](f.tb, kv[1])
		p = append(p, Payload{Protocol: unq[string](f.tb, kv[0]), Data: unhex(f.tb, v.Bin)})
	}
	return p
}

func (f fields) claims(name string) []Claim {
	var c []Claim
	for _, kv := range f.pairs(name) {
		c = append(c, Claim{Type: unq[string](f.tb, kv[0]), Value: unq[string](f.tb, kv[1])})
	}
	return c
}

func (f fields) headers(name string) []Header {
	var h []Header
	for _, kv := range f.pairs(name) {
		h = append(h, Header{Name: unq[string](f.tb, kv[0]), Values: unq[[]string](f.tb, kv[1])})
	}
	return h
}

func (f fields) ext() Ext {
	var e Ext
	for _, kv := range f.pairs("ext") {
		switch k := unq[string](f.tb, kv[0]); k {
		case "tracingId":
			e = e.WithTracingID(unq[uint64](f.tb, kv[1]))
		case "ttl":
			e = e.WithTTL(unq[int32](f.tb, kv[1]))
		case "protocol":
			e = e.WithProtocol(unq[string](f.tb, kv[1]))
		case "filter":
			e = e.WithFilter(unq[string](f.tb, kv[1]))
		case "dataMessageType":
			e.DataType = DataMessageType(unq[int32](f.tb, kv[1]))
		case "isPartial":
			e.Partial = unq[bool](f.tb, kv[1])
		default:
			f.tb.Fatalf("unknown ext key %q", k)
		}
	}
	return e
}

// fromFields builds the message a vector's fields describe.
func fromFields(tb testing.TB, t Type, fs []field) Message {
	tb.Helper()
	f := fields{tb: tb, m: map[string]json.RawMessage{}}
	var ping []string
	for _, x := range fs {
		f.m[x.Name] = x.Value
		if strings.HasPrefix(x.Name, "messages[") {
			ping = append(ping, unq[string](tb, x.Value))
		}
	}
	if got := f.i32("type"); got != int32(t) {
		tb.Fatalf("type field %d, vector type %d", got, t)
	}
	switch t {
	case TypeHandshakeRequest:
		return &HandshakeRequest{Version: f.i32("version"), ConnectionType: ConnectionType(f.i32("connectionType")),
			Target: f.str("target"), MigrationLevel: MigrationLevel(f.i32("migrationLevel")), Ext: f.ext(),
			AllowStatefulReconnects: f.boolean("allowStatefulReconnects")}
	case TypeHandshakeResponse:
		return &HandshakeResponse{ErrorMessage: f.str("errorMessage"), Ext: f.ext(), ConnectionID: f.nstr("connectionId")}
	case TypeAccessKeyRequest:
		return &AccessKeyRequest{Token: f.str("token"), Kid: f.nstr("kid"), Ext: f.ext()}
	case TypeAccessKeyResponse:
		return &AccessKeyResponse{Kid: f.nstr("kid"), AccessKey: f.nstr("accessKey"), ErrorType: f.nstr("errorType"),
			ErrorMessage: f.nstr("errorMessage"), Ext: f.ext()}
	case TypePing:
		return &Ping{Messages: ping}
	case TypeOpenConnection:
		return &OpenConnection{ConnectionID: f.str("connectionId"), Claims: f.claims("claims"), Headers: f.headers("headers"),
			QueryString: f.str("queryString"), Ext: f.ext()}
	case TypeCloseConnection:
		return &CloseConnection{ConnectionID: f.str("connectionId"), ErrorMessage: f.nstr("errorMessage"),
			Headers: f.headers("headers"), Ext: f.ext()}
	case TypeConnectionData:
		return &ConnectionData{ConnectionID: f.str("connectionId"), Payload: f.bin("payload"), Ext: f.ext()}
	case TypeConnectionReconnect:
		return &ConnectionReconnect{ConnectionID: f.str("connectionId"), Ext: f.ext()}
	case TypeMultiConnectionData:
		return &MultiConnectionData{ConnectionIDs: f.strs("connectionList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case TypeUserData:
		return &UserData{UserID: f.str("userId"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case TypeMultiUserData:
		return &MultiUserData{UserIDs: f.strs("userList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case TypeBroadcastData:
		return &BroadcastData{Excluded: f.strs("excludedList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case TypeGroupBroadcastData:
		return &GroupBroadcastData{Group: f.str("groupName"), Excluded: f.strs("excludedList"), Payloads: f.payloads("payloads"),
			Ext: f.ext(), ExcludedUsers: f.strs("excludedUserList"), CallerUserID: f.nstr("callerUserId")}
	case TypeMultiGroupBroadcastData:
		return &MultiGroupBroadcastData{Groups: f.strs("groupList"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case TypeServiceError:
		return &ServiceError{ErrorMessage: f.str("errorMessage")}
	case TypeServiceEvent:
		return &ServiceEvent{ObjectType: ServiceEventObjectType(f.i32("objectType")), ID: f.str("id"),
			Kind: ServiceEventKind(f.i32("kind")), Message: f.str("message"), Ext: f.ext()}
	case TypeJoinGroup:
		return &JoinGroup{ConnectionID: f.str("connectionId"), Group: f.str("groupName"), Ext: f.ext()}
	case TypeLeaveGroup:
		return &LeaveGroup{ConnectionID: f.str("connectionId"), Group: f.nstr("groupName"), Ext: f.ext()}
	case TypeUserJoinGroup:
		return &UserJoinGroup{UserID: f.str("userId"), Group: f.str("groupName"), Ext: f.ext()}
	case TypeUserLeaveGroup:
		return &UserLeaveGroup{UserID: f.str("userId"), Group: f.nstr("groupName"), Ext: f.ext()}
	case TypeJoinGroupWithAck:
		return &JoinGroupWithAck{ConnectionID: f.str("connectionId"), Group: f.str("groupName"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeLeaveGroupWithAck:
		return &LeaveGroupWithAck{ConnectionID: f.str("connectionId"), Group: f.nstr("groupName"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeUserJoinGroupWithAck:
		return &UserJoinGroupWithAck{UserID: f.str("userId"), Group: f.str("groupName"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeUserLeaveGroupWithAck:
		return &UserLeaveGroupWithAck{UserID: f.str("userId"), Group: f.nstr("groupName"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeCheckUserInGroupWithAck:
		return &CheckUserInGroupWithAck{UserID: f.str("userId"), Group: f.str("groupName"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeCheckGroupExistenceWithAck:
		return &CheckGroupExistenceWithAck{Group: f.str("groupName"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeCheckConnectionExistenceWithAck:
		return &CheckConnectionExistenceWithAck{ConnectionID: f.str("connectionId"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeCheckUserExistenceWithAck:
		return &CheckUserExistenceWithAck{UserID: f.str("userId"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeCloseConnectionWithAck:
		return &CloseConnectionWithAck{ConnectionID: f.str("connectionId"), Reason: f.nstr("reason"), AckID: f.i32("ackId"), Ext: f.ext()}
	case TypeCloseConnectionsWithAck:
		return &CloseConnectionsWithAck{Reason: f.nstr("reason"), AckID: f.i32("ackId"), Excluded: f.strs("excludedList"), Ext: f.ext()}
	case TypeCloseUserConnectionsWithAck:
		return &CloseUserConnectionsWithAck{UserID: f.str("userId"), Reason: f.nstr("reason"), AckID: f.i32("ackId"),
			Excluded: f.strs("excludedList"), Ext: f.ext()}
	case TypeCloseGroupConnectionsWithAck:
		return &CloseGroupConnectionsWithAck{Group: f.str("groupName"), Reason: f.nstr("reason"), AckID: f.i32("ackId"),
			Excluded: f.strs("excludedList"), Ext: f.ext()}
	case TypeAck:
		return &Ack{AckID: f.i32("ackId"), Status: AckStatus(f.i32("status")), Message: f.str("message"), Ext: f.ext(), Payload: f.bin("payload")}
	case TypeClientInvocation:
		return &ClientInvocation{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			CallerServerID: f.str("callerServerId"), Payloads: f.payloads("payloads"), Ext: f.ext()}
	case TypeClientCompletion:
		e := f.ext()
		proto := f.str("protocol")
		if e.Has&ExtProtocol != 0 { // the ext's protocol is the same property
			proto, e.Has, e.Protocol = e.Protocol, e.Has&^ExtProtocol, ""
		}
		return &ClientCompletion{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			CallerServerID: f.str("callerServerId"), Protocol: proto, Payload: f.bin("payload"), Ext: e}
	case TypeErrorCompletion:
		return &ErrorCompletion{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			CallerServerID: f.str("callerServerId"), Error: f.str("error"), Ext: f.ext()}
	case TypeServiceMapping:
		return &ServiceMapping{InvocationID: f.str("invocationId"), ConnectionID: f.str("connectionId"),
			InstanceID: f.str("instanceId"), Ext: f.ext()}
	case TypeConnectionFlowControl:
		return &ConnectionFlowControl{ConnectionID: f.str("connectionId"), ConnectionType: FlowConnectionType(f.i32("connectionType")),
			Operation: FlowOperation(f.i32("operation")), Ext: f.ext()}
	case TypeGroupMemberQuery:
		return &GroupMemberQuery{Ext: f.ext(), Group: f.str("groupName"), AckID: f.i32("ackId"), Max: f.i32("max"),
			ContinuationToken: f.nstr("continuationToken")}
	}
	tb.Fatalf("no builder for %s", t)
	return nil
}

// TestFramedVectorsAsOneStream: the vectors' framed bytes back to back,
// fed to a Splitter in chunks of every size from 1 byte up, come out as
// the same bodies in the same order: frame boundaries mean nothing.
func TestFramedVectorsAsOneStream(t *testing.T) {
	vs := loadVectors(t)
	var stream []byte
	var want [][]byte
	for _, v := range vs {
		stream = append(stream, unhex(t, v.FramedHex)...)
		want = append(want, unhex(t, v.Hex))
	}
	// One message over 127 bytes (a 2-byte prefix) and one over 16 KiB (3 bytes).
	for _, n := range []int{300, 20000} {
		m := &ConnectionData{ConnectionID: "big", Payload: bytes.Repeat([]byte{0x1e}, n)}
		stream = AppendFrame(stream, m)
		want = append(want, m.AppendBody(nil))
	}
	for _, chunk := range []int{1, 2, 3, 5, 7, 64, 1000, len(stream)} {
		var s Splitter
		var got [][]byte
		for off := 0; off < len(stream); off += chunk {
			end := min(off+chunk, len(stream))
			if err := s.Feed(stream[off:end], func(body []byte) error {
				got = append(got, bytes.Clone(body))
				return nil
			}); err != nil {
				t.Fatalf("chunk %d: Feed at %d: %v", chunk, off, err)
			}
		}
		if s.Buffered() != 0 {
			t.Fatalf("chunk %d: %d bytes left over", chunk, s.Buffered())
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: %d messages, want %d", chunk, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("chunk %d: message %d is %x, want %x", chunk, i, got[i], want[i])
			}
		}
	}
}
