// Package auth verifies the HS256 and HS512 JSON Web Tokens edgeplane accepts, signed
// with the node's access key, and tells them apart by audience as Azure
// SignalR does:
//
//   - REST API tokens: aud is the request URL
//     (http://edge:9090/api/hubs/chat/:send; scheme, port, query and a
//     trailing slash are ignored, see Claims.CheckREST).
//   - Client access tokens: aud is the client endpoint with the hub
//     (http://edge/chat, or Azure's http://edge/client/?hub=chat; see
//     Claims.CheckClient). The nameid claim, else sub, is the user id.
//
// Every token must carry exp (ErrNoExpiry otherwise). CheckKey refuses keys
// shorter than MinKeyBytes and published placeholders.
//
//	c, err := auth.Verify(tok, key, time.Now())
//	if err == nil {
//		err = c.CheckClient(req.Host, "chat")
//	}
package auth
