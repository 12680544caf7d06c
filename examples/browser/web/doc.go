// Package web is the server side of the browser example: it serves the
// page (static/index.html, static/app.js), the browser bundles of
// @microsoft/signalr and @microsoft/signalr-protocol-msgpack from an npm
// node_modules directory, and the few endpoints a page needs from its app
// server, because a page must never hold the access key:
//
//	GET  /config.json             {"hubUrl": …}: where the page connects
//	GET  /token?user=U            a client access token for the hub (text; empty when the node is open)
//	POST /join?group=G&connectionId=ID   adds the connection to group G through the REST API
//	POST /send  {"text","group"}  sends message(text) to everyone or to a group through the REST API
//
// Usage (examples/browser/main.go does this with flags):
//
//	http.ListenAndServe("127.0.0.1:5500", web.Handler(web.Config{
//		HubURL:      "http://127.0.0.1:8080/chat",
//		AdminURL:    "http://127.0.0.1:9090",
//		AccessKey:   os.Getenv("EDGEPLANE_ACCESS_KEY"),
//		NodeModules: "examples/browser/node_modules",
//	}))
//
// The node must allow the page's origin: --allowed-origins
// http://127.0.0.1:5500. test/e2e/browser_test.go serves this handler to
// headless chromium against a real node.
package web
