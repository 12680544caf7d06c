// Command mutate runs mutation testing (github.com/go-gremlins/gremlins)
// over a list of packages, one gremlins run per package, and writes a table
// of test efficacy and mutator coverage per package. `make mutate` runs it
// over MUTATE_PKGS and rewrites the generated section of docs/MUTATION.md;
// `make mutate-changed BASE=main` runs it over the packages of that list
// that a change touched.
//
//	go run ./tools/mutate -gremlins bin/gremlins-v0.6.0/gremlins -doc docs/MUTATION.md fanout poller
//	go run ./tools/mutate -gremlins … -changed-since main fanout poller …
//
// Each package is mutated on its own files only (its subdirectories are
// other packages, listed or not). The settings below narrow a package to
// the files in scope (the poller's backend-independent code, the
// backplane's group/ack logic) and to the tests that exercise them.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// settings narrow one package's run. A package with none (conn, fanout,
// ...) is mutated on all its files with all its tests.
type settings struct {
	// Only, if set, lists the files to mutate; the rest are excluded.
	Only []string
	// Exclude lists more file name patterns to leave out.
	Exclude []string
	// Run, if set, is the -run pattern of the tests run for each mutant
	// (and for the coverage that decides which mutants are covered).
	Run string
	// Skip, if set, is the -skip pattern: tests left out of every run
	// (slow ones whose behaviour a faster test also pins down).
	Skip string
	// Parallel, if set, is go test's -parallel: parallel tests that wait
	// on real time overlap instead of queueing two at a time.
	Parallel int
	// Timeout is gremlins' --timeout-coefficient (default 5): a mutant's
	// tests are given that many times the coverage run.
	Timeout int
	// Why says what the settings leave out, for the report.
	Why string
}

var pkgSettings = map[string]settings{
	"poller": {
		Exclude: []string{`^(epoll|netpoll)_`},
		Why:     "backend-independent code only (admission, acceptor, addresses, config); epoll_* and netpoll_* are excluded",
	},
	"conn": {
		// 500 mutants: the whole suite takes 25 s, mostly waiting on real
		// time (the wheel's seconds) with parallel tests queued two at a
		// time. These three wait longest and the same code is pinned to
		// the second by clock tests (TestHandshakeDeadline,
		// TestKeepAliveTicks) or by faster ones.
		Skip:     `^(TestUsedTokensSwept|TestAckCadence|TestResumeExpiry)$`,
		Parallel: 16,
		Why:      "all files; tests: all but TestUsedTokensSwept, TestAckCadence and TestResumeExpiry (real-time waits of seconds), parallel tests 16 at a time",
	},
	"backplane": {
		Only: []string{"redis_groups.go", "redis_subscriptions.go"},
		Run:  `^Test(RedisDelivery|RedisSubscribe.*|RedisGroup.*|RedisWireCompat|RedisDecodeErrors|RedisRestart|RedisCluster)$`,
		Why:  "group commands, acks and the subscription bookkeeping they wait on (redis_groups.go, redis_subscriptions.go); tests: the Redis delivery, subscription, group, wire, restart and cluster tests",
	},
}

// Thresholds every package must meet.
const (
	minEfficacy = 90.0
	minCoverage = 85.0
)

// result is what one package's run produced.
type result struct {
	Pkg       string
	Killed    int
	Lived     int
	TimedOut  int
	NotCover  int
	NotViable int
	LivedList []mutant
	Elapsed   time.Duration
	Err       error
}

type mutant struct {
	File, Type, Code string
	Line, Col        int
}

// Efficacy is killed / (killed + lived), as gremlins computes it.
func (r result) Efficacy() float64 {
	if r.Killed+r.Lived == 0 {
		return 0
	}
	return 100 * float64(r.Killed) / float64(r.Killed+r.Lived)
}

// Coverage is (killed + lived) / (killed + lived + not covered), as
// gremlins computes it (timed-out and not-viable mutants count in neither).
func (r result) Coverage() float64 {
	total := r.Killed + r.Lived + r.NotCover
	if total == 0 {
		return 0
	}
	return 100 * float64(r.Killed+r.Lived) / float64(total)
}

// OK reports whether r meets the thresholds.
func (r result) OK() bool {
	return r.Err == nil && r.Efficacy() >= minEfficacy && r.Coverage() >= minCoverage
}

// gremlinsOutput is the part of gremlins' -o JSON that is read.
type gremlinsOutput struct {
	Elapsed float64 `json:"elapsed_time"` // seconds
	Files   []struct {
		Name      string `json:"file_name"`
		Mutations []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		} `json:"mutations"`
	} `json:"files"`
}

// parseResult counts the statuses in gremlins' JSON for pkg; src reads a
// file of the package (for the code of lived mutants), nil for none.
func parseResult(pkg string, data []byte, src func(name string) ([]byte, error)) (result, error) {
	var out gremlinsOutput
	if err := json.Unmarshal(data, &out); err != nil {
		return result{Pkg: pkg}, fmt.Errorf("gremlins output: %w", err)
	}
	r := result{Pkg: pkg, Elapsed: time.Duration(out.Elapsed * float64(time.Second))}
	for _, f := range out.Files {
		var lines []string
		if src != nil {
			if b, err := src(f.Name); err == nil {
				lines = strings.Split(string(b), "\n")
			}
		}
		for _, m := range f.Mutations {
			switch m.Status {
			case "KILLED":
				r.Killed++
			case "LIVED":
				r.Lived++
				mu := mutant{File: f.Name, Type: m.Type, Line: m.Line, Col: m.Column}
				if m.Line >= 1 && m.Line <= len(lines) {
					mu.Code = strings.TrimSpace(lines[m.Line-1])
				}
				r.LivedList = append(r.LivedList, mu)
			case "TIMED OUT":
				r.TimedOut++
			case "NOT COVERED":
				r.NotCover++
			case "NOT VIABLE":
				r.NotViable++
			}
		}
	}
	slices.SortFunc(r.LivedList, func(a, b mutant) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return r, nil
}

// excludes returns gremlins' --exclude-files patterns for a package whose
// non-test Go files are files: subdirectories always, then the settings.
func excludes(s settings, files []string) []string {
	ex := []string{`/`} // a path with a slash is in a subdirectory: another package
	for _, f := range files {
		if len(s.Only) > 0 && !slices.Contains(s.Only, f) {
			ex = append(ex, "^"+regexp.QuoteMeta(f)+"$")
		}
	}
	return append(ex, s.Exclude...)
}

// changedPackages returns the packages of pkgs that contain a changed file
// (a path relative to the module root), in the order of pkgs. A file in a
// subdirectory belongs to the subdirectory's package, not to its parent.
func changedPackages(pkgs, changed []string) []string {
	var out []string
	for _, p := range pkgs {
		for _, f := range changed {
			if strings.HasSuffix(f, ".go") && filepath.Dir(f) == filepath.Clean(p) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// changedFiles lists the files changed on this branch since it left rev
// (committed, staged or not) and the untracked ones, relative to the
// repository root.
func changedFiles(rev string) ([]string, error) {
	base, err := exec.Command("git", "merge-base", rev, "HEAD").Output()
	if err != nil {
		return nil, fmt.Errorf("git merge-base %s HEAD: %w", rev, err)
	}
	diff, err := exec.Command("git", "diff", "--name-only", strings.TrimSpace(string(base))).Output()
	if err != nil {
		return nil, fmt.Errorf("git diff: %w", err)
	}
	untracked, err := exec.Command("git", "ls-files", "--others", "--exclude-standard").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	return append(strings.Fields(string(diff)), strings.Fields(string(untracked))...), nil
}

// table renders results as a Markdown table followed by the lived mutants.
func table(rs []result) string { return mergeTable("", rs) }

// mergeTable renders the table of old (a generated section, "" for none)
// with the rows and lived mutants of the packages in rs replaced by
// theirs (added at the end if new): running some packages keeps the
// others' last results.
func mergeTable(old string, rs []result) string {
	var order []string
	rows := map[string]string{}
	lived := map[string][]string{}
	for _, line := range strings.Split(old, "\n") {
		switch {
		case strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| package |"):
			pkg := strings.TrimSpace(strings.SplitN(line[2:], "|", 2)[0])
			if _, ok := rows[pkg]; !ok {
				order = append(order, pkg)
			}
			rows[pkg] = line
		case strings.HasPrefix(line, "- `"):
			path, _, _ := strings.Cut(line[3:], ":")
			pkg := filepath.Dir(path)
			lived[pkg] = append(lived[pkg], line)
		}
	}
	for _, r := range rs {
		if _, ok := rows[r.Pkg]; !ok {
			order = append(order, r.Pkg)
		}
		rows[r.Pkg] = r.row()
		lived[r.Pkg] = nil
		for _, m := range r.LivedList {
			lived[r.Pkg] = append(lived[r.Pkg], fmt.Sprintf("- `%s/%s:%d:%d` %s: `%s`", r.Pkg, m.File, m.Line, m.Col, m.Type, m.Code))
		}
	}
	var b strings.Builder
	b.WriteString("| package | killed | lived | timed out | not covered | not viable | efficacy | mutator coverage | time |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range order {
		b.WriteString(rows[p] + "\n")
	}
	var scope []string
	for _, p := range order {
		if s, ok := pkgSettings[p]; ok && s.Why != "" {
			scope = append(scope, fmt.Sprintf("- %s: %s.", p, s.Why))
		}
	}
	if len(scope) > 0 {
		b.WriteString("\nScope:\n\n" + strings.Join(scope, "\n") + "\n")
	}
	b.WriteString("\nLived mutants:\n\n")
	n := 0
	for _, p := range order {
		for _, l := range lived[p] {
			n++
			b.WriteString(l + "\n")
		}
	}
	if n == 0 {
		b.WriteString("- none\n")
	}
	return b.String()
}

// row is r's line of the table.
func (r result) row() string {
	if r.Err != nil {
		return fmt.Sprintf("| %s | run failed: %s |||||||||", r.Pkg, strings.ReplaceAll(r.Err.Error(), "|", "/"))
	}
	mark := ""
	if !r.OK() {
		mark = " ✗"
	}
	return fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %.1f%%%s | %.1f%%%s | %s |", r.Pkg, r.Killed, r.Lived, r.TimedOut,
		r.NotCover, r.NotViable, r.Efficacy(), mark, r.Coverage(), mark, r.Elapsed.Round(time.Second))
}

// section is the generated section of doc (between the markers).
func section(doc []byte) string {
	i := bytes.Index(doc, []byte(beginMark))
	j := bytes.Index(doc, []byte(endMark))
	if i < 0 || j < i {
		return ""
	}
	return string(doc[i+len(beginMark) : j])
}

// Markers around the generated section of the doc.
const (
	beginMark = "<!-- BEGIN mutate: generated by `make mutate`, do not edit -->"
	endMark   = "<!-- END mutate -->"
)

// replaceSection puts body between the markers of doc.
func replaceSection(doc []byte, body string) ([]byte, error) {
	i := bytes.Index(doc, []byte(beginMark))
	j := bytes.Index(doc, []byte(endMark))
	if i < 0 || j < i {
		return nil, errors.New("markers of the generated section not found")
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(beginMark)])
	out.WriteString("\n" + body)
	out.Write(doc[j:])
	return out.Bytes(), nil
}

// goFiles lists the non-test Go files directly in dir.
func goFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			out = append(out, n)
		}
	}
	return out, nil
}

// runPackage runs gremlins over one package and reads its JSON output.
func runPackage(gremlins, pkg, outDir string, workers int, log io.Writer) result {
	start := time.Now()
	s := pkgSettings[pkg]
	files, err := goFiles(pkg)
	if err != nil {
		return result{Pkg: pkg, Err: err}
	}
	jsonOut, err := filepath.Abs(jsonPath(outDir, pkg))
	if err != nil {
		return result{Pkg: pkg, Err: err}
	}
	_ = os.Remove(jsonOut)
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 5
	}
	args := []string{"unleash", "./" + pkg, "--output", jsonOut, "--timeout-coefficient", fmt.Sprint(timeout)}
	if workers > 0 {
		args = append(args, "--workers", fmt.Sprint(workers))
	}
	for _, e := range excludes(s, files) {
		args = append(args, "--exclude-files", e)
	}
	cmd := exec.Command(gremlins, args...)
	// -count=1: a cached coverage run would set a time-out too short for
	// the mutants. GOFLAGS reaches both the coverage run and every
	// mutant's go test (gremlins has no -run of its own).
	// -vet=off: a mutant is killed by a failing test, not by vet (and
	// vet is a tenth of each mutant's CPU).
	goflags := strings.TrimSpace(os.Getenv("GOFLAGS") + " -count=1 -vet=off")
	if s.Run != "" {
		goflags += " -run=" + s.Run
	}
	if s.Skip != "" {
		goflags += " -skip=" + s.Skip
	}
	if s.Parallel > 0 {
		goflags += fmt.Sprintf(" -parallel=%d", s.Parallel)
	}
	cmd.Env = append(os.Environ(), "GOFLAGS="+goflags)
	cmd.Stdout, cmd.Stderr = log, log
	fmt.Fprintf(log, "== %s: GOFLAGS=%q %s %s\n", pkg, goflags, gremlins, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return result{Pkg: pkg, Err: fmt.Errorf("gremlins: %w", err), Elapsed: time.Since(start)}
	}
	r := readResult(pkg, outDir)
	r.Elapsed = time.Since(start)
	return r
}

// jsonPath is where a package's gremlins output goes.
func jsonPath(outDir, pkg string) string {
	return filepath.Join(outDir, strings.ReplaceAll(pkg, "/", "_")+".json")
}

// readResult reads a package's gremlins output from outDir.
func readResult(pkg, outDir string) result {
	data, err := os.ReadFile(jsonPath(outDir, pkg))
	if err != nil {
		return result{Pkg: pkg, Err: err}
	}
	r, err := parseResult(pkg, data, func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(pkg, name)) })
	r.Err = err
	return r
}

func main() {
	gremlins := flag.String("gremlins", "gremlins", "the gremlins binary")
	doc := flag.String("doc", "", "rewrite the generated section of this Markdown file with the table")
	out := flag.String("out", "bin/mutate", "directory for gremlins' JSON output and the table (table.md)")
	since := flag.String("changed-since", "", "mutate only the listed packages with Go files changed since this git revision (git diff REV)")
	workers := flag.Int("workers", 0, "gremlins --workers (0: its default, the number of CPUs)")
	reportOnly := flag.Bool("report-only", false, "run nothing: make the table from the JSON that earlier runs left in -out (packages run one at a time, e.g. after fixing one)")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		fmt.Fprintln(os.Stderr, "mutate: no packages given")
		os.Exit(2)
	}
	if *since != "" {
		changed, err := changedFiles(*since)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mutate: %v\n", err)
			os.Exit(2)
		}
		pkgs = changedPackages(pkgs, changed)
		if len(pkgs) == 0 {
			fmt.Printf("mutate: no package of the list changed since %s\n", *since)
			return
		}
		fmt.Printf("mutate: packages changed since %s: %s\n", *since, strings.Join(pkgs, " "))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
	var rs []result
	for _, p := range pkgs {
		var r result
		if *reportOnly {
			r = readResult(p, *out)
		} else {
			r = runPackage(*gremlins, p, *out, *workers, os.Stdout)
		}
		rs = append(rs, r)
		fmt.Printf("== %s: killed %d, lived %d, timed out %d, not covered %d; efficacy %.1f%%, coverage %.1f%% (%v) %v\n",
			p, r.Killed, r.Lived, r.TimedOut, r.NotCover, r.Efficacy(), r.Coverage(), r.Elapsed.Round(time.Second), r.Err)
	}
	t := table(rs)
	fmt.Println("\n" + t)
	if err := os.WriteFile(filepath.Join(*out, "table.md"), []byte(t), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
	if *doc != "" {
		b, err := os.ReadFile(*doc)
		if err == nil {
			b, err = replaceSection(b, mergeTable(section(b), rs))
		}
		if err == nil {
			err = os.WriteFile(*doc, b, 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "mutate: %s: %v\n", *doc, err)
			os.Exit(2)
		}
		fmt.Printf("mutate: table written to %s\n", *doc)
	}
	for _, r := range rs {
		if !r.OK() {
			fmt.Fprintf(os.Stderr, "mutate: %s below the thresholds (efficacy ≥ %.0f%%, mutator coverage ≥ %.0f%%)\n", r.Pkg, minEfficacy, minCoverage)
			os.Exit(1)
		}
	}
}
