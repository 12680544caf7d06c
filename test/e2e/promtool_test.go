package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/edgeplane/edgeplane/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/redistest"
)

// The deployment artifacts in deploy/ checked against the real binary:
// promtool lints a live node's /metrics, every metric the Grafana dashboard
// and the alert rules use exists there, the alert rules pass their promtool
// unit tests, and the systemd unit, its environment file and the sysctl
// file agree with the binary's flags and the kernel. HAProxy, nginx and
// systemd-analyze checks are `make deploy-check` (deploy/deploy.mk).

// deployDir is the repository's deploy/ folder (tests run in test/e2e).
var deployDir = filepath.Join("..", "..", "deploy")

// promtoolTolerated lists promtool complaints that are not ours to fix.
// None today: admin writes a HELP line per family, and without TYPE
// metadata the library's own go_*/process_* names are not linted.
var promtoolTolerated = []struct {
	metric  *regexp.Regexp
	problem string
}{}

// deployPromtool finds promtool or fails saying how to get it.
func deployPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found in PATH: it comes with the Debian package `prometheus` " +
			"(apt-get install -y --no-install-recommends prometheus); `make test` installs it")
	}
	return p
}

// deployLiveNode starts redis-server and a node on it with an access key,
// and drives traffic so that every lazily created series exists: a REST
// send (backplane publish and receive, fanout), client negotiates with and
// without a token (http_requests, rejected{unauthorized}), a connected
// client that sends an invocation (messages_in, the Redis Stream upstream).
// It returns /metrics.
func deployLiveNode(t *testing.T) (*node, string) {
	t.Helper()
	const key = "deploy-access-key-0123456789-abcdef"
	rs := redistest.Start(t)
	n := startNode(t, testutil.Backends(t)[0], "--redis", rs.URL(), "--hub", "chat", "--access-key", key)
	testutil.WaitUntil(t, 10*time.Second, "backplane connected", func() bool {
		return n.metric("edgeplane_backplane_connected") == 1
	})
	r := n.connect(t, "/chat?access_token="+clientToken(t, key, n, "chat", map[string]any{"nameid": "alice"}))
	n.negotiate(t, "chat", clientToken(t, key, n, "chat", map[string]any{"nameid": "bob"}))
	if c := dialRaw(t, n.client).upgrade("/chat"); c != 401 {
		t.Fatalf("upgrade without a token: status %d, want 401", c)
	}
	if code, body := n.restAPI("POST", "/api/hubs/chat/:send", `{"target":"news","arguments":["hi"]}`, key); code != 202 {
		t.Fatalf("REST send: %d %s", code, body)
	}
	r.expectRecord(`"target":"news"`, 5*time.Second)
	r.sendText(`{"type":1,"target":"echo","arguments":[1]}` + "\x1e")
	testutil.WaitUntil(t, 5*time.Second, "messages in counted", func() bool {
		return n.metric("edgeplane_messages_in_total") >= 1
	})
	code, body := n.api("GET", "/metrics", "", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return n, body
}

// deploySampleNames returns the metric names of the samples in a Prometheus
// text exposition.
func deploySampleNames(exposition string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// promqlNonMetric are PromQL words and functions that look like names.
var promqlNonMetric = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "offset": true, "bool": true, "inf": true, "nan": true,
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlBrackets = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[0-9][0-9a-zA-Z.]*|[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	labelValuesRE  = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// deployMetricNames returns the metric names a PromQL expression (or a
// Grafana label_values() query) uses.
func deployMetricNames(expr string) []string {
	if m := labelValuesRE.FindStringSubmatch(expr); m != nil {
		return []string{m[1]}
	}
	s := promqlStrings.ReplaceAllString(expr, " ")
	s = promqlBrackets.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, id := range promqlIdent.FindAllString(s, -1) {
		if strings.HasSuffix(id, "(") || id[0] >= '0' && id[0] <= '9' { // a call, a number or duration
			continue
		}
		id = strings.TrimSpace(id)
		if !promqlNonMetric[strings.ToLower(id)] {
			out = append(out, id)
		}
	}
	return out
}

func TestDeployMetricNameExtraction(t *testing.T) {
	for expr, want := range map[string]string{
		`sum by (instance, hub) (edgeplane_connections{job="$job", instance=~"$instance"})`:                         "edgeplane_connections",
		`rate(a_total{x="y"}[$__rate_interval]) / on (instance) sum by (instance) (b offset 5m) > 0.1 unless c > 0`: "a_total b c",
		`label_values(edgeplane_fd_headroom{job="$job"}, instance)`:                                                 "edgeplane_fd_headroom",
		`up{job="edgeplane"} == 0 and bool 1`:                                                                       "up",
	} {
		if got := strings.Join(deployMetricNames(expr), " "); got != want {
			t.Errorf("deployMetricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestPromtoolOnLiveNode runs `promtool check metrics` on a real node's
// /metrics (Redis backplane, traffic) and checks that every metric the
// Grafana dashboard and the alert rules use is exposed.
func TestPromtoolOnLiveNode(t *testing.T) {
	promtool := deployPromtool(t)
	_, exposition := deployLiveNode(t)
	exposed := deploySampleNames(exposition)

	t.Run("check metrics", func(t *testing.T) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(exposition)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit) && exit.ExitCode() == 3: // lint problems only
		default:
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
		var tolerated, failed []string
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			metric, problem, _ := strings.Cut(line, " ")
			ok := false
			for _, tol := range promtoolTolerated {
				if tol.metric.MatchString(metric) && problem == tol.problem {
					ok = true
					break
				}
			}
			if ok {
				tolerated = append(tolerated, line)
			} else {
				failed = append(failed, line)
			}
		}
		t.Logf("promtool: %d tolerated complaints (VictoriaMetrics/metrics: no HELP text, its own go_*/process_* names)", len(tolerated))
		if len(failed) > 0 {
			t.Errorf("promtool check metrics complains about %d metrics:\n%s", len(failed), strings.Join(failed, "\n"))
		}
	})

	t.Run("dashboard metrics exist", func(t *testing.T) {
		used := deployDashboardExprs(t)
		if len(used) < 20 {
			t.Fatalf("only %d expressions found in the dashboard", len(used))
		}
		deployCheckExposed(t, "grafana-dashboard.json", used, exposed)
	})

	t.Run("alert metrics exist", func(t *testing.T) {
		deployCheckExposed(t, "alerts.yml", deployAlertExprs(t), exposed)
	})
}

// deployCheckExposed fails for every metric an expression uses that the
// node does not expose ("up" is Prometheus' own).
func deployCheckExposed(t *testing.T, file string, exprs map[string]string, exposed map[string]bool) {
	t.Helper()
	seen := map[string]bool{}
	for where, expr := range exprs {
		names := deployMetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %s: no metric in %q", file, where, expr)
		}
		for _, name := range names {
			seen[name] = true
			if !exposed[name] && name != "up" {
				t.Errorf("%s: %s uses %s, which the node does not expose", file, where, name)
			}
		}
	}
	t.Logf("%s: %d expressions use %d metrics", file, len(exprs), len(seen))
}

// grafanaDashboard is the part of a dashboard JSON the tests look at.
type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *grafanaDS      `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaDS struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource *grafanaDS `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource *grafanaDS `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// deployDashboardExprs parses the dashboard, checks its structure (a
// Prometheus datasource variable used by every panel and target, unique
// panel ids, panels inside the 24-column grid and not overlapping) and
// returns its expressions keyed by panel title and refId.
func deployDashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d: want both set and schemaVersion >= 36", d.UID, d.Title, d.SchemaVersion)
	}
	exprs := map[string]string{}
	var dsVar bool
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) == nil && q == "prometheus" && v.Name == "datasource" {
				dsVar = true
			}
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil || q.Query == "" {
				t.Errorf("variable %s: no query (%v)", v.Name, err)
			}
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s does not use the ${datasource} variable", v.Name)
			}
			exprs["variable "+v.Name] = q.Query
		}
	}
	if !dsVar {
		t.Errorf("no Prometheus datasource variable named datasource")
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
			}
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := taken[cell{x, y}]; ok {
						t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
						return
					}
					taken[cell{x, y}] = p.Title
				}
			}
			if p.Type != "row" {
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q does not use the ${datasource} variable", p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no queries", p.Title)
				}
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q query %s does not use the ${datasource} variable", p.Title, tg.RefID)
				}
				if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
					t.Errorf("panel %q query %s ignores the $instance variable: %s", p.Title, tg.RefID, tg.Expr)
				}
				exprs[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs
}

// deployAlertExprs reads the expr of every rule in alerts.yml. The file is
// YAML; promtool validates it, here a line scan suffices (expr: on one line
// or as a | block).
func deployAlertExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{}
	var alert string
	lines := strings.Split(string(raw), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if v, ok := strings.CutPrefix(line, "- alert:"); ok {
			alert = strings.TrimSpace(v)
			continue
		}
		v, ok := strings.CutPrefix(line, "expr:")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "|" || v == ">" { // a block: the lines indented deeper than expr:
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			var block []string
			for i+1 < len(lines) {
				next := lines[i+1]
				if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
					break
				}
				block = append(block, strings.TrimSpace(next))
				i++
			}
			v = strings.Join(block, " ")
		}
		exprs["alert "+alert] = v
	}
	if len(exprs) < 5 {
		t.Fatalf("only %d alert expressions found in alerts.yml", len(exprs))
	}
	return exprs
}

// TestAlertRules checks deploy/alerts.yml with promtool and runs its unit
// tests (deploy/alerts_test.yml: the alerts fire, and only, when they should).
func TestAlertRules(t *testing.T) {
	promtool := deployPromtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = deployDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// deployHelpDefaults runs `edgeplane --help` and returns each flag's
// default as printed ("" when it has none).
func deployHelpDefaults(t *testing.T) map[string]string {
	t.Helper()
	out, _ := exec.Command(binPath, "--help").CombinedOutput()
	flags := map[string]string{}
	var last string
	defRE := regexp.MustCompile(`\(default "?([^":)]*?)"?\)$`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := regexp.MustCompile(`^  -([a-z0-9-]+)`).FindStringSubmatch(line); m != nil {
			last = m[1]
			flags[last] = ""
			continue
		}
		if last != "" && strings.HasPrefix(line, "    \t") {
			if m := defRE.FindStringSubmatch(line); m != nil {
				flags[last] = m[1]
			}
		}
	}
	if len(flags) < 10 {
		t.Fatalf("cannot read flags from --help:\n%s", out)
	}
	return flags
}

// TestDeployEnvAndUnit checks the systemd unit and the environment file
// against the binary: every EDGEPLANE_ variable is a flag, every flag is
// documented, a commented-out default is the real default, and the unit
// stops the node later than its drain window ends.
func TestDeployEnvAndUnit(t *testing.T) {
	flags := deployHelpDefaults(t)
	raw, err := os.ReadFile(filepath.Join(deployDir, "edgeplane.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	varRE := regexp.MustCompile(`^EDGEPLANE_([A-Z0-9_]+)=(.*)$`)
	documented := map[string]bool{}
	for i, line := range strings.Split(string(raw), "\n") {
		// EDGEPLANE_X=v is set; #EDGEPLANE_X=v shows the default; "# e.g.
		// EDGEPLANE_X=v" is an example. Prose may mention variables freely.
		body, isDefault := line, false
		switch {
		case strings.HasPrefix(line, "# e.g. EDGEPLANE_"):
			body = strings.TrimPrefix(line, "# e.g. ")
		case strings.HasPrefix(line, "#EDGEPLANE_"):
			body, isDefault = line[1:], true
		}
		m := varRE.FindStringSubmatch(body)
		if m == nil {
			if strings.HasPrefix(body, "EDGEPLANE_") {
				t.Errorf("edgeplane.env.example:%d: not VAR=value: %q", i+1, line)
			}
			continue
		}
		flag := strings.ToLower(strings.ReplaceAll(m[1], "_", "-"))
		def, ok := flags[flag]
		if !ok {
			t.Errorf("edgeplane.env.example:%d: EDGEPLANE_%s is not a flag of edgeplane", i+1, m[1])
			continue
		}
		documented[flag] = true
		if isDefault && m[2] != "" {
			want := def
			if want == "" {
				want = "0"
			}
			if m[2] != want {
				t.Errorf("edgeplane.env.example:%d: #EDGEPLANE_%s=%s, but the default is %q", i+1, m[1], m[2], def)
			}
		}
	}
	for f := range flags {
		if !documented[f] {
			t.Errorf("flag --%s is not documented in deploy/edgeplane.env.example", f)
		}
	}

	unit := deployUnitKeys(t)
	want := map[string]string{
		"EnvironmentFile": "/etc/edgeplane/edgeplane.env",
		"KillSignal":      "SIGTERM",
		"Restart":         "on-failure",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
		"DynamicUser":     "yes",
	}
	for k, v := range want {
		if unit[k] != v {
			t.Errorf("edgeplane.service: %s=%q, want %q", k, unit[k], v)
		}
	}
	stop, err := time.ParseDuration(unit["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("edgeplane.service TimeoutStopSec=%q: %v", unit["TimeoutStopSec"], err)
	}
	drain, err := time.ParseDuration(flags["drain-window"])
	if err != nil {
		t.Fatalf("--drain-window default %q: %v", flags["drain-window"], err)
	}
	if stop < drain+15*time.Second {
		t.Errorf("TimeoutStopSec=%v leaves less than 15 s after the %v drain window: systemd would SIGKILL mid-drain", stop, drain)
	}
	nofile, err := strconv.Atoi(unit["LimitNOFILE"])
	if err != nil {
		t.Fatalf("LimitNOFILE=%q: %v", unit["LimitNOFILE"], err)
	}
	nrOpen, err := strconv.Atoi(deploySysctl(t)["fs.nr_open"].value)
	if err != nil || nofile > nrOpen {
		t.Errorf("LimitNOFILE=%d must not exceed fs.nr_open=%d (%v)", nofile, nrOpen, err)
	}
}

// deployUnitKeys reads the [Service] keys of the unit (last one wins).
func deployUnitKeys(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "edgeplane.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	section := ""
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Service]" || line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			keys[k] = v
		}
	}
	return keys
}

type deploySetting struct {
	value    string
	optional bool // "-key": failure to set is ignored
	line     int
}

// deploySysctl parses 99-edgeplane.conf: every setting has a comment line
// (its why) right above it and appears once.
func deploySysctl(t *testing.T) map[string]deploySetting {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(deployDir, "99-edgeplane.conf"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]deploySetting{}
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("99-edgeplane.conf:%d: not key = value: %q", i+1, line)
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		s := deploySetting{value: v, line: i + 1}
		if strings.HasPrefix(k, "-") {
			k, s.optional = k[1:], true
		}
		if _, dup := out[k]; dup {
			t.Errorf("99-edgeplane.conf:%d: %s set twice", i+1, k)
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "# ") {
			t.Errorf("99-edgeplane.conf:%d: %s has no comment line saying why above it", i+1, k)
		}
		out[k] = s
	}
	return out
}

// TestDeploySysctl checks that the sysctl file sets what a dense node
// needs and that every key is a real kernel parameter here.
func TestDeploySysctl(t *testing.T) {
	set := deploySysctl(t)
	for _, k := range []string{
		"fs.nr_open", "fs.file-max", "net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog",
		"net.ipv4.ip_local_port_range", "net.ipv4.tcp_mem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
		"net.core.netdev_max_backlog", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_tw_reuse",
	} {
		if _, ok := set[k]; !ok {
			t.Errorf("99-edgeplane.conf does not set %s", k)
		}
	}
	var keys []string
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := set[k]
		if s.optional {
			continue
		}
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if _, err := os.Stat(p); err != nil {
			t.Errorf("99-edgeplane.conf:%d: %s is not a kernel parameter here (%v)", s.line, k, err)
		}
		if len(strings.Fields(s.value)) == 0 {
			t.Errorf("99-edgeplane.conf:%d: %s has no value", s.line, k)
		}
	}
	// The buffer triples: min <= default <= max, small defaults for idle sockets.
	for _, k := range []string{"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_mem"} {
		f := strings.Fields(set[k].value)
		if len(f) != 3 {
			t.Errorf("%s = %q: want three numbers", k, set[k].value)
			continue
		}
		a, _ := strconv.Atoi(f[0])
		b, _ := strconv.Atoi(f[1])
		c, _ := strconv.Atoi(f[2])
		if a <= 0 || a > b || b > c {
			t.Errorf("%s = %q: want 0 < min <= default <= max", k, set[k].value)
		}
		if k != "net.ipv4.tcp_mem" && b > 64<<10 {
			t.Errorf("%s default %d: keep it small for mostly idle sockets", k, b)
		}
	}
}
