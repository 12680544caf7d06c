// Package testutil holds the helpers every package's tests share: polling
// for a condition with a deadline instead of sleeping, dialing loopback
// sockets that close with the test, the poller backend matrix, and a
// goroutine-leak check for TestMain.
//
//	func TestMain(m *testing.M) { testutil.Main(m) }
//
//	testutil.WaitUntil(t, 5*time.Second, "connection registered", func() bool {
//		return hub.Len() == 1
//	})
//
// It imports nothing of edgeplane's but the poller registry, so any
// package's tests may use it.
package testutil
