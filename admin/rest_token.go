package admin

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/edgeplane/edgeplane/internal/auth"
)

// maxTokenMinutes bounds minutesToExpire: a year.
const maxTokenMinutes = 365 * 24 * 60

// generateToken answers :generateToken (2023-07-01): a client access
// token for the hub, {"token": …}, as Azure SignalR's serverless SDKs
// hand to clients: aud {scheme}://{host}/client/?hub={hub} (the request's
// host; a node's clients connect to the same host, on the client port),
// nameid = userId when given, exp = now + minutesToExpire (default 60),
// signed with the access key. A node without an access key accepts any
// client and reads no token: the token is then signed with a key of this
// process only and carries the user id for show.
func (h *Handler) generateToken(w http.ResponseWriter, r *http.Request, c *call) {
	if !c.requireHub(w) {
		return
	}
	q := r.URL.Query()
	minutes, err := intParam(q, "minutesToExpire", 60, 1, maxTokenMinutes)
	if err != nil {
		badParam(w, "minutesToExpire", err.Error())
		return
	}
	now := time.Now()
	host := (&url.URL{Host: r.Host}).Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	claims := map[string]any{
		"aud": scheme(r) + "://" + host + "/client/?hub=" + url.QueryEscape(strings.ToLower(c.asked)),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Duration(minutes) * time.Minute).Unix(),
	}
	if u := q.Get("userId"); u != "" {
		claims["nameid"] = u
	}
	if roles := q["role"]; len(roles) > 0 {
		claims["role"] = roles
	}
	key := []byte(h.cfg.AccessKey)
	if len(key) == 0 {
		key = processKey()
	}
	tok, err := auth.Sign(claims, key)
	if err != nil {
		apiError(w, http.StatusInternalServerError, fmt.Sprintf("token: %v", err))
		return
	}
	w.Header().Set("Content-Type", contentTypeJSONUTF8)
	w.WriteHeader(http.StatusOK)
	writeJSON(w, struct {
		Token string `json:"token"`
	}{tok})
}

var processKey = sync.OnceValue(func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
})
