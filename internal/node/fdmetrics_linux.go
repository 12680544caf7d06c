package node

import (
	"io"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"

	"github.com/edgeplane/edgeplane/internal/metricset"
	"github.com/edgeplane/edgeplane/poller"
)

// registerFDMetrics adds the descriptor figures to reg.
func registerFDMetrics(reg *metricset.Registry) { reg.RegisterWriter(fdMetrics) }

// fdMetrics writes the descriptor figures at scrape time. They are not
// VictoriaMetrics' WriteFDMetrics: that reads /proc/self/fd as a string per
// descriptor, a megabyte of garbage per scrape at 19,000 connections;
// poller.CountOpenFDs counts without allocating per descriptor.
var fdMetrics = metricset.Writer{
	Help: map[string]string{
		"process_open_fds":      "Open file descriptors.",
		"process_max_fds":       "RLIMIT_NOFILE soft limit.",
		"edgeplane_fd_headroom": "RLIMIT_NOFILE minus open file descriptors.",
	},
	Write: func(w io.Writer) {
		open, limit := poller.CountOpenFDs(), fdLimit()
		if open >= 0 {
			metrics.WriteGaugeUint64(w, "process_open_fds", uint64(open))
		}
		if limit > 0 {
			metrics.WriteGaugeUint64(w, "process_max_fds", uint64(limit))
		}
		if open >= 0 && limit > 0 {
			metrics.WriteGaugeUint64(w, "edgeplane_fd_headroom", uint64(max(limit-int64(open), 0)))
		}
	},
}

func fdLimit() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return -1
	}
	return int64(rl.Cur)
}
