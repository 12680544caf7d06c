package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/edgeplane/edgeplane/internal/auth"
)

// runToken is `edgeplane token`: it prints an HS256 token signed with the
// access key, for curl against the REST API or /debug/pprof/ (aud: the
// request URL) or for a test client (aud: the hub's URL).
func runToken(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("edgeplane token", flag.ContinueOnError)
	var (
		key  string
		aud  string
		user string
		ttl  time.Duration
	)
	fs.StringVar(&key, "access-key", os.Getenv("EDGEPLANE_ACCESS_KEY"), "the node's access key (default $EDGEPLANE_ACCESS_KEY)")
	fs.StringVar(&aud, "url", "", "the token's audience: the REST request's URL (http://node:9090/api/hubs/chat/:send, http://node:9090/debug/pprof/heap) or a hub's client URL (https://edge.example.com/chat)")
	fs.StringVar(&user, "user", "", "nameid claim: the user id of a client token (optional)")
	fs.DurationVar(&ttl, "ttl", time.Hour, "lifetime (exp)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: edgeplane token --url URL [--user ID] [--ttl 1h]\n\nPrints a token signed with the access key. REST API and /debug/pprof/\ntokens take the request's URL as --url, client tokens the hub's URL:\n\n  curl -H \"Authorization: Bearer $(edgeplane token --url http://node:9090/debug/pprof/heap)\" \\\n       http://node:9090/debug/pprof/heap > heap.pb.gz\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if err := auth.CheckKey(key); err != nil {
		fmt.Fprintln(os.Stderr, "edgeplane token: --access-key:", err)
		return 2
	}
	if u, err := url.Parse(aud); err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "edgeplane token: --url %q: want an absolute URL (the request's, or the hub's)\n", aud)
		return 2
	}
	if ttl <= 0 {
		fmt.Fprintln(os.Stderr, "edgeplane token: --ttl must be positive")
		return 2
	}
	now := time.Now()
	claims := map[string]any{"aud": aud, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if user != "" {
		claims["nameid"] = user
	}
	tok, err := auth.Sign(claims, []byte(key))
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgeplane token:", err)
		return 1
	}
	fmt.Fprintln(out, tok)
	return 0
}
