// Package auth verifies the JSON Web Tokens edgeplane accepts, HS256 or
// HS512 (as the Azure SignalR SDK signs them) with the node's access key,
// and tells them apart by audience as Azure SignalR does:
//
//   - REST API tokens: aud is the request URL
//     (http://edge:9090/api/hubs/chat/:send; scheme, port, query and a
//     trailing slash are ignored, see Claims.CheckREST).
//   - Client access tokens: aud is the client endpoint with the hub
//     (http://edge/chat, or Azure's http://edge/client/?hub=chat; see
//     Claims.CheckClient). The asrs.s.uid claim (tokens from the Azure
//     SignalR SDK's negotiate), else nameid, else sub, is the user id.
//   - App server tokens (service mode): aud is Azure's
//     http://edge/server/?hub=chat (Claims.CheckServer); nameid is the
//     server's id.
//
// Every token must carry exp (ErrNoExpiry otherwise). CheckKey refuses keys
// shorter than MinKeyBytes and published placeholders.
//
//	c, err := auth.Verify(tok, key, time.Now())
//	if err == nil {
//		err = c.CheckClient(req.Host, "chat")
//	}
package auth
