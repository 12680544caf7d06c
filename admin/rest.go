package admin

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode"

	"github.com/edgeplane/edgeplane/backplane"
)

// The REST API: Azure SignalR Service's data-plane API, every operation of
// its 2022-06-01 description, the 2023-07-01 and 2024-12-01 additions
// that make sense here, and the older v1 routes. Versions share handlers;
// the v1 routes differ in paths and in a few status codes.

// call is one REST request's resolved parameters.
type call struct {
	// hub is the Router's name of the hub the request names (the
	// application prefix applied, case folded); "" if no such hub.
	hub string
	// asked is the hub as the request named it (for messages).
	asked string
	v1    bool
}

// restHandler is a REST operation.
type restHandler func(w http.ResponseWriter, r *http.Request, c *call)

var (
	// hubPattern is the API's pattern for hub and application names.
	hubPattern = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.\\[\\]]{0,127}$")
	// apiVersionPattern: api-version is a date, optionally -preview.
	apiVersionPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)
)

// maxNameLen bounds group and user names (the API's 1024).
const maxNameLen = 1024

func (h *Handler) routes() {
	for _, p := range []string{"HEAD /api/health", "GET /api/health", "HEAD /api/v1/health", "GET /api/v1/health"} {
		h.mux.HandleFunc(p, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	}
	api := func(pattern string, fn restHandler) { h.mux.HandleFunc(pattern, h.rest(false, fn)) }
	v1 := func(pattern string, fn restHandler) { h.mux.HandleFunc(pattern, h.rest(true, fn)) }

	const hub = "/api/hubs/{hub}"
	api("POST "+hub+"/:send", h.send(backplane.All, ""))
	api("POST "+hub+"/groups/{group}/:send", h.send(backplane.Group, "group"))
	api("POST "+hub+"/users/{user}/:send", h.send(backplane.User, "user"))
	api("POST "+hub+"/connections/{connectionId}/:send", h.send(backplane.Connection, "connectionId"))
	api("POST "+hub+"/:closeConnections", h.closeMany(backplane.All, ""))
	api("POST "+hub+"/groups/{group}/:closeConnections", h.closeMany(backplane.Group, "group"))
	api("POST "+hub+"/users/{user}/:closeConnections", h.closeMany(backplane.User, "user"))
	api("DELETE "+hub+"/connections/{connectionId}", h.closeConn)
	api("HEAD "+hub+"/connections/{connectionId}", h.exists(backplane.Connection, "connectionId"))
	api("HEAD "+hub+"/groups/{group}", h.exists(backplane.Group, "group"))
	api("HEAD "+hub+"/users/{user}", h.exists(backplane.User, "user"))
	api("PUT "+hub+"/groups/{group}/connections/{connectionId}", h.group(backplane.GroupAdd))
	api("DELETE "+hub+"/groups/{group}/connections/{connectionId}", h.group(backplane.GroupRemove))
	api("DELETE "+hub+"/connections/{connectionId}/groups", h.leaveAll)
	api("GET "+hub+"/groups/{group}/connections", h.listGroup)
	api("PUT "+hub+"/users/{user}/groups/{group}", h.addUserToGroup)
	api("DELETE "+hub+"/users/{user}/groups/{group}", h.removeUserFromGroup)
	api("HEAD "+hub+"/users/{user}/groups/{group}", h.userInGroup)
	api("GET "+hub+"/users/{user}/groups/{group}", h.userInGroup) // the Management SDK's IsUserInGroup
	api("DELETE "+hub+"/users/{user}/groups", h.removeUserFromAllGroups)
	api("POST "+hub+"/:generateToken", h.generateToken)
	api("POST "+hub+"/connections/{connectionId}/:invoke", h.invoke) // rest_invoke.go
	api("POST "+hub+"/connections/{connectionId}/streams/{streamId}/:send", notImplemented(
		"stream items to a connection (2024-12-01) are not implemented yet"))
	api("POST "+hub+"/connections/{connectionId}/streams/{streamId}/:complete", notImplemented(
		"stream completion for a connection (2024-12-01) is not implemented yet"))
	api("POST "+hub+"/:execute", notImplemented(
		"transactions of commands (:execute, 2023-07-01) are not implemented"))

	const v1hub = "/api/v1/hubs/{hub}"
	v1("POST "+v1hub, h.send(backplane.All, ""))
	v1("POST "+v1hub+"/users/{user}", h.send(backplane.User, "user"))
	v1("POST "+v1hub+"/connections/{connectionId}", h.send(backplane.Connection, "connectionId"))
	v1("POST "+v1hub+"/groups/{group}", h.send(backplane.Group, "group"))
	for _, m := range []string{"GET ", "HEAD "} {
		v1(m+v1hub+"/connections/{connectionId}", h.exists(backplane.Connection, "connectionId"))
		v1(m+v1hub+"/groups/{group}", h.exists(backplane.Group, "group"))
		v1(m+v1hub+"/users/{user}", h.exists(backplane.User, "user"))
		v1(m+v1hub+"/groups/{group}/users/{user}", h.userInGroup)
	}
	v1("DELETE "+v1hub+"/connections/{connectionId}", h.closeConn)
	v1("PUT "+v1hub+"/groups/{group}/connections/{connectionId}", h.group(backplane.GroupAdd))
	v1("DELETE "+v1hub+"/groups/{group}/connections/{connectionId}", h.group(backplane.GroupRemove))
	v1("PUT "+v1hub+"/connections/{connectionId}/groups/{group}", h.group(backplane.GroupAdd))
	v1("DELETE "+v1hub+"/connections/{connectionId}/groups/{group}", h.group(backplane.GroupRemove))
	v1("PUT "+v1hub+"/groups/{group}/users/{user}", h.addUserToGroup)
	v1("DELETE "+v1hub+"/groups/{group}/users/{user}", h.removeUserFromGroup)
	v1("DELETE "+v1hub+"/users/{user}/groups", h.removeUserFromAllGroups)
}

// rest wraps a REST operation: the access key's token, api-version (the
// non-v1 routes; edgeplane serves every version's routes, so any version
// date is accepted, and one left out too), the application prefix, the
// hub name (resolved case-insensitively: the Management SDK lower-cases
// it), and the group's, user's and connection's path values.
func (h *Handler) rest(v1 bool, fn restHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.checkToken(w, r) {
			return
		}
		q := r.URL.Query()
		if v := q.Get("api-version"); !v1 && v != "" && !apiVersionPattern.MatchString(v) {
			badParam(w, "api-version", fmt.Sprintf("api-version=%q is not a version (YYYY-MM-DD, e.g. 2022-06-01)", v))
			return
		}
		c := &call{asked: r.PathValue("hub"), v1: v1}
		if app := q.Get("application"); app != "" {
			if !hubPattern.MatchString(app) {
				badParam(w, "application", fmt.Sprintf("application=%q: an application name starts with a letter and has only letters, digits and _`,.[] (at most 128)", app))
				return
			}
			c.asked = app + "_" + c.asked
		}
		c.hub = h.hubs[strings.ToLower(c.asked)]
		if c.hub == "" && !hubPattern.MatchString(r.PathValue("hub")) {
			badParam(w, "hub", fmt.Sprintf("hub %q: a hub name starts with a letter and has only letters, digits and _`,.[] (at most 128)", r.PathValue("hub")))
			return
		}
		if strings.Contains(r.Pattern, "{group}") {
			if g := r.PathValue("group"); len(g) > maxNameLen || strings.TrimFunc(g, unicode.IsSpace) == "" {
				badParam(w, "group", fmt.Sprintf("group %q: a group name has 1 to %d characters, not all of them white space", g, maxNameLen))
				return
			}
		}
		if u := r.PathValue("user"); len(u) > maxNameLen {
			badParam(w, "user", fmt.Sprintf("user id of %d bytes: at most %d", len(u), maxNameLen))
			return
		}
		fn(w, r, c)
	}
}

// requireHub answers 404 when the request names no hub of this node.
func (c *call) requireHub(w http.ResponseWriter) bool {
	if c.hub == "" {
		restError(w, http.StatusNotFound, codeHubNotExisted, fmt.Sprintf("hub %q is not served by this node (its hubs are configured with --hub)", c.asked))
		return false
	}
	return true
}

func badParam(w http.ResponseWriter, param, msg string) {
	w.Header().Set(headerErrorCode, codeInvalid)
	w.Header().Set("Content-Type", contentTypeJSONUTF8)
	w.WriteHeader(http.StatusBadRequest)
	writeJSON(w, errorDetail{Code: codeInvalid, Message: msg, Target: param})
}

func notImplemented(msg string) restHandler {
	return func(w http.ResponseWriter, _ *http.Request, _ *call) {
		restError(w, http.StatusNotImplemented, codeNotImplemented, msg)
	}
}

// status picks the status of a success: v1's where it differs.
func (c *call) status(current, v1 int) int {
	if c.v1 {
		return v1
	}
	return current
}

// excluded returns the excluded query values: repeated (excluded=a&
// excluded=b, as the API has it) or comma-separated.
func excluded(r *http.Request) []string {
	var out []string
	for _, ex := range r.URL.Query()["excluded"] {
		for _, id := range strings.Split(ex, ",") {
			if id != "" {
				out = append(out, id)
			}
		}
	}
	return out
}
