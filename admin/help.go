package admin

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// help describes edgeplane's own metric families. VictoriaMetrics/metrics
// writes no HELP lines; withHelp adds one per family so the exposition is
// self-describing (and `promtool check metrics` is clean).
var help = map[string]string{
	"edgeplane_accepted_total":                "Client connections admitted by the poller.",
	"edgeplane_rejected_total":                "Connections or requests turned away, by reason.",
	"edgeplane_closed_total":                  "Client connections closed, by reason.",
	"edgeplane_connections":                   "Registered (handshake done) client connections, by hub.",
	"edgeplane_queue_bytes":                   "Outbound bytes queued but not yet written, all connections.",
	"edgeplane_fd_headroom":                   "RLIMIT_NOFILE minus open file descriptors.",
	"edgeplane_messages_in_total":             "SignalR records received from clients.",
	"edgeplane_messages_out_total":            "(message, recipient) deliveries queued.",
	"edgeplane_bytes_out_total":               "Frame bytes queued to recipients.",
	"edgeplane_fanout_messages_total":         "Messages delivered to this node's local recipients.",
	"edgeplane_fanout_duration_seconds":       "Time to queue one message to all its local recipients.",
	"edgeplane_control_frames_out_total":      "Frames the connection layer sent itself (handshake, pings, completions).",
	"edgeplane_control_bytes_out_total":       "Bytes of frames the connection layer sent itself.",
	"edgeplane_invocations_dropped_total":     "Client invocations with nowhere to go (no upstream or upstream refused).",
	"edgeplane_upstream_errors_total":         "Upstream events the upstream refused.",
	"edgeplane_http_requests_total":           "Client-port HTTP answers, by route and status code.",
	"process_open_fds":                        "Open file descriptors.",
	"process_max_fds":                         "RLIMIT_NOFILE soft limit.",
	"process_resident_memory_bytes":           "Resident set size in bytes.",
	"process_cpu_seconds_total":               "CPU time used, user and system.",
	"go_goroutines":                           "Goroutines that currently exist.",
	"go_memstats_heap_inuse_bytes":            "Bytes in in-use heap spans.",
	"go_memstats_stack_inuse_bytes":           "Bytes in stack spans.",
	"edgeplane_backplane_connected":           "1 while the Redis backplane is connected.",
	"edgeplane_backplane_decode_errors_total": "Backplane messages that failed to decode (dropped).",
}

// familyOf returns the metric family of a sample line.
func familyOf(line string) string {
	if i := strings.IndexAny(line, "{ "); i > 0 {
		return line[:i]
	}
	return line
}

// withHelp copies a Prometheus text exposition from src to w, adding a
// "# HELP" line before the first sample of each family (and "# TYPE
// histogram" for histograms with le buckets, so _bucket, _sum and _count
// form one family).
func withHelp(w io.Writer, src []byte) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	seen := make(map[string]bool)
	histograms := make(map[string]bool) // Prometheus-style (le) histograms seen
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			src = nil
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			bw.Write(line)
			bw.WriteByte('\n')
			continue
		}
		fam := familyOf(string(line))
		base, typ := fam, ""
		if b, ok := strings.CutSuffix(fam, "_bucket"); ok && bytes.Contains(line, []byte(`le="`)) {
			base, typ = b, "histogram"
			histograms[b] = true
		}
		for _, suf := range []string{"_sum", "_count"} {
			if b, ok := strings.CutSuffix(fam, suf); ok && histograms[b] {
				base = b
			}
		}
		if !seen[base] {
			seen[base] = true
			text := help[base]
			if text == "" {
				text = helpFallback(base)
			}
			bw.WriteString("# HELP " + base + " " + text + "\n")
			if typ != "" {
				bw.WriteString("# TYPE " + base + " " + typ + "\n")
			}
		}
		bw.Write(line)
		bw.WriteByte('\n')
	}
}

func helpFallback(name string) string {
	switch {
	case strings.HasPrefix(name, "go_"):
		return "Go runtime metric " + name + " (VictoriaMetrics/metrics)."
	case strings.HasPrefix(name, "process_"):
		return "Process metric " + name + " (VictoriaMetrics/metrics)."
	case strings.HasPrefix(name, "edgeplane_backplane_"):
		return "Redis backplane metric " + name + "; see backplane/doc.go."
	}
	return "edgeplane metric " + name + "."
}
