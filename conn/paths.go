package conn

import (
	"fmt"
	"strings"

	"github.com/edgeplane/edgeplane/fanout"
)

// Hub paths on the client port, as ASP.NET Core's MapHub("/hubs/chat")
// maps them: a hub answers at its path (GET, the WebSocket) and at its
// path + "/negotiate" (POST), matched case-insensitively, a trailing slash
// ignored. A hub's path is Config.HubPaths[name], "/" + name by default;
// it may have several segments.

// hubPaths indexes the hubs by path and their paths by name.
type hubPaths struct {
	byPath map[string]string // lower-case path, no trailing slash → hub name
	byName map[string]string // hub name → path as configured, no trailing slash
}

// newHubPaths checks and indexes the hub paths of router's hubs.
func newHubPaths(router *fanout.Router, paths map[string]string) (hubPaths, error) {
	for name := range paths {
		if router.Hub(name) == nil {
			return hubPaths{}, fmt.Errorf("conn: a path is given for hub %q, which is not configured", name)
		}
	}
	hp := hubPaths{byPath: make(map[string]string), byName: make(map[string]string)}
	var err error
	router.Hubs(func(h *fanout.Hub) {
		p, ok := paths[h.Name()]
		if !ok {
			p = "/" + h.Name()
		}
		key := strings.ToLower(strings.TrimRight(p, "/"))
		switch {
		case err != nil:
		case !strings.HasPrefix(p, "/") || key == "" || strings.ContainsAny(p, "?#") || strings.Contains(p, "//"):
			err = fmt.Errorf("conn: hub %q: path %q must start with / and name at least one segment", h.Name(), p)
		case hp.byPath[key] != "":
			err = fmt.Errorf("conn: hubs %q and %q have the same path %q (paths match case-insensitively)", hp.byPath[key], h.Name(), p)
		default:
			hp.byPath[key] = h.Name()
			hp.byName[h.Name()] = strings.TrimRight(p, "/")
		}
	})
	return hp, err
}

// route finds the hub a request path names: the hub itself (negotiate
// false) or its negotiate endpoint. ok is false for any other path.
func (hp hubPaths) route(path string) (hub string, negotiate, ok bool) {
	key := strings.ToLower(strings.TrimRight(path, "/"))
	if name, found := hp.byPath[key]; found {
		return name, false, true
	}
	if base, found := strings.CutSuffix(key, "/negotiate"); found {
		if name, found := hp.byPath[base]; found {
			return name, true, true
		}
	}
	return "", false, false
}
