package serviceproto

// Ping contents (RuntimeServicePingMessage in the SDK): a Ping's strings
// are key/value pairs. An empty Ping is a keep-alive.
const (
	// PingStatus: app server asks "do you route clients to me?" every
	// 10 s ("status","1"); the service answers ("status","1"|"0"),
	// optionally with "clientcount", "servercount", "capacity".
	PingStatus      = "status"
	PingClientCount = "clientcount"
	PingServerCount = "servercount"
	PingCapacity    = "capacity"
	// PingEcho: service's latency probe; the SDK writes the same Ping
	// back.
	PingEcho = "echo"
	// PingTarget: service asks the app server to open an OnDemand
	// connection to the named instance (rebalance).
	PingTarget = "target"
	// PingOffline: a service instance went away; the SDK drops the
	// clients whose Asrs-Instance-Id header names it.
	PingOffline = "offline"
	// PingShutdown: graceful shutdown; the app server sends a Fin value,
	// the service answers ShutdownFinAck.
	PingShutdown = "shutdown"
	// PingServers: server list (the classic ASP.NET SDK only).
	PingServers = "servers"
	// PingDiagnosticMessaging ("d-m"): "1" turns the SDK's message
	// tracing logs on, "0" off.
	PingDiagnosticMessaging = "d-m"
	// PingClientsInHub and PingClientsOnConnection: the ASP.NET Core
	// SDK's keep-alive carries its client counts under these keys.
	PingClientsInHub        = "#clientInHub"
	PingClientsOnConnection = "#client"
)

// Values of PingShutdown.
const (
	ShutdownFin          = "fin:0" // drop clients
	ShutdownFinMigrate   = "fin:1" // migrate clients
	ShutdownFinKeepAlive = "fin:2" // keep clients until they close
	ShutdownFinAck       = "finack"
)

// Get returns the value after the first key equal to key, as the SDK's
// TryGetValue reads pings (pairs: key at even positions).
func (m *Ping) Get(key string) (string, bool) {
	for i := 0; i+1 < len(m.Messages); i += 2 {
		if m.Messages[i] == key {
			return m.Messages[i+1], true
		}
	}
	return "", false
}
