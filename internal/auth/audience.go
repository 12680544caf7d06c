package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrAudience: the token was issued for another audience. REST tokens
// carry the request URL, client access tokens the client endpoint with
// the hub (as Azure SignalR separates them), so a client's token cannot
// call the REST API and a REST token opens no client connection.
var ErrAudience = errors.New("jwt: token audience does not match")

// Audience is the aud claim: one string or an array of strings (RFC 7519
// section 4.1.3).
type Audience []string

// UnmarshalJSON accepts a string, an array of strings or null.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("aud: want a string or an array of strings: %w", err)
	}
	*a = many
	return nil
}

// CheckREST reports whether the token is a REST API token for a request
// to host (the Host header) and path (the decoded URL path): its audience
// must be that request's URL, as in Azure SignalR's data-plane REST API.
// The match is as lenient as Azure's Management SDK needs (it writes
// {scheme}://{host}/api/hubs/{hub}/…?api-version=…, without the port and
// with the hub lower-cased): scheme, port, query and a trailing slash are
// ignored, host and path compared case-insensitively.
func (c *Claims) CheckREST(host, path string) error {
	want := strings.TrimRight(path, "/")
	for _, aud := range c.Audience {
		u, ok := parseAudience(aud)
		if ok && sameHost(u.Host, host) && strings.EqualFold(strings.TrimRight(u.Path, "/"), want) {
			return nil
		}
	}
	return fmt.Errorf("%w: a REST token's aud must be the request URL, http(s)://%s%s; token has %s", ErrAudience, hostname(host), path, c.Audience.describe())
}

// CheckClient reports whether the token is a client access token for hub
// on host (the Host header of the client's request): its audience must be
// the client endpoint with the hub, edgeplane's {scheme}://{host}/{hub} or
// Azure SignalR's {scheme}://{host}/client/?hub={hub}. Scheme, port and a
// trailing slash are ignored, host and hub compared case-insensitively.
func (c *Claims) CheckClient(host, hub string) error {
	for _, aud := range c.Audience {
		u, ok := parseAudience(aud)
		if !ok || !sameHost(u.Host, host) {
			continue
		}
		p := strings.Trim(u.Path, "/")
		if strings.EqualFold(p, hub) || strings.EqualFold(p, "client") && strings.EqualFold(u.Query().Get("hub"), hub) {
			return nil
		}
	}
	return fmt.Errorf("%w: a client token's aud must be the hub's client endpoint, http(s)://%s/%s; token has %s", ErrAudience, hostname(host), hub, c.Audience.describe())
}

// CheckServer reports whether the token is an app server's token for
// hub's server connections on host: its audience must be Azure SignalR's
// {scheme}://{host}/server/?hub={hub}, as the SDK writes it (without the
// port, the hub lower-cased). Scheme, port and a trailing slash are
// ignored, host and hub compared case-insensitively. A client or REST
// token opens no server connection.
func (c *Claims) CheckServer(host, hub string) error {
	for _, aud := range c.Audience {
		u, ok := parseAudience(aud)
		if ok && sameHost(u.Host, host) && strings.EqualFold(strings.Trim(u.Path, "/"), "server") &&
			strings.EqualFold(u.Query().Get("hub"), hub) {
			return nil
		}
	}
	return fmt.Errorf("%w: a server token's aud must be http(s)://%s/server/?hub=%s; token has %s", ErrAudience, hostname(host), hub, c.Audience.describe())
}

func parseAudience(aud string) (*url.URL, bool) {
	u, err := url.Parse(aud)
	if err != nil || u.Host == "" {
		return nil, false
	}
	return u, true
}

// sameHost compares two host[:port] values by host name only.
func sameHost(a, b string) bool {
	ha := hostname(a)
	return ha != "" && ha == hostname(b)
}

// hostname is the lower-case host name of host[:port] (IPv6 without
// brackets), without a trailing dot.
func hostname(hostport string) string {
	return strings.TrimSuffix(strings.ToLower((&url.URL{Host: hostport}).Hostname()), ".")
}

func (a Audience) describe() string {
	switch len(a) {
	case 0:
		return "no aud"
	case 1:
		return fmt.Sprintf("aud %q", a[0])
	}
	return fmt.Sprintf("aud %q", []string(a))
}
