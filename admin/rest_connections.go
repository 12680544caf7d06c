package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/edgeplane/edgeplane/backplane"
)

// Connections: existence checks, closes, group membership of one
// connection. Each looks at this node first and then at the fleet: a
// connection, group or user exists if a node holds a local member of it
// (backplane.Fleet.Holders), and a command for one goes to the nodes that
// do.

// defaultCloseReason is the Close message's error when the request gives
// no reason.
const defaultCloseReason = "closed by the server"

var notExistedCode = map[backplane.Kind]string{
	backplane.Connection: codeConnNotExisted,
	backplane.Group:      codeGroupNotExisted,
	backplane.User:       codeUserNotExisted,
}

// holders is how many nodes hold a local member of kind/name, this one
// included (0 if none does).
func (h *Handler) holders(ctx context.Context, hub string, kind backplane.Kind, name string) (int, error) {
	return h.fleet.fleet.Holders(ctx, hub, kind, name)
}

// exists answers HEAD (and v1 GET) existence checks, fleet-wide: 200, or
// 404 with the Warning.*.NotExisted code the Management SDK expects.
func (h *Handler) exists(kind backplane.Kind, param string) restHandler {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		name := r.PathValue(param)
		found := false
		if c.hub != "" {
			hub := h.cfg.Router.Hub(c.hub)
			switch kind {
			case backplane.Connection:
				found = hub.Lookup(name)
			case backplane.Group:
				found = hub.GroupLen(name) > 0
			case backplane.User:
				found = hub.UserLen(name) > 0
			}
			if !found {
				n, err := h.holders(r.Context(), c.hub, kind, name)
				if err != nil {
					apiError(w, backplaneStatus(err), err.Error())
					return
				}
				found = n > 0
			}
		}
		if found {
			w.WriteHeader(http.StatusOK)
			return
		}
		restError(w, http.StatusNotFound, notExistedCode[kind], fmt.Sprintf("%s %q has no connection on any node", kind, name))
	}
}

// closeConn closes one connection wherever it is: 200 (v1 202), 404 with
// Warning.Connection.NotExisted if no node has it.
func (h *Handler) closeConn(w http.ResponseWriter, r *http.Request, c *call) {
	id := r.PathValue("connectionId")
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = defaultCloseReason
	}
	closed := false
	if c.hub != "" {
		closed = h.cfg.Conns.CloseConnection(c.hub, id, reason)
		if !closed {
			n, err := h.holders(r.Context(), c.hub, backplane.Connection, id)
			if err != nil {
				apiError(w, backplaneStatus(err), err.Error())
				return
			}
			if n > 0 {
				reps, err := h.fleet.fleet.Command(r.Context(), c.hub, &backplane.Command{Op: backplane.CmdClose, Kind: backplane.Connection, Name: id, Reason: reason}, n)
				if err != nil && !errors.Is(err, backplane.ErrIncomplete) {
					apiError(w, backplaneStatus(err), err.Error())
					return
				}
				closed = touched(reps) > 0
			}
		}
	}
	if !closed {
		restError(w, http.StatusNotFound, codeConnNotExisted, fmt.Sprintf("connection %q not found on any node", id))
		return
	}
	w.WriteHeader(c.status(http.StatusOK, http.StatusAccepted))
}

func touched(reps []backplane.Reply) int {
	n := 0
	for _, rep := range reps {
		n += rep.N
	}
	return n
}

// closeMany closes the connections of a hub, group or user on every node,
// except the excluded ones, with the reason given: 204.
func (h *Handler) closeMany(kind backplane.Kind, param string) restHandler {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		if !c.requireHub(w) {
			return
		}
		cmd := &backplane.Command{Op: backplane.CmdClose, Kind: kind, Excluded: excluded(r), Reason: r.URL.Query().Get("reason")}
		if param != "" {
			cmd.Name = r.PathValue(param)
		}
		if cmd.Reason == "" {
			cmd.Reason = defaultCloseReason
		}
		if err := h.command(r.Context(), c.hub, cmd); err != nil {
			apiError(w, backplaneStatus(err), err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// command sends a fleet command to the nodes holding what it names and
// waits for their replies (a node that does not reply in time is logged,
// not an error: the command went out).
func (h *Handler) command(ctx context.Context, hub string, cmd *backplane.Command) error {
	_, err := h.commandReplies(ctx, hub, cmd)
	return err
}

func (h *Handler) commandReplies(ctx context.Context, hub string, cmd *backplane.Command) ([]backplane.Reply, error) {
	n, err := h.holders(ctx, hub, cmd.Kind, cmd.Name)
	if err != nil {
		return nil, err
	}
	reps, err := h.fleet.fleet.Command(ctx, hub, cmd, n)
	if errors.Is(err, backplane.ErrIncomplete) {
		h.log.Warn("fleet command: not every node holding its target replied", "op", cmd.Op.String(), "hub", hub, "target", cmd.Kind.String(), "err", err)
		err = nil
	}
	return reps, err
}

// group adds a connection to a group or removes it, on the node that has
// it: 200, 404 if no node has it (Error.Connection.NotExisted for an add,
// as the Management SDK expects; Warning.Connection.NotExisted for a
// removal).
func (h *Handler) group(action backplane.GroupAction) restHandler {
	return func(w http.ResponseWriter, r *http.Request, c *call) {
		group, id := r.PathValue("group"), r.PathValue("connectionId")
		notFound := codeAddConnNotExisted
		if action == backplane.GroupRemove {
			notFound = codeConnNotExisted
		}
		if c.hub == "" {
			restError(w, http.StatusNotFound, notFound, fmt.Sprintf("connection %q not found: hub %q is not served by this node", id, c.asked))
			return
		}
		hub := h.cfg.Router.Hub(c.hub)
		var ok bool
		if action == backplane.GroupAdd {
			ok = hub.AddToGroup(id, group)
		} else {
			ok = hub.RemoveFromGroup(id, group)
		}
		if ok {
			// Like ASP.NET's AddToGroupAsync, an add completes once this
			// node's subscription to the group is confirmed, so a send
			// right after it reaches the new member.
			if sw, isWaiter := h.cfg.Backplane.(subscriptionWaiter); isWaiter && action == backplane.GroupAdd {
				ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RemoteGroupTimeout)
				err := sw.WaitSubscribed(ctx, c.hub, backplane.Group, group)
				cancel()
				if err != nil {
					apiError(w, http.StatusServiceUnavailable, "group subscription not confirmed by the backplane: "+err.Error())
					return
				}
			}
			w.WriteHeader(http.StatusOK)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RemoteGroupTimeout)
		defer cancel()
		err := h.cfg.Backplane.RemoteGroup(ctx, c.hub, action, group, id)
		switch {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.Is(err, backplane.ErrNotFound):
			restError(w, http.StatusNotFound, notFound, fmt.Sprintf("connection %q not found on any node", id))
		default:
			apiError(w, http.StatusServiceUnavailable, "group command: "+err.Error())
		}
	}
}

// leaveAll takes a connection out of every group, on the node that has
// it: 200 (also when no node has it: it is in no group).
func (h *Handler) leaveAll(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.requireHub(w) {
		return
	}
	cmd := &backplane.Command{Op: backplane.CmdLeaveAll, Kind: backplane.Connection, Name: r.PathValue("connectionId")}
	if h.cfg.Router.Hub(c.hub).Lookup(cmd.Name) {
		h.fleet.HandleCommand(c.hub, cmd)
	} else if err := h.command(r.Context(), c.hub, cmd); err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}
