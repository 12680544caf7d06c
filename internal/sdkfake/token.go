package sdkfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// Tokens as the SDK signs them (AuthUtility, SignalRJwtSecurityTokenHandler,
// ServiceEndpointProvider): HMAC keyed with the access key's UTF-8 bytes
// (not base64-decoded), HS256 or HS512; header {"alg","kid","typ"}; the
// payload's claims with .NET claim types shortened by the outbound map
// (NameIdentifier → "nameid"), a type that occurs more than once as an
// array, then nbf, exp, iat and aud.

// tokenLifetime is AccessTokenLifetime's default.
const tokenLifetime = time.Hour

// signToken signs claims for audience.
func (a *App) signToken(audience string, claims []serviceproto.Claim, now time.Time) string {
	alg := a.cfg.Algorithm
	hdr, _ := json.Marshal(map[string]string{"alg": alg, "kid": a.kid, "typ": "JWT"})
	// Claims keep their order; a repeated type becomes an array.
	var order []string
	values := map[string][]string{}
	for _, c := range claims {
		t := serviceproto.ShortClaimType(c.Type)
		if _, ok := values[t]; !ok {
			order = append(order, t)
		}
		values[t] = append(values[t], c.Value)
	}
	var b strings.Builder
	b.WriteByte('{')
	for _, t := range order {
		k, _ := json.Marshal(t)
		b.Write(k)
		b.WriteByte(':')
		var v []byte
		if vs := values[t]; len(vs) == 1 {
			v, _ = json.Marshal(vs[0])
		} else {
			v, _ = json.Marshal(vs)
		}
		b.Write(v)
		b.WriteByte(',')
	}
	n := now.Unix()
	aud, _ := json.Marshal(audience)
	b.WriteString(`"nbf":` + strconv.FormatInt(n, 10) + `,"exp":` + strconv.FormatInt(now.Add(tokenLifetime).Unix(), 10) +
		`,"iat":` + strconv.FormatInt(n, 10) + `,"aud":` + string(aud) + `}`)
	enc := base64.RawURLEncoding
	msg := enc.EncodeToString(hdr) + "." + enc.EncodeToString([]byte(b.String()))
	var h func() hash.Hash = sha256.New
	if alg == "HS512" {
		h = sha512.New
	}
	m := hmac.New(h, []byte(a.cfg.AccessKey))
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

// audience is the SDK's audience for path ("server" or "client") and a
// hub: {scheme}://{host}/{path}/?hub={hub}, without the port
// (ServiceEndpoint.AudienceBaseUrl).
func (a *App) audience(path, hub string) string {
	return a.endpoint.Scheme + "://" + a.endpoint.Hostname() + "/" + path + "/?hub=" + hub
}

// serverURL is a server connection's URL: the endpoint's
// /server/?hub={hub}&cid={guid}, ws or wss (DefaultServiceEndpointGenerator,
// ConnectionFactory.GetServiceUrl).
func (a *App) serverURL(hub, cid string) string {
	u := *a.endpoint
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/server/"
	u.RawQuery = "hub=" + hub + "&cid=" + url.QueryEscape(cid)
	return u.String()
}

// clientURL is where the app's negotiate redirects a client
// (GetClientEndpoint + NegotiateHandler.GetQueryString).
func (a *App) clientURL(hub, originalPath, query, requestID string) string {
	base := strings.TrimSuffix(a.endpoint.String(), "/") + "/client/?hub=" + hub
	if originalPath != "" {
		base += "&asrs.op=" + url.QueryEscape(originalPath)
	}
	q := "asrs_request_id=" + url.QueryEscape(requestID)
	if query != "" {
		q = query + "&" + q
	}
	return base + "&" + q
}

// newGUID is a random GUID in .NET's "D" format.
func newGUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
