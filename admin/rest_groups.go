package admin

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgeplane/edgeplane/backplane"
)

// Groups: paged listing of a group's connections (2024-12-01) and user
// groups. A user-group change is stored first (UserGroupStore: the
// connections a user opens later join from it), then applied to the
// user's current connections by the nodes that hold them, which reply once
// done (for a join: once subscribed to the group, so a send right after
// reaches them).

// Group listing page sizes (the API's maxpagesize).
const (
	defaultPageSize = 200
	maxPageSize     = 200
)

type groupMember struct {
	ConnectionID string `json:"connectionId"`
	UserID       string `json:"userId,omitempty"`
}

type groupPage struct {
	Value    []groupMember `json:"value"`
	NextLink string        `json:"nextLink,omitempty"`
}

// pageToken is the continuation token: the last connection id served and
// how many were served so far (for top), base64url JSON, opaque to
// clients.
type pageToken struct {
	After  string `json:"a"`
	Served int    `json:"n"`
}

func (t pageToken) encode() string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err == nil && t.Served < 0 {
		err = fmt.Errorf("negative count")
	}
	return t, err
}

// intParam reads an optional integer query parameter within [min, max];
// def if absent.
func intParam(q url.Values, name string, def, min, max int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, v, min, max)
	}
	return n, nil
}

// listGroup lists a group's connections on every node, ordered by
// connection id, a page at a time (maxpagesize), top in all; nextLink
// continues after the last one served.
func (h *Handler) listGroup(w http.ResponseWriter, r *http.Request, c *call) {
	q := r.URL.Query()
	size, err := intParam(q, "maxpagesize", defaultPageSize, 1, maxPageSize)
	if err != nil {
		badParam(w, "maxpagesize", err.Error())
		return
	}
	top, err := intParam(q, "top", 0, 1, int(^uint32(0)>>1))
	if err != nil {
		badParam(w, "top", err.Error())
		return
	}
	var tok pageToken
	if s := q.Get("continuationToken"); s != "" {
		if tok, err = decodePageToken(s); err != nil {
			badParam(w, "continuationToken", fmt.Sprintf("continuationToken %q is not one this API gave out: %v", s, err))
			return
		}
	}
	page := groupPage{Value: []groupMember{}}
	limit := size
	if top > 0 {
		limit = min(limit, top-tok.Served)
	}
	if c.hub == "" || limit <= 0 {
		writePage(w, page)
		return
	}
	group := r.PathValue("group")
	reps, err := h.commandReplies(r.Context(), c.hub, &backplane.Command{Op: backplane.CmdListGroup, Kind: backplane.Group, Name: group, After: tok.After, Max: limit})
	if err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	var all []backplane.Member
	more := false
	for _, rep := range reps {
		all = append(all, rep.Members...)
		more = more || rep.More
	}
	slices.SortFunc(all, func(a, b backplane.Member) int { return strings.Compare(a.ConnID, b.ConnID) })
	all = slices.CompactFunc(all, func(a, b backplane.Member) bool { return a.ConnID == b.ConnID })
	if len(all) > limit {
		all, more = all[:limit], true
	}
	for _, m := range all {
		page.Value = append(page.Value, groupMember{ConnectionID: m.ConnID, UserID: m.UserID})
	}
	served := tok.Served + len(all)
	if more && len(all) > 0 && (top == 0 || served < top) {
		next := url.Values{}
		for _, k := range []string{"maxpagesize", "top", "application", "api-version"} {
			if v := q.Get(k); v != "" {
				next.Set(k, v)
			}
		}
		next.Set("continuationToken", pageToken{After: all[len(all)-1].ConnID, Served: served}.encode())
		u := url.URL{Scheme: scheme(r), Host: r.Host, Path: r.URL.Path, RawQuery: next.Encode()}
		page.NextLink = u.String()
	}
	writePage(w, page)
}

func writePage(w http.ResponseWriter, p groupPage) {
	w.Header().Set("Content-Type", contentTypeJSONUTF8)
	w.WriteHeader(http.StatusOK)
	writeJSON(w, p)
}

// scheme is the scheme the client used: https behind TLS or a proxy that
// says so.
func scheme(r *http.Request) string {
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return "https"
	}
	return "http"
}

// addUserToGroup adds a user to a group: ttl seconds (the membership
// ends then), none (it lasts; the user keeps its latest 100 such groups)
// or 0 (only its current connections join, nothing is stored). 200 (v1
// 202).
func (h *Handler) addUserToGroup(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.requireHub(w) {
		return
	}
	user, group := r.PathValue("user"), r.PathValue("group")
	ttl := -1
	if v := r.URL.Query().Get("ttl"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			badParam(w, "ttl", fmt.Sprintf("ttl=%q: want a whole number of seconds, 0 or more", v))
			return
		}
		ttl = int(n)
	}
	cmd := &backplane.Command{Op: backplane.CmdUserJoin, Kind: backplane.User, Name: user, Group: group}
	var evicted []string
	if ttl != 0 {
		d := time.Duration(ttl) * time.Second
		if ttl < 0 {
			d = 0 // without a TTL
		}
		var err error
		if evicted, err = h.fleet.cfg.UserGroups.AddUserToGroup(r.Context(), c.hub, user, group, d); err != nil {
			apiError(w, backplaneStatus(err), err.Error())
			return
		}
		if ttl > 0 {
			cmd.Expiry = time.Now().Add(d).UnixMilli()
		}
	}
	if err := h.command(r.Context(), c.hub, cmd); err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	for _, g := range evicted {
		if err := h.command(r.Context(), c.hub, &backplane.Command{Op: backplane.CmdUserLeave, Kind: backplane.User, Name: user, Group: g}); err != nil {
			apiError(w, backplaneStatus(err), err.Error())
			return
		}
	}
	w.WriteHeader(c.status(http.StatusOK, http.StatusAccepted))
}

// removeUserFromGroup ends a user's membership of a group and takes its
// connections out of it: 204 (v1 202).
func (h *Handler) removeUserFromGroup(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.requireHub(w) {
		return
	}
	user, group := r.PathValue("user"), r.PathValue("group")
	if err := h.fleet.cfg.UserGroups.RemoveUserFromGroup(r.Context(), c.hub, user, group); err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	if err := h.command(r.Context(), c.hub, &backplane.Command{Op: backplane.CmdUserLeave, Kind: backplane.User, Name: user, Group: group}); err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	w.WriteHeader(c.status(http.StatusNoContent, http.StatusAccepted))
}

// removeUserFromAllGroups ends every membership of a user and takes its
// connections out of every group: 204 (v1 200).
func (h *Handler) removeUserFromAllGroups(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.requireHub(w) {
		return
	}
	user := r.PathValue("user")
	if err := h.fleet.cfg.UserGroups.RemoveUserFromAllGroups(r.Context(), c.hub, user); err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	if err := h.command(r.Context(), c.hub, &backplane.Command{Op: backplane.CmdUserLeave, Kind: backplane.User, Name: user}); err != nil {
		apiError(w, backplaneStatus(err), err.Error())
		return
	}
	w.WriteHeader(c.status(http.StatusNoContent, http.StatusOK))
}

// userInGroup: 200 if the user is a member of the group now, else 404
// Info.User.NotInGroup.
func (h *Handler) userInGroup(w http.ResponseWriter, r *http.Request, c *call) {
	user, group := r.PathValue("user"), r.PathValue("group")
	in := false
	if c.hub != "" {
		var err error
		if in, err = h.fleet.cfg.UserGroups.IsUserInGroup(r.Context(), c.hub, user, group); err != nil {
			apiError(w, backplaneStatus(err), err.Error())
			return
		}
	}
	if !in {
		restError(w, http.StatusNotFound, codeUserNotInGroup, fmt.Sprintf("user %q is not in group %q", user, group))
		return
	}
	w.WriteHeader(http.StatusOK)
}
