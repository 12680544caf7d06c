package main

import "flag"

// Service mode (bench/service_linux.go): the node with --service-mode, a
// fake app server in this process holding its 5 server connections, and
// the clients following the app's negotiate redirect to /client/.

const (
	serviceDensityUsage = "also measure each edgeplane system in service mode (Azure SignalR Default mode: --service-mode, a fake app holding 5 server connections, clients through /client/?hub= with the app's token), beside the same clients on the Redis path"
	serviceFanoutUsage  = "run edgeplane in service mode (a fake app holding 5 server connections, clients through /client/?hub=): --via defaults to app,rest, the app's Clients.All beside the REST send on the same node"
)

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
