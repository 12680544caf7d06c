package metricset

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// Set is one package's metrics and the help text of each family.
type Set struct {
	vm   *metrics.Set
	mu   sync.Mutex
	help map[string]string // family → help text
}

// New returns an empty Set.
func New() *Set { return &Set{vm: metrics.NewSet(), help: make(map[string]string)} }

// describe records the help text of name's family; the first text wins.
func (s *Set) describe(name, help string) {
	fam := Family(name)
	s.mu.Lock()
	if _, ok := s.help[fam]; !ok {
		s.help[fam] = help
	}
	s.mu.Unlock()
}

// Counter declares a counter. name may carry labels (`x_total{k="v"}`).
func (s *Set) Counter(name, help string) *metrics.Counter {
	s.describe(name, help)
	return s.vm.NewCounter(name)
}

// FloatCounter declares a float counter.
func (s *Set) FloatCounter(name, help string) *metrics.FloatCounter {
	s.describe(name, help)
	return s.vm.NewFloatCounter(name)
}

// Gauge declares a gauge; f, if not nil, computes it at scrape time.
func (s *Set) Gauge(name, help string, f func() float64) *metrics.Gauge {
	s.describe(name, help)
	return s.vm.NewGauge(name, f)
}

// Histogram declares a Prometheus-style histogram (le buckets).
func (s *Set) Histogram(name, help string) *metrics.PrometheusHistogram {
	s.describe(name, help)
	return s.vm.NewPrometheusHistogram(name)
}

// CounterVec declares a counter family with one label; the returned
// function gives the counter for a label value, creating it on first use.
func (s *Set) CounterVec(family, label, help string) func(value string) *metrics.Counter {
	s.describe(family, help)
	return func(value string) *metrics.Counter {
		return s.vm.GetOrCreateCounter(fmt.Sprintf(`%s{%s=%q}`, family, label, value))
	}
}

// Counters declares a counter family with several labels; the returned
// function takes one value per label, in order, and gives the counter,
// creating it on first use.
func (s *Set) Counters(family, help string, labels ...string) func(values ...string) *metrics.Counter {
	s.describe(family, help)
	return func(values ...string) *metrics.Counter {
		var b strings.Builder
		b.WriteString(family)
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			v := ""
			if i < len(values) {
				v = values[i]
			}
			b.WriteString(l)
			b.WriteByte('=')
			b.WriteString(strconv.Quote(v))
		}
		b.WriteByte('}')
		return s.vm.GetOrCreateCounter(b.String())
	}
}

// Help returns the help text declared for a family ("" if none).
func (s *Set) Help(family string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.help[family]
}

// WritePrometheus writes the Set's samples (without help lines).
func (s *Set) WritePrometheus(w io.Writer) { s.vm.WritePrometheus(w) }
