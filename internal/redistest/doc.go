// Package redistest runs real redis-server processes for tests: a single
// server on a free loopback port in a temporary directory, or a cluster of
// masters created with redis-cli --cluster create. Servers stop at test
// cleanup. redis-server and redis-cli must be installed (the Debian package
// redis-server; `make test` installs it); when they are missing the test
// fails, it is never skipped.
//
//	srv := redistest.Start(t)
//	bp, err := backplane.NewRedis(backplane.RedisConfig{URL: srv.URL()})
//	srv.Kill()    // SIGKILL, as a crash
//	srv.Restart() // same port, empty data
package redistest
