package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/edgeplane/edgeplane/internal/auth"
)

// checkToken enforces the access key, if one is configured: a bearer JWT
// (HS256 or HS512) signed with it, or with the secondary key, with exp,
// whose audience is this request's URL (a client's access token, whose
// audience is its hub, is refused). The audience is compared as leniently
// as the Management SDK needs: scheme, port, query and a trailing slash
// ignored, host and path case-insensitive (auth.Claims.CheckREST). It
// answers 401 itself and returns false when the request may not proceed.
func (h *Handler) checkToken(w http.ResponseWriter, r *http.Request) bool {
	key := h.cfg.AccessKey
	if key == "" {
		return true
	}
	tok := auth.FromRequest(r.Header.Get("Authorization"), "")
	if tok == "" {
		unauthorized(w, "missing bearer token")
		return false
	}
	now := time.Now()
	c, err := auth.Verify(tok, []byte(key), now)
	if errors.Is(err, auth.ErrSignature) && h.cfg.SecondaryAccessKey != "" {
		c, err = auth.Verify(tok, []byte(h.cfg.SecondaryAccessKey), now)
	}
	if err == nil {
		err = c.CheckREST(r.Host, r.URL.Path)
	}
	if err != nil {
		unauthorized(w, err.Error())
		return false
	}
	return true
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	restError(w, http.StatusUnauthorized, codeUnauthorized, msg)
}
