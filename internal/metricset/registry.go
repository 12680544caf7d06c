package metricset

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Writer writes samples that are computed at scrape time rather than kept
// in a Set (process_open_fds, say), with the help of each family it writes.
type Writer struct {
	Help  map[string]string
	Write func(w io.Writer)
}

// Registry is a node's metrics: the Sets its parts declared, scrape-time
// writers, and the Go runtime and process metrics.
type Registry struct {
	mu      sync.Mutex
	sets    []*Set
	writers []Writer
	// NoProcessMetrics leaves out the go_* and process_* metrics.
	NoProcessMetrics bool
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{} }

// Register adds sets; nil ones are skipped.
func (r *Registry) Register(sets ...*Set) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range sets {
		if s != nil {
			r.sets = append(r.sets, s)
		}
	}
}

// RegisterWriter adds a scrape-time writer.
func (r *Registry) RegisterWriter(w Writer) {
	r.mu.Lock()
	r.writers = append(r.writers, w)
	r.mu.Unlock()
}

// help finds a family's help text in the registered sets and writers.
func (r *Registry) help(family string) string {
	for _, s := range r.sets {
		if h := s.Help(family); h != "" {
			return h
		}
	}
	for _, w := range r.writers {
		if h := w.Help[family]; h != "" {
			return h
		}
	}
	if h := processHelp[family]; h != "" {
		return h
	}
	switch {
	case strings.HasPrefix(family, "go_"):
		return "Go runtime metric " + family + " (VictoriaMetrics/metrics)."
	case strings.HasPrefix(family, "process_"):
		return "Process metric " + family + " (VictoriaMetrics/metrics)."
	}
	return "edgeplane metric " + family + "."
}

// processHelp describes the runtime and process families operators use most.
var processHelp = map[string]string{
	"process_resident_memory_bytes": "Resident set size in bytes.",
	"process_cpu_seconds_total":     "CPU time used, user and system.",
	"go_goroutines":                 "Goroutines that currently exist.",
	"go_memstats_heap_inuse_bytes":  "Bytes in in-use heap spans.",
	"go_memstats_stack_inuse_bytes": "Bytes in stack spans.",
}

// WritePrometheus writes every registered metric in the Prometheus text
// format with a "# HELP" line per family.
func (r *Registry) WritePrometheus(w io.Writer) {
	var buf bytes.Buffer
	r.mu.Lock()
	for _, s := range r.sets {
		s.WritePrometheus(&buf)
	}
	for _, wr := range r.writers {
		wr.Write(&buf)
	}
	r.mu.Unlock()
	if !r.NoProcessMetrics {
		metrics.WriteProcessMetrics(&buf)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.withHelp(w, buf.Bytes())
}

// Family returns the metric family of a sample name or line: the name up
// to its labels or value.
func Family(line string) string {
	if i := strings.IndexAny(line, "{ "); i > 0 {
		return line[:i]
	}
	return line
}

// withHelp copies a text exposition from src to w, adding a "# HELP" line
// before the first sample of each family (and "# TYPE histogram" for
// histograms with le buckets, so _bucket, _sum and _count form one family).
// Lock should be held.
func (r *Registry) withHelp(w io.Writer, src []byte) {
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
		fam := Family(string(line))
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
			bw.WriteString("# HELP " + base + " " + r.help(base) + "\n")
			if typ != "" {
				bw.WriteString("# TYPE " + base + " " + typ + "\n")
			}
		}
		bw.Write(line)
		bw.WriteByte('\n')
	}
}
