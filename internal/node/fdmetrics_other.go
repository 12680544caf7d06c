//go:build !linux

package node

import "github.com/edgeplane/edgeplane/internal/metricset"

// registerFDMetrics: descriptor counting needs Linux's /proc (see
// poller.CountOpenFDs); elsewhere /metrics has no descriptor figures.
func registerFDMetrics(*metricset.Registry) {}
