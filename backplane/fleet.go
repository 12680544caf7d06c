package backplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/edgeplane/edgeplane/backplane/wire"
)

// Fleet commands are edgeplane's own messages between the nodes of a
// fleet, for what the ASP.NET Core wire format has no message for: closing
// the connections of a hub, group or user, user-group membership, taking a
// connection out of every group, listing a group's members. A command
// reaches every node, which applies it to its own connections.
//
// On Redis they travel on P:internal:edgeplane, a channel only edgeplane
// nodes subscribe to; a reply comes back on the asking node's ack channel
// as an ack with extra items ([id, n, [[connId, userId]...], more]), which
// an ASP.NET Core server sharing the backplane never sees and which
// wire.ReadAck still reads. Memory applies a command to the local node at
// once.

// CommandOp is what a fleet command asks of each node.
type CommandOp uint8

// Fleet command operations.
const (
	// CmdClose closes the local connections of Kind/Name (All: every
	// connection of the hub), except Excluded, with Reason.
	CmdClose CommandOp = iota + 1
	// CmdLeaveAll takes connection Name out of every group.
	CmdLeaveAll
	// CmdUserJoin adds user Name's local connections to Group; Expiry
	// (Unix milliseconds) ends the membership, 0: it lasts.
	CmdUserJoin
	// CmdUserLeave takes user Name's local connections out of Group; an
	// empty Group: out of every group.
	CmdUserLeave
	// CmdListGroup lists the local members of group Name whose connection
	// id sorts after After: at most Max of them, in order, and whether
	// there are more.
	CmdListGroup
	cmdOps
)

func (op CommandOp) String() string {
	switch op {
	case CmdClose:
		return "close"
	case CmdLeaveAll:
		return "leave_all"
	case CmdUserJoin:
		return "user_join"
	case CmdUserLeave:
		return "user_leave"
	case CmdListGroup:
		return "list_group"
	}
	return "unknown"
}

// Command is one fleet command.
type Command struct {
	Op       CommandOp
	Kind     Kind
	Name     string
	Group    string
	Excluded []string
	Reason   string
	Expiry   int64
	After    string
	Max      int
	// ID and From are set by the backplane when replies are wanted: the
	// request id and the asking node. A handler leaves them alone.
	ID   int32
	From string
}

// Member is a connection as a group listing shows it.
type Member struct {
	ConnID, UserID string
}

// Reply is one node's answer to a command.
type Reply struct {
	// N is how many of its connections the command touched (closed,
	// moved in or out of groups, listed).
	N int
	// Members and More answer CmdListGroup.
	Members []Member
	More    bool
	// AwaitGroup, when set, is a group this node joined for the command:
	// the reply is sent once the node's subscription to it is confirmed,
	// so that a send after the command completes reaches the new members.
	AwaitGroup string
}

// CommandHandler applies a command to this node's connections of hub. It
// runs on the backplane's receive path: it must not block on I/O. It
// returns the node's reply; nil means this node has nothing to report
// (no reply is sent).
type CommandHandler func(hub string, c *Command) *Reply

// Fleet is implemented by the backplanes that carry fleet commands
// (Memory, Redis).
type Fleet interface {
	// HandleCommands sets the handler of the commands this node receives.
	// Call it before Start.
	HandleCommands(h CommandHandler)
	// Command sends c to every node of the fleet serving hub, this one
	// included, and collects the replies of up to want nodes: it returns
	// when want replies arrived, or after the backplane's ack time-out
	// (or ctx) with the replies received and ErrIncomplete. want 0 sends
	// and returns at once. Memory applies c here and returns this node's
	// reply whatever want is.
	Command(ctx context.Context, hub string, c *Command, want int) ([]Reply, error)
	// Holders is the number of nodes that hold local members of kind/name
	// (subscribers of its channel, fleet-wide); Memory answers 0, the
	// local registry being all there is.
	Holders(ctx context.Context, hub string, kind Kind, name string) (int, error)
}

// ErrIncomplete: fewer nodes replied to a fleet command than were asked
// to, within the ack time-out. What the replies say is returned with it.
var ErrIncomplete = errors.New("backplane: not every node replied to the fleet command in time")

// appendFleetCommand encodes c: [op, kind, name, group, [excluded], reason,
// expiry, after, max, id, from].
func appendFleetCommand(b []byte, c *Command) []byte {
	b = msgp.AppendArrayHeader(b, 11)
	b = msgp.AppendUint8(b, uint8(c.Op))
	b = msgp.AppendUint8(b, uint8(c.Kind))
	b = msgp.AppendString(b, c.Name)
	b = msgp.AppendString(b, c.Group)
	b = msgp.AppendArrayHeader(b, uint32(len(c.Excluded)))
	for _, id := range c.Excluded {
		b = msgp.AppendString(b, id)
	}
	b = msgp.AppendString(b, c.Reason)
	b = msgp.AppendInt64(b, c.Expiry)
	b = msgp.AppendString(b, c.After)
	b = msgp.AppendInt(b, c.Max)
	b = msgp.AppendInt32(b, c.ID)
	return msgp.AppendString(b, c.From)
}

// readFleetCommand decodes a command. Its strings are copies: a handler may
// keep them.
func readFleetCommand(b []byte, c *Command) error {
	bad := func(what string, err error) error {
		return fmt.Errorf("%w: fleet command: %s: %w", wire.ErrMalformed, what, err)
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return bad("array", err)
	}
	if n < 11 {
		return fmt.Errorf("%w: fleet command has %d items, want 11", wire.ErrMalformed, n)
	}
	var op, kind uint8
	if op, b, err = msgp.ReadUint8Bytes(b); err != nil {
		return bad("op", err)
	}
	if op == 0 || op >= uint8(cmdOps) {
		return fmt.Errorf("%w: unknown fleet command %d", wire.ErrMalformed, op)
	}
	c.Op = CommandOp(op)
	if kind, b, err = msgp.ReadUint8Bytes(b); err != nil {
		return bad("kind", err)
	}
	c.Kind = Kind(kind)
	if c.Name, b, err = msgp.ReadStringBytes(b); err != nil {
		return bad("name", err)
	}
	if c.Group, b, err = msgp.ReadStringBytes(b); err != nil {
		return bad("group", err)
	}
	var ex uint32
	if ex, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
		return bad("excluded", err)
	}
	if int(ex) > len(b) {
		return fmt.Errorf("%w: fleet command: %d excluded ids in %d bytes", wire.ErrMalformed, ex, len(b))
	}
	c.Excluded = make([]string, ex)
	for i := range c.Excluded {
		if c.Excluded[i], b, err = msgp.ReadStringBytes(b); err != nil {
			return bad("excluded id", err)
		}
	}
	if c.Reason, b, err = msgp.ReadStringBytes(b); err != nil {
		return bad("reason", err)
	}
	if c.Expiry, b, err = msgp.ReadInt64Bytes(b); err != nil {
		return bad("expiry", err)
	}
	if c.After, b, err = msgp.ReadStringBytes(b); err != nil {
		return bad("after", err)
	}
	if c.Max, b, err = msgp.ReadIntBytes(b); err != nil {
		return bad("max", err)
	}
	if c.ID, b, err = msgp.ReadInt32Bytes(b); err != nil {
		return bad("id", err)
	}
	if c.From, b, err = msgp.ReadStringBytes(b); err != nil {
		return bad("from", err)
	}
	for ; n > 11; n-- {
		if b, err = msgp.Skip(b); err != nil {
			return bad("extra item", err)
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: fleet command: %d trailing bytes", wire.ErrMalformed, len(b))
	}
	return nil
}

// appendReply encodes a reply as an ack with extra items: [id, n,
// [[connId, userId]...], more].
func appendReply(b []byte, id int32, r *Reply) []byte {
	b = msgp.AppendArrayHeader(b, 4)
	b = msgp.AppendInt32(b, id)
	b = msgp.AppendInt(b, r.N)
	b = msgp.AppendArrayHeader(b, uint32(len(r.Members)))
	for _, m := range r.Members {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendString(b, m.ConnID)
		b = msgp.AppendString(b, m.UserID)
	}
	return msgp.AppendBool(b, r.More)
}

// readReply decodes a reply's items after the id; a plain ack [id] is an
// empty reply.
func readReply(b []byte) (Reply, error) {
	var r Reply
	bad := func(what string, err error) error {
		return fmt.Errorf("%w: fleet reply: %s: %w", wire.ErrMalformed, what, err)
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return r, bad("array", err)
	}
	if n < 4 {
		return r, nil
	}
	if b, err = msgp.Skip(b); err != nil {
		return r, bad("id", err)
	}
	if r.N, b, err = msgp.ReadIntBytes(b); err != nil {
		return r, bad("n", err)
	}
	var m uint32
	if m, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
		return r, bad("members", err)
	}
	if int(m) > len(b) {
		return r, fmt.Errorf("%w: fleet reply: %d members in %d bytes", wire.ErrMalformed, m, len(b))
	}
	r.Members = make([]Member, m)
	for i := range r.Members {
		var k uint32
		if k, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || k != 2 {
			return r, bad("member", errors.Join(err, fmt.Errorf("%d items", k)))
		}
		if r.Members[i].ConnID, b, err = msgp.ReadStringBytes(b); err != nil {
			return r, bad("connection id", err)
		}
		if r.Members[i].UserID, b, err = msgp.ReadStringBytes(b); err != nil {
			return r, bad("user id", err)
		}
	}
	if r.More, _, err = msgp.ReadBoolBytes(b); err != nil {
		return r, bad("more", err)
	}
	return r, nil
}
