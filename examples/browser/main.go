// Command browser serves the browser example: a page with the browser
// bundle of @microsoft/signalr that connects to an edgeplane hub, shows
// what arrives, joins groups and sends through the REST API (this server
// holds the access key, the page never does) and reconnects with
// withAutomaticReconnect(). See README.md beside this file.
//
// Usage:
//
//	browser [--listen 127.0.0.1:5500] [--hub-url http://127.0.0.1:8080/chat]
//	        [--admin-url http://127.0.0.1:9090] [--node-modules examples/browser/node_modules]
//
// The access key comes from $EDGEPLANE_ACCESS_KEY (empty: an open node).
package main

import (
	"flag"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"

	"github.com/edgeplane/edgeplane/examples/browser/web"
)

func main() {
	cfg := web.Config{AccessKey: os.Getenv("EDGEPLANE_ACCESS_KEY")}
	listen := flag.String("listen", "127.0.0.1:5500", "address the page is served on (the node's --allowed-origins must name it)")
	flag.StringVar(&cfg.HubURL, "hub-url", "http://127.0.0.1:8080/chat", "the hub's URL as the browser reaches it")
	flag.StringVar(&cfg.AdminURL, "admin-url", "http://127.0.0.1:9090", "the node's admin address (REST API)")
	flag.StringVar(&cfg.NodeModules, "node-modules", "examples/browser/node_modules", "node_modules with @microsoft/signalr and @microsoft/signalr-protocol-msgpack (npm ci in examples/browser)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Logger = log
	if _, err := os.Stat(filepath.Join(cfg.NodeModules, "@microsoft", "signalr")); err != nil {
		log.Error("the @microsoft/signalr bundles are missing: run `make deps-browser` (npm ci in examples/browser)", "err", err)
		os.Exit(1)
	}
	log.Info("serving the browser example", "url", "http://"+*listen+"/", "hub", cfg.HubURL)
	if err := http.ListenAndServe(*listen, web.Handler(cfg)); err != nil {
		log.Error("browser example stopped", "err", err)
		os.Exit(1)
	}
}
