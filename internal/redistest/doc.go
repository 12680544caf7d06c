// Package redistest runs real redis-server processes for tests: a single
// server on a free loopback port in a temporary directory, or a cluster of
// masters (with replicas if asked) created with redis-cli --cluster create.
// Servers stop at test cleanup. redis-server and redis-cli must be
// installed (the Debian package redis-server; `make test` installs it);
// when they are missing the test fails, it is never skipped.
//
//	srv := redistest.Start(t)
//	bp, err := backplane.NewRedis(backplane.RedisConfig{URL: srv.URL()})
//	srv.Kill()    // SIGKILL, as a crash
//	srv.Restart() // same port, empty data
//
// Clusters for fault scenarios: 3 masters with a replica each, a node
// timeout of 2 s, replicas that sync at once and may always take over.
//
//	cl := redistest.StartClusterReplicas(t, 3, 1)
//	m := cl.MasterOf(t, cl.Slot(t, "chat:all"))
//	cl.Failover(t, cl.ReplicaOf(t, m)) // CLUSTER FAILOVER, waits until stable
//	m.Kill(); cl.WaitMaster(t, replica, 20*time.Second)
//	cl.MoveSlot(t, slot, otherMaster)   // resharding of an empty slot
//
// Network faults between a client and a server are internal/faultproxy's.
package redistest
