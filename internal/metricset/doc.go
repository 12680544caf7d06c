// Package metricset is edgeplane's one metrics style. Each package declares
// its metrics, with their help text, on a Set of its own; the node
// registers every Set in one Registry; the admin port only writes the
// Registry.
//
//	// in a package:
//	m := metricset.New()
//	sent := m.Counter("edgeplane_backplane_published_total", "Messages published to Redis.")
//	closed := m.CounterVec("edgeplane_closed_total", "reason", "Client connections closed, by reason.")
//	closed("timeout").Inc()
//
//	// in the node:
//	reg := metricset.NewRegistry()
//	reg.Register(srv.Metrics(), bp.Metrics())
//
//	// in admin:
//	reg.WritePrometheus(w)
//
// The exposition has one "# HELP" line per family (and "# TYPE histogram"
// for Prometheus-style histograms), so `promtool check metrics` is clean.
// A Registry holds no global state: several nodes in one process (tests)
// each expose their own metrics.
package metricset
