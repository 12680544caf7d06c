package web

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Config says where the node is and how to reach its REST API.
type Config struct {
	// HubURL is the hub's URL as the browser reaches it (the node's client
	// address or the balancer in front of it), e.g.
	// http://127.0.0.1:8080/chat. Required.
	HubURL string
	// AdminURL is the base of the node's REST API (its admin address),
	// e.g. http://127.0.0.1:9090. Required.
	AdminURL string
	// Hub is the hub name in REST paths. Default: the last path segment
	// of HubURL.
	Hub string
	// AccessKey signs the page's client tokens and the REST calls (the
	// node's --access-key). Empty: the node is open, no tokens.
	AccessKey string
	// NodeModules is the npm node_modules directory that holds
	// @microsoft/signalr and @microsoft/signalr-protocol-msgpack. Required.
	NodeModules string
	// TokenTTL is how long a client token is valid. Default 1 h.
	TokenTTL time.Duration
	// Client calls the REST API. Default: a client with a 10 s timeout.
	Client *http.Client
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// bundles maps the page's /lib/ files to their place under NodeModules.
var bundles = map[string]string{
	"signalr.js":                      "@microsoft/signalr/dist/browser/signalr.js",
	"signalr.js.map":                  "@microsoft/signalr/dist/browser/signalr.js.map",
	"signalr-protocol-msgpack.js":     "@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.js",
	"signalr-protocol-msgpack.js.map": "@microsoft/signalr-protocol-msgpack/dist/browser/signalr-protocol-msgpack.js.map",
}

type server struct {
	cfg Config
	log *slog.Logger
}

// Handler serves the page and its endpoints.
func Handler(cfg Config) http.Handler {
	if cfg.Hub == "" {
		if u, err := url.Parse(cfg.HubURL); err == nil {
			cfg.Hub = u.Path[strings.LastIndex(u.Path, "/")+1:]
		}
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{cfg: cfg, log: cfg.Logger}
	sub, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /lib/{file}", s.lib)
	mux.HandleFunc("GET /config.json", s.config)
	mux.HandleFunc("GET /token", s.token)
	mux.HandleFunc("POST /join", s.join)
	mux.HandleFunc("POST /send", s.send)
	return mux
}

func (s *server) lib(w http.ResponseWriter, r *http.Request) {
	rel, ok := bundles[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeFile(w, r, filepath.Join(s.cfg.NodeModules, filepath.FromSlash(rel)))
}

func (s *server) config(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"hubUrl": s.cfg.HubURL})
}

// token issues a client token for the hub: audience the hub's URL, user id
// in nameid. A real app authenticates the user first (its session cookie)
// and takes the user id from there, not from the query.
func (s *server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.cfg.AccessKey == "" {
		return
	}
	claims := map[string]any{"aud": s.cfg.HubURL, "exp": time.Now().Add(s.cfg.TokenTTL).Unix()}
	if u := r.URL.Query().Get("user"); u != "" {
		claims["nameid"] = u
	}
	io.WriteString(w, s.sign(claims))
}

// join adds a connection to a group. A real app checks that the caller
// owns the connection and may join the group.
func (s *server) join(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	group, id := q.Get("group"), q.Get("connectionId")
	if group == "" || id == "" {
		http.Error(w, "group and connectionId are required", http.StatusBadRequest)
		return
	}
	s.rest(w, http.MethodPut, "/groups/"+url.PathEscape(group)+"/connections/"+url.PathEscape(id), nil)
}

// send sends message(text) to everyone, or to a group.
func (s *server) send(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Text  string `json:"text"`
		Group string `json:"group"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	path := "/:send"
	if in.Group != "" {
		path = "/groups/" + url.PathEscape(in.Group) + "/:send"
	}
	body, _ := json.Marshal(map[string]any{"target": "message", "arguments": []string{in.Text}})
	s.rest(w, http.MethodPost, path, body)
}

// rest calls the hub's REST API at path and answers with its status.
func (s *server) rest(w http.ResponseWriter, method, path string, body []byte) {
	u := strings.TrimRight(s.cfg.AdminURL, "/") + "/api/hubs/" + url.PathEscape(s.cfg.Hub) + path
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if s.cfg.AccessKey != "" {
		// A REST token's audience is the request's URL.
		req.Header.Set("Authorization", "Bearer "+s.sign(map[string]any{"aud": u, "exp": time.Now().Add(time.Minute).Unix()}))
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		s.log.Warn("REST call failed", "method", method, "url", u, "err", err)
		http.Error(w, "REST API: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode >= 300 {
		s.log.Warn("REST call refused", "method", method, "url", u, "status", resp.StatusCode, "body", string(msg))
		http.Error(w, fmt.Sprintf("REST API: %s %s", resp.Status, msg), resp.StatusCode)
		return
	}
	w.WriteHeader(resp.StatusCode)
}

var b64 = base64.RawURLEncoding

// sign makes an HS256 JWT signed with the access key (any JWT library
// does the same).
func (s *server) sign(claims map[string]any) string {
	payload, _ := json.Marshal(claims)
	t := b64.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64.EncodeToString(payload)
	m := hmac.New(sha256.New, []byte(s.cfg.AccessKey))
	m.Write([]byte(t))
	return t + "." + b64.EncodeToString(m.Sum(nil))
}
