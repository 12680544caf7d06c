package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Setting is one upstream setting, as Azure SignalR's: where to send a
// hub's events of a category, and for which. Settings are tried in
// order; the first whose patterns all match an event is used.
type Setting struct {
	// URLTemplate is the upstream URL; {hub}, {category} and {event} are
	// replaced by the event's (path-escaped).
	URLTemplate string
	// HubPattern, CategoryPattern, EventPattern: "*" (or empty) matches
	// anything, else a comma-separated list of names, compared
	// case-insensitively. Categories are "connections" and "messages";
	// events "connected" and "disconnected", or an invocation's target.
	HubPattern, CategoryPattern, EventPattern string
}

// Event categories and connection events, as Azure SignalR names them.
const (
	CategoryConnections = "connections"
	CategoryMessages    = "messages"
	EventConnected      = "connected"
	EventDisconnected   = "disconnected"
)

// ErrSetting: an upstream setting does not parse.
var ErrSetting = errors.New("webhook: bad upstream setting")

// ParseSetting reads a setting written as
//
//	URL[;hub=PATTERN][;category=PATTERN][;event=PATTERN]
//
// (the command line's --upstream), e.g.
// "https://app/api/{hub}/{category}/{event};hub=chat;category=messages".
func ParseSetting(s string) (Setting, error) {
	parts := strings.Split(s, ";")
	st := Setting{URLTemplate: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return st, fmt.Errorf("%w: %q: want key=pattern after the URL, got %q", ErrSetting, s, p)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "hub":
			st.HubPattern = strings.TrimSpace(v)
		case "category":
			st.CategoryPattern = strings.TrimSpace(v)
		case "event":
			st.EventPattern = strings.TrimSpace(v)
		default:
			return st, fmt.Errorf("%w: %q: unknown key %q (hub, category, event)", ErrSetting, s, k)
		}
	}
	return st, st.check()
}

func (s Setting) check() error {
	probe := strings.NewReplacer("{hub}", "h", "{category}", "c", "{event}", "e").Replace(s.URLTemplate)
	u, err := url.Parse(probe)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: URL template %q: want an absolute http(s) URL", ErrSetting, s.URLTemplate)
	}
	return nil
}

func matches(pattern, name string) bool {
	pattern = strings.TrimSpace(pattern)
	if pattern == "" || pattern == "*" {
		return true
	}
	for _, p := range strings.Split(pattern, ",") {
		if p = strings.TrimSpace(p); p == "*" || strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}

// Match reports whether the setting takes an event of hub, category and
// event.
func (s Setting) Match(hub, category, event string) bool {
	return matches(s.HubPattern, hub) && matches(s.CategoryPattern, category) && matches(s.EventPattern, event)
}

// URL is the setting's URL for an event.
func (s Setting) URL(hub, category, event string) string {
	return strings.NewReplacer(
		"{hub}", url.PathEscape(hub),
		"{category}", url.PathEscape(category),
		"{event}", url.PathEscape(event),
	).Replace(s.URLTemplate)
}

// label is the setting's name in metrics: its URL's scheme and host.
func (s Setting) label() string {
	u, err := url.Parse(strings.NewReplacer("{hub}", "h", "{category}", "c", "{event}", "e").Replace(s.URLTemplate))
	if err != nil {
		return "invalid"
	}
	return u.Scheme + "://" + u.Host
}
