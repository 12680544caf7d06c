package bench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeplane/edgeplane/internal/sdkfake"
)

// Service mode under load (SystemSpec.Service): the node runs with
// --service-mode (Azure SignalR Service's Default mode), a fake ASP.NET
// Core app (internal/sdkfake, in the edgebench process, so its memory and
// CPU are not the node's) holds its 5 server connections to the node, and
// the load clients come the way the app's negotiate sends them: to
// /client/negotiate?hub=… and /client/?hub=… with the redirect's URL and
// access token. Every client is relayed to the app (OpenConnection, its
// handshake answered by the app) and joins the hub's fanout like any
// other. The node runs open (no --access-key), as the Redis-path systems
// do: the app signs its tokens all the same and the clients send them.
//
// Density compares such a system with its twin on the Redis path (the
// same poller and clients, /{hub}); fanout adds the path ViaApp, a
// broadcast from the app (Clients.All: BroadcastData with a payload per
// protocol), beside the REST send.

// ViaApp is the fanout path of a broadcast from the service-mode app
// (Clients.All), for SystemSpec.Service systems.
const ViaApp = "app"

// serviceAppKey is the fake app's access key: the node runs open and
// checks none, but the SDK always signs its tokens.
const serviceAppKey = "edgebench-service-mode-access-key-0123456789"

// ServiceRedirect is the app negotiate's answer the load clients follow:
// the node's /client/ URL and the access token.
type ServiceRedirect struct {
	URL         string `json:"url"`
	AccessToken string `json:"accessToken"`
}

// clientPath splits the redirect URL into its path (/client/) and its
// query string, to which negotiateVersion or id is appended.
func (r *ServiceRedirect) clientPath() (path, query string) {
	u, err := url.Parse(r.URL)
	if err != nil || u.Path == "" {
		return "/client/", ""
	}
	return u.Path, u.RawQuery
}

// negotiateRequest is the loader's negotiate: POST /{hub}/negotiate, or
// in service mode POST /client/negotiate?hub=…&… with the app's token.
func (c *LoaderConfig) negotiateRequest(host string) []byte {
	if c.Service == nil {
		return NegotiateRequest(host, c.hub())
	}
	path, q := c.Service.clientPath()
	if v, _ := url.ParseQuery(q); !v.Has("negotiateVersion") { // as @microsoft/signalr: the app may have forwarded it
		if q != "" {
			q += "&"
		}
		q += "negotiateVersion=1"
	}
	return []byte("POST " + path + "negotiate?" + q + " HTTP/1.1\r\nHost: " + host +
		"\r\nAuthorization: Bearer " + c.Service.AccessToken + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

// upgradeRequest is the loader's WebSocket upgrade: GET /{hub}?id=token,
// or in service mode GET /client/?hub=…&…&id=token with the app's token.
func (c *LoaderConfig) upgradeRequest(host, token string) []byte {
	if c.Service == nil {
		return UpgradeRequest(host, c.hub(), token)
	}
	path, q := c.Service.clientPath()
	if token != "" {
		if q != "" {
			q += "&"
		}
		q += "id=" + token
	}
	if q != "" {
		path += "?" + q
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: Bearer " + c.Service.AccessToken +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\n\r\n")
}

// serviceArgs are the node's arguments for spec.
func serviceArgs(spec SystemSpec) []string {
	if spec.Kind == KindEdgeplane && spec.Service {
		return []string{"--service-mode"}
	}
	return nil
}

// ServiceApp is the fake app server of a service-mode system: its server
// connections to the node and its negotiate's redirect.
type ServiceApp struct {
	app      *sdkfake.App
	hub      string
	Redirect ServiceRedirect
}

// StartServiceApp starts a fake app hosting hub on the node whose client
// port is listen (host:port, in service mode), waits for its 5 server
// connections and asks its negotiate for the redirect the load clients
// follow.
func StartServiceApp(ctx context.Context, listen, hub string) (*ServiceApp, error) {
	if hub == "" {
		hub = "chat"
	}
	app, err := sdkfake.Start(sdkfake.Config{Endpoint: "http://" + listen, AccessKey: serviceAppKey,
		ServerID: "edgebench-app", Hubs: []*sdkfake.Hub{{Name: hub}}, ClientInbox: 4,
		RetryDelay: func(int) time.Duration { return time.Second }})
	if err != nil {
		return nil, fmt.Errorf("bench: fake app: %w", err)
	}
	a := &ServiceApp{app: app, hub: hub}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := app.WaitConnected(wctx, 5); err != nil {
		app.Close()
		return nil, fmt.Errorf("bench: fake app: %w", err)
	}
	base, err := app.ListenNegotiate("127.0.0.1:0")
	if err != nil {
		app.Close()
		return nil, fmt.Errorf("bench: fake app negotiate: %w", err)
	}
	if a.Redirect, err = negotiateWithApp(ctx, base, hub); err != nil {
		app.Close()
		return nil, err
	}
	return a, nil
}

func negotiateWithApp(ctx context.Context, base, hub string) (ServiceRedirect, error) {
	var r ServiceRedirect
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+hub+"/negotiate?negotiateVersion=1", nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return r, fmt.Errorf("bench: the app's negotiate: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("bench: the app's negotiate: status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &r); err != nil || r.URL == "" || r.AccessToken == "" {
		return r, fmt.Errorf("bench: the app's negotiate answered %s (%v): no redirect", body, err)
	}
	return r, nil
}

// redirect is nil for a system without an app (the Redis path).
func (a *ServiceApp) redirect() *ServiceRedirect {
	if a == nil {
		return nil
	}
	r := a.Redirect
	return &r
}

// Broadcast sends target with the JSON array args to every client of the
// hub from the app (Clients.All): the app serializes it once per protocol.
func (a *ServiceApp) Broadcast(target, args string) error {
	if a == nil {
		return errors.New("bench: no service-mode app for this system")
	}
	var vals []json.RawMessage
	if err := json.Unmarshal([]byte(args), &vals); err != nil {
		return fmt.Errorf("bench: broadcast arguments: %w", err)
	}
	anys := make([]any, len(vals))
	for i, v := range vals {
		anys[i] = v
	}
	return a.app.Hub(a.hub).All().Send(target, anys...)
}

// Close stops the app (its server connections close; the node drops
// their clients).
func (a *ServiceApp) Close() {
	if a != nil {
		a.app.Close()
	}
}

// startServiceFor starts the app of a service-mode system on srv; nil
// for any other.
func startServiceFor(ctx context.Context, spec SystemSpec, srv *Server) (*ServiceApp, error) {
	if !spec.Service || spec.Kind != KindEdgeplane {
		return nil, nil
	}
	return StartServiceApp(ctx, srv.Listen, "chat")
}

// ServiceTwins returns, for each edgeplane system of specs, the system
// itself and its service-mode twin (name suffix -svc), for density side
// by side; the others as they are.
func ServiceTwins(specs []SystemSpec) []SystemSpec {
	var out []SystemSpec
	for _, s := range specs {
		out = append(out, s)
		if s.Kind == KindEdgeplane && !s.Service {
			t := s
			t.Service, t.Name = true, s.Name+"-svc"
			out = append(out, t)
		}
	}
	return out
}

// ServiceOnly returns the edgeplane systems of specs in service mode
// (name suffix -svc), the others as they are: fanout compares the app's
// broadcast with the REST send on the same node.
func ServiceOnly(specs []SystemSpec) []SystemSpec {
	out := make([]SystemSpec, 0, len(specs))
	for _, s := range specs {
		if s.Kind == KindEdgeplane && !s.Service {
			s.Service, s.Name = true, s.Name+"-svc"
		}
		out = append(out, s)
	}
	return out
}

// WriteServiceDensity prints each service-mode system beside its twin on
// the Redis path at every size: bytes per connection and their ratio
// (the issue asks for Default mode within 10% of the Redis path).
func WriteServiceDensity(w io.Writer, r *DensityReport) {
	twin := map[string]*DensitySystem{}
	for i := range r.Systems {
		s := &r.Systems[i]
		if s.Spec.Kind == KindEdgeplane && !s.Spec.Service {
			twin[s.Spec.Name] = s
		}
	}
	fmt.Fprintln(w, "\nService mode (Default mode, relayed to the app) beside the same clients on the Redis path")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tconns\topen\tB/conn\tRedis path B/conn\tratio\twithin 10%\theap+stack/conn\tRedis path\tkernel B/conn\t")
	for _, s := range r.Systems {
		if !s.Spec.Service {
			continue
		}
		t := twin[strings.TrimSuffix(s.Spec.Name, "-svc")]
		for _, p := range s.Points {
			ref, ratio, within, refHeap := "-", "-", "-", "-"
			if t != nil {
				for _, tp := range t.Points {
					if tp.Conns == p.Conns && tp.BytesPerConn > 0 && p.Open > 0 && tp.Open > 0 {
						ref, refHeap = fmt.Sprintf("%.0f", tp.BytesPerConn), fmt.Sprintf("%.0f", tp.HeapStackPer)
						ratio = fmt.Sprintf("%.2f", p.BytesPerConn/tp.BytesPerConn)
						within = "no"
						if p.BytesPerConn <= 1.1*tp.BytesPerConn {
							within = "yes"
						}
					}
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%.0f\t%s\t%.0f\t\n", s.Spec.Name, p.Conns, p.Open, p.BytesPerConn, ref, ratio, within,
				p.HeapStackPer, refHeap, p.KernelPerConn)
		}
	}
	tw.Flush()
}
