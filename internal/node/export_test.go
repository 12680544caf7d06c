package node

import "time"

// SetTokenKeyInterval shortens the token-key check for a test and returns
// what restores it.
func SetTokenKeyInterval(d time.Duration) (restore func()) {
	old := tokenKeyInterval
	tokenKeyInterval = d
	return func() { tokenKeyInterval = old }
}
