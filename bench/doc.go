// Package bench is the load generator and measurement library behind
// cmd/edgebench. It measures an edgeplane node side by side with a baseline
// server (goroutine-per-connection gorilla/websocket, see Baseline) started
// by the same invocation, so every figure comes with its ratio.
//
// The pieces:
//
//   - Loader (client.go) is an event-driven SignalR load client built on a
//     single epoll loop per process: it negotiates over HTTP, upgrades to
//     WebSocket with masked client frames, does the hub handshake (JSON,
//     or MessagePack for a fraction of the connections:
//     LoaderConfig.MessagePack, SystemSpec.MessagePack, edgebench
//     --msgpack 0,0.5 measures each edgeplane poller all-JSON and half
//     MessagePack in one run), answers pings and sends spread keep-alive
//     pings. It binds a source address per connection so a run can spread
//     over 127.0.0.2, 127.0.0.3, …
//   - The loader's HTTP transports (transport.go; LoaderConfig.Transport,
//     SystemSpec.Transport, edgebench --transport
//     websockets,sse,longpolling) run on the same loop: Long Polling as
//     one keep-alive socket per connection with a poll always out and no
//     pings, Server-Sent Events as the held stream plus a short-lived
//     socket per POST (handshake and pings; at most maxAux at once, taken
//     off a node's room by Fleet). Deliveries and latency are counted as
//     for WebSockets.
//   - Fleet (fleet.go) splits a load across child processes (edgebench
//     re-executes itself with a hidden subcommand, see RunChild) because the
//     per-process open-file limit is a hard 20000; children report JSON lines.
//   - Server (server.go) starts and watches one server process (edgeplane or
//     the baseline) and reads its RSS, CPU time and /metrics.
//   - Floor (floor.go) is the kernel's floor: the same job with system calls
//     only (raw write/writev loops, the keep-alive calls). It runs as one
//     more system in density and fanout, whose tables give every figure
//     "× floor", and alone in RunFloor.
//   - PlaceEvenly (plan.go) spreads a load over nodes within each node's
//     descriptor room; every report carries a ConnectSummary, and a run
//     that opened fewer connections than requested is ErrShort.
//   - RunDensity, RunFanout, RunStorm, RunFloor and RunScale are the
//     experiments; each returns a report that renders as a table, JSON, and
//     an SVG chart (svg.go).
//
// Usage from Go:
//
//	rep, err := bench.RunDensity(ctx, bench.DensityConfig{
//		Sizes:    []int{1000, 5000},
//		Systems:  []bench.SystemSpec{{Name: "baseline", Kind: bench.KindBaseline}},
//		Self:     os.Args[0],
//	})
package bench
