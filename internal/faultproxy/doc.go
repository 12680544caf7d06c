// Package faultproxy is a loopback TCP proxy for fault-injection tests. It
// sits between a client (an edgeplane node) and a server (Redis) and can,
// at any moment:
//
//   - pass traffic (the default);
//
//   - blackhole it: every connection stops forwarding in both directions
//     while its sockets stay open (no FIN, no RST), as a partition, a dead
//     route or a frozen middlebox looks to both ends; new connections are
//     accepted and held the same way. Heal resumes forwarding, held bytes
//     included;
//
//   - reset it: every open connection gets an RST on both sides;
//
//   - drop the clients: every open connection's client side gets an RST
//     while its server side stays open and silent (half-open to the
//     server);
//
//   - fail over: new connections go to another server while those open
//     now stay as they are (blackholed ones stay half-open), as when a
//     VIP, a DNS name or a proxy moves to a new Redis without resetting
//     the old connections.
//
//     p := faultproxy.Start(t, redisA.Addr())
//     node := startNode("--redis", "redis://"+p.Addr())
//     p.Blackhole()                // half-open: nothing flows, nothing closes
//     p.Failover(redisB.Addr())    // new connections reach B; old ones stay stuck
//     p.Heal()                     // or: everything flows again
//     p.Reset()                    // RST every open connection
//
// StartRoundRobin spreads new connections over several servers in turn,
// as a round-robin balancer in front of a fleet does.
//
// It runs anywhere (no privileges, no network namespaces) and holds two
// goroutines per open connection. Everything stops at test cleanup.
package faultproxy
