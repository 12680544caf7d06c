package metricset

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestRegistryWritesHelpOncePerFamily(t *testing.T) {
	s := New()
	s.Counter(`edgeplane_x_total`, "Xs seen.").Add(3)
	vec := s.CounterVec("edgeplane_closed_total", "reason", "Closed, by reason.")
	vec("timeout").Inc()
	vec("slow_client").Add(2)
	s.Counters("edgeplane_http_requests_total", "Answers.", "route", "code")("connect", "101").Inc()
	s.Histogram("edgeplane_took_seconds", "Time taken.").Update(0.01)
	s.Gauge("edgeplane_g", "A gauge.", func() float64 { return 7 })

	r := NewRegistry()
	r.NoProcessMetrics = true
	r.Register(s, nil)
	r.RegisterWriter(Writer{
		Help:  map[string]string{"process_open_fds": "Open file descriptors."},
		Write: func(w io.Writer) { io.WriteString(w, "process_open_fds 12\n") },
	})
	var out bytes.Buffer
	r.WritePrometheus(&out)
	got := out.String()

	for _, want := range []string{
		"# HELP edgeplane_x_total Xs seen.\nedgeplane_x_total 3\n",
		"# HELP edgeplane_closed_total Closed, by reason.\n",
		`edgeplane_closed_total{reason="timeout"} 1`,
		`edgeplane_closed_total{reason="slow_client"} 2`,
		"# HELP edgeplane_took_seconds Time taken.\n# TYPE edgeplane_took_seconds histogram\n",
		"edgeplane_took_seconds_count 1",
		`edgeplane_http_requests_total{route="connect",code="101"} 1`,
		"# HELP edgeplane_g A gauge.\nedgeplane_g 7\n",
		"# HELP process_open_fds Open file descriptors.\nprocess_open_fds 12\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("exposition lacks %q:\n%s", want, got)
		}
	}
	for _, fam := range []string{"edgeplane_closed_total", "edgeplane_took_seconds"} {
		if n := strings.Count(got, "# HELP "+fam+" "); n != 1 {
			t.Errorf("%d HELP lines for %s, want 1", n, fam)
		}
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	a, b := New(), New()
	a.Counter("edgeplane_same_total", "Same.").Inc()
	b.Counter("edgeplane_same_total", "Same.").Add(5)
	ra, rb := NewRegistry(), NewRegistry()
	ra.NoProcessMetrics, rb.NoProcessMetrics = true, true
	ra.Register(a)
	rb.Register(b)
	var oa, ob bytes.Buffer
	ra.WritePrometheus(&oa)
	rb.WritePrometheus(&ob)
	if !strings.Contains(oa.String(), "edgeplane_same_total 1\n") || !strings.Contains(ob.String(), "edgeplane_same_total 5\n") {
		t.Fatalf("registries mixed their sets:\n%s\n--\n%s", oa.String(), ob.String())
	}
}

func TestProcessMetricsHaveHelp(t *testing.T) {
	r := NewRegistry()
	var out bytes.Buffer
	r.WritePrometheus(&out)
	lines := strings.Split(out.String(), "\n")
	help := map[string]bool{}
	for _, l := range lines {
		if f, ok := strings.CutPrefix(l, "# HELP "); ok {
			help[Family(f)] = true
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		fam := Family(l)
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(fam, suf); ok && help[b] {
				fam = b
			}
		}
		if !help[fam] {
			t.Fatalf("sample %q has no HELP line before it", l)
		}
	}
	if !help["go_goroutines"] {
		t.Fatalf("no go_goroutines in the exposition:\n%s", out.String())
	}
}
