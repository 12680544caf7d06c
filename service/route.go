package service

import (
	"context"
	"errors"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/fanout"
	"github.com/edgeplane/edgeplane/internal/serviceproto"
	"github.com/edgeplane/edgeplane/internal/wsframe"
)

// dispatch handles one message from an app server (its goroutine, in
// order).
func (sc *serverConn) dispatch(m serviceproto.Message) {
	h := sc.h
	switch m := m.(type) {
	case *serviceproto.Ping:
		sc.onPing(m)
	case *serviceproto.ConnectionData:
		h.s.M.fromServer.Inc()
		h.toClient(m.ConnectionID, m.Payload)
	case *serviceproto.CloseConnection:
		h.closeClient(m.ConnectionID, m.ErrorMessage.String)

	case *serviceproto.BroadcastData:
		h.publish(backplane.All, []string{""}, m.Excluded, m.Payloads, m.Ext)
	case *serviceproto.MultiConnectionData:
		h.publish(backplane.Connection, m.ConnectionIDs, nil, m.Payloads, m.Ext)
	case *serviceproto.UserData:
		h.publish(backplane.User, []string{m.UserID}, nil, m.Payloads, m.Ext)
	case *serviceproto.MultiUserData:
		h.publish(backplane.User, m.UserIDs, nil, m.Payloads, m.Ext)
	case *serviceproto.GroupBroadcastData:
		excluded := m.Excluded
		for _, u := range m.ExcludedUsers {
			h.fh.EachOf(backplane.User, u, func(e *fanout.Entry) { excluded = append(excluded, e.ID()) })
		}
		h.publish(backplane.Group, []string{m.Group}, excluded, m.Payloads, m.Ext)
	case *serviceproto.MultiGroupBroadcastData:
		h.publish(backplane.Group, m.Groups, nil, m.Payloads, m.Ext)

	case *serviceproto.JoinGroup:
		h.groupChange(sc, backplane.GroupAdd, m.ConnectionID, m.Group, noAck)
	case *serviceproto.LeaveGroup:
		h.leaveGroup(sc, m.ConnectionID, m.Group, noAck)
	case *serviceproto.JoinGroupWithAck:
		h.groupChange(sc, backplane.GroupAdd, m.ConnectionID, m.Group, m.AckID)
	case *serviceproto.LeaveGroupWithAck:
		h.leaveGroup(sc, m.ConnectionID, m.Group, m.AckID)
	case *serviceproto.UserJoinGroup:
		h.users.add(m.UserID, m.Group, ttlOf(m.Ext))
	case *serviceproto.UserLeaveGroup:
		h.users.remove(m.UserID, m.Group)
	case *serviceproto.UserJoinGroupWithAck:
		h.users.add(m.UserID, m.Group, ttlOf(m.Ext))
		sc.ack(m.AckID, serviceproto.AckOk, "")
	case *serviceproto.UserLeaveGroupWithAck:
		h.users.remove(m.UserID, m.Group)
		sc.ack(m.AckID, serviceproto.AckOk, "")

	case *serviceproto.CheckConnectionExistenceWithAck:
		sc.ackIf(m.AckID, h.fh.Lookup(m.ConnectionID) || h.client(m.ConnectionID) != nil)
	case *serviceproto.CheckUserExistenceWithAck:
		sc.ackIf(m.AckID, h.fh.UserLen(m.UserID) > 0)
	case *serviceproto.CheckGroupExistenceWithAck:
		sc.ackIf(m.AckID, h.fh.GroupLen(m.Group) > 0)
	case *serviceproto.CheckUserInGroupWithAck:
		in := h.users.has(m.UserID, m.Group)
		h.fh.EachOf(backplane.User, m.UserID, func(e *fanout.Entry) { in = in || h.fh.InGroup(e.ID(), m.Group) })
		sc.ackIf(m.AckID, in)

	case *serviceproto.CloseConnectionWithAck:
		sc.ackIf(m.AckID, h.closeClient(m.ConnectionID, m.Reason.String))
	case *serviceproto.CloseConnectionsWithAck:
		h.fh.Each(func(e *fanout.Entry) {
			if !contains(m.Excluded, e.ID()) {
				h.closeClient(e.ID(), m.Reason.String)
			}
		})
		sc.ack(m.AckID, serviceproto.AckOk, "")
	case *serviceproto.CloseUserConnectionsWithAck:
		h.closeEach(backplane.User, m.UserID, m.Excluded, m.Reason.String)
		sc.ack(m.AckID, serviceproto.AckOk, "")
	case *serviceproto.CloseGroupConnectionsWithAck:
		h.closeEach(backplane.Group, m.Group, m.Excluded, m.Reason.String)
		sc.ack(m.AckID, serviceproto.AckOk, "")

	case *serviceproto.ClientInvocation:
		h.inv.invoke(h, sc, m)
	case *serviceproto.ClientCompletion:
		h.inv.complete(h, sc, m.InvocationID, m)
	case *serviceproto.ErrorCompletion:
		h.inv.complete(h, sc, m.InvocationID, m)

	case *serviceproto.AccessKeyRequest:
		sc.send(&serviceproto.AccessKeyResponse{ErrorType: serviceproto.Str("NotSupportedException"),
			ErrorMessage: serviceproto.Str("Entra ID (AAD) authentication is not supported: use AccessKey in the connection string.")})
	case *serviceproto.GroupMemberQuery:
		h.s.M.unsupported(m.Type()).Inc()
		sc.ack(m.AckID, serviceproto.AckInternalServerError, "GroupMemberQuery is not supported.")
	case *serviceproto.HandshakeRequest:
		sc.fail("protocol_error", wsframe.CloseProtocolError, "a second HandshakeRequest")
	default:
		// ServiceEvent, ConnectionFlowControl and the types the service
		// writes: nothing to do; counted as received.
	}
}

// noAck marks a group change without an ack.
const noAck = -1

// onPing answers the pings the SDK sends: a graceful shutdown's fin is
// acknowledged and the server gets no new clients; keep-alives and
// status pings need nothing (arrival already counted as life).
func (sc *serverConn) onPing(p *serviceproto.Ping) {
	if v, ok := p.Get(serviceproto.PingShutdown); ok && v != serviceproto.ShutdownFinAck {
		sc.h.drainServer(sc.serverID)
		sc.send(&serviceproto.Ping{Messages: []string{serviceproto.PingShutdown, serviceproto.ShutdownFinAck}})
	}
}

// ack answers an ack-able message on the connection it came on.
func (sc *serverConn) ack(id int32, st serviceproto.AckStatus, msg string) {
	sc.s.M.acks(st).Inc()
	sc.send(&serviceproto.Ack{AckID: id, Status: st, Message: msg})
}

func (sc *serverConn) ackIf(id int32, ok bool) {
	if ok {
		sc.ack(id, serviceproto.AckOk, "")
	} else {
		sc.ack(id, serviceproto.AckNotFound, "")
	}
}

// publish sends an app's message to every node's clients through the
// backplane: the JSON payload, copied once (the backplane may keep it)
// and shared by every name. Clients are JSON clients; a message without
// a json payload reaches none and is counted. A subscriber filter is not
// applied (counted): it is a Serverless-mode feature.
func (h *hub) publish(kind backplane.Kind, names, excluded []string, p serviceproto.Payloads, ext serviceproto.Ext) {
	js, ok := p.Get("json")
	if !ok {
		h.s.M.dropped("no_json_payload").Inc()
		return
	}
	if ext.Has&serviceproto.ExtFilter != 0 {
		h.s.M.unsupported(serviceproto.TypeBroadcastData).Inc()
	}
	if err := h.s.router.Check(js); err != nil {
		if errors.Is(err, fanout.ErrInvalidUTF8) {
			h.s.M.dropped("invalid_utf8").Inc()
		} else {
			h.s.M.dropped("too_large").Inc()
		}
		return
	}
	payload := append([]byte(nil), js...)
	h.s.M.multicast(kind).Inc()
	for _, name := range names {
		err := h.s.bp.Publish(context.Background(), &backplane.Message{Hub: h.name, Kind: kind, Name: name, Excluded: excluded, Payload: payload})
		if err != nil {
			h.s.M.dropped("backplane").Inc()
		}
	}
}

// groupChange adds or removes a connection to or from a group: here if
// the connection is local, else on the node that owns it (the
// backplane's acked group command, off the connection's goroutine); the
// ack, if asked for, says Ok or NotFound.
func (h *hub) groupChange(sc *serverConn, action backplane.GroupAction, connID, group string, ackID int32) {
	start := time.Now()
	if h.s.router.ApplyGroup(h.name, action, group, connID) {
		h.s.M.ackLatency.UpdateDuration(start)
		if ackID != noAck {
			sc.ack(ackID, serviceproto.AckOk, "")
		}
		return
	}
	h.s.wg.Add(1)
	go func() {
		defer h.s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.GroupTimeout)
		err := h.s.bp.RemoteGroup(ctx, h.name, action, group, connID)
		cancel()
		h.s.M.ackLatency.UpdateDuration(start)
		if ackID == noAck {
			return
		}
		if err == nil {
			sc.ack(ackID, serviceproto.AckOk, "")
		} else {
			sc.ack(ackID, serviceproto.AckNotFound, "")
		}
	}()
}

// leaveGroup is groupChange for a removal; a nil group (the Management
// SDK) leaves every group, on this node.
func (h *hub) leaveGroup(sc *serverConn, connID string, group serviceproto.NullString, ackID int32) {
	if group.Valid {
		h.groupChange(sc, backplane.GroupRemove, connID, group.String, ackID)
		return
	}
	ok := h.fh.RemoveFromAllGroups(connID)
	if ackID != noAck {
		sc.ackIf(ackID, ok)
	}
}

// closeClient closes a connection of the hub on this node for an app: a
// relayed client or any other (the Management SDK closes any). It
// reports whether the connection was here.
func (h *hub) closeClient(id, reason string) bool {
	if rc := h.client(id); rc != nil {
		if rc.c == nil { // hosted here for another node
			h.s.fl.closePeer(h, rc, reason, false)
			return true
		}
		h.s.M.clientsClosed.Inc()
		rc.c.RelayClose(reason, false)
		return true
	}
	if c, ok := h.fh.Member(id).(*conn.Conn); ok {
		h.s.M.clientsClosed.Inc()
		c.RelayClose(reason, false)
		return true
	}
	return false
}

func (h *hub) closeEach(kind backplane.Kind, name string, excluded []string, reason string) {
	h.fh.EachOf(kind, name, func(e *fanout.Entry) {
		if !contains(excluded, e.ID()) {
			h.closeClient(e.ID(), reason)
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ttlOf is a user-group message's time to live: -1 for none (a lasting
// membership), 0 for the user's current connections only.
func ttlOf(e serviceproto.Ext) time.Duration {
	if e.Has&serviceproto.ExtTTL == 0 {
		return -1
	}
	return time.Duration(max(e.TTL, 0)) * time.Second
}
