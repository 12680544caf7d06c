package service_test

import (
	"sync/atomic"
	"testing"

	"github.com/edgeplane/edgeplane/internal/sdkfake"
)

// BenchmarkFleetEchoRoundTrip: the cost of the relay between nodes. Two
// nodes on one real Redis, the app's server connections on A only, 500
// clients on each node; a hub method's round trip (one call in flight)
// from a client on A (relayed locally) and from a client on B (relayed
// to A over Redis and back):
//
//	go test -run XXX -bench FleetEchoRoundTrip -benchtime 3000x ./service/
func BenchmarkFleetEchoRoundTrip(b *testing.B) {
	na, nb, _, base := startRelayFleet(b, sdkfake.Config{Hubs: []*sdkfake.Hub{echoHub()}})
	var got atomic.Int64
	onA, onB := benchConnectN(b, benchClients/2, base, na, &got), benchConnectN(b, benchClients/2, base, nb, &got)
	for _, tc := range []struct {
		name    string
		clients []*benchClient
	}{{"local", onA}, {"relayed", onB}} {
		b.Run(tc.name, func(b *testing.B) { benchEchoSerial(b, tc.clients) })
	}
}
