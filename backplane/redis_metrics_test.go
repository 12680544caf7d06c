package backplane

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/edgeplane/edgeplane/backplane/wire"
	"github.com/edgeplane/edgeplane/internal/metricset"
)

// backplaneFamilies are the metric families of a Redis backplane, by the
// names deploy/ (alerts, dashboard) and the docs use: they must not change.
var backplaneFamilies = []string{
	"edgeplane_backplane_received_total",
	"edgeplane_backplane_decode_errors_total",
	"edgeplane_backplane_unrouted_total",
	"edgeplane_backplane_subscriptions",
	"edgeplane_backplane_subscribe_commands_total",
	"edgeplane_backplane_published_total",
	"edgeplane_backplane_publish_duration_seconds",
	"edgeplane_backplane_lost_total",
	"edgeplane_backplane_connected",
	"edgeplane_backplane_disconnects_total",
	"edgeplane_backplane_reconnects_total",
	"edgeplane_backplane_down_seconds_total",
	"edgeplane_backplane_gaps_total",
	"edgeplane_backplane_gap_seconds_total",
	"edgeplane_backplane_subscription_connections",
	"edgeplane_backplane_group_commands_total",
	"edgeplane_backplane_ack_timeouts_total",
	"edgeplane_backplane_acks_dropped_total",
	"edgeplane_backplane_fleet_commands_total",
	"edgeplane_backplane_fleet_reply_timeouts_total",
	"edgeplane_backplane_upstream_sent_total",
	"edgeplane_backplane_upstream_dropped_total",
	"edgeplane_backplane_upstream_errors_total",
	"edgeplane_backplane_upstream_unconfirmed_total",
}

// TestRedisMetricsExposition: a new backplane exposes every family, each
// with its own help, and every received_total kind, before anything is
// counted.
func TestRedisMetricsExposition(t *testing.T) {
	bp, err := NewRedis(RedisConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	reg := metricset.NewRegistry()
	reg.NoProcessMetrics = true
	reg.Register(bp.Metrics())
	var out bytes.Buffer
	reg.WritePrometheus(&out)
	got := out.String()

	families := map[string]bool{}
	for line := range strings.Lines(got) {
		if h, ok := strings.CutPrefix(line, "# HELP "); ok {
			fam, text, _ := strings.Cut(strings.TrimSpace(h), " ")
			families[fam] = true
			if text == "" || strings.HasPrefix(text, "edgeplane metric ") {
				t.Errorf("%s has no help of its own: %q", fam, text)
			}
		}
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range backplaneFamilies {
		if !families[fam] {
			t.Errorf("family %s missing from the exposition", fam)
		}
		if short := strings.TrimPrefix(fam, "edgeplane_backplane_"); !bytes.Contains(doc, []byte("//\t"+short+" ")) && !bytes.Contains(doc, []byte("//\t"+short+"{")) {
			t.Errorf("doc.go's metrics list lacks %s", short)
		}
		delete(families, fam)
	}
	for fam := range families {
		t.Errorf("unexpected family %s (add it to backplaneFamilies and doc.go)", fam)
	}
	for _, kind := range []string{"all", "group", "user", "connection", "group_command", "ack", "fleet_command"} {
		if s := `edgeplane_backplane_received_total{kind="` + kind + `"} 0`; !strings.Contains(got, s+"\n") {
			t.Errorf("exposition lacks %s:\n%s", s, got)
		}
	}
	for _, reason := range []string{reasonConnection, reasonNoPong, reasonSlotMoved, reasonNotSubscribed, reasonErrorReply} {
		if s := `edgeplane_backplane_gaps_total{reason="` + reason + `"} 0`; !strings.Contains(got, s+"\n") {
			t.Errorf("exposition lacks %s:\n%s", s, got)
		}
	}
	if !strings.Contains(got, "# TYPE edgeplane_backplane_publish_duration_seconds histogram\n") {
		t.Errorf("publish_duration_seconds is not a Prometheus histogram:\n%s", got)
	}
}

// TestRedisMetricsPerInstance: two backplanes in one process count apart.
func TestRedisMetricsPerInstance(t *testing.T) {
	a, err := NewRedis(RedisConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewRedis(RedisConfig{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Metrics() == b.Metrics() {
		t.Fatal("two backplanes share one metrics Set")
	}
	a.decodeError("chat:all", wire.ErrMalformed)
	if got, other := metric(t, a, "edgeplane_backplane_decode_errors_total"), metric(t, b, "edgeplane_backplane_decode_errors_total"); got != 1 || other != 0 {
		t.Errorf("decode errors: counted on a = %v (want 1), on b = %v (want 0)", got, other)
	}
}

func TestMemoryHasNoMetrics(t *testing.T) {
	var bp any = NewMemory()
	m, ok := bp.(interface{ Metrics() *metricset.Set })
	if !ok {
		t.Fatal("Memory does not implement Metrics()")
	}
	if s := m.Metrics(); s != nil {
		t.Errorf("Memory.Metrics() = %v, want nil (nothing to count)", s)
	}
}
