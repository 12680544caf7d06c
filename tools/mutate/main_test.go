package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestParseResult(t *testing.T) {
	data := []byte(`{"elapsed_time":2.5,"files":[{"file_name":"a.go","mutations":[
		{"type":"CONDITIONALS_BOUNDARY","status":"LIVED","line":3,"column":7},
		{"type":"ARITHMETIC_BASE","status":"KILLED","line":1,"column":1},
		{"type":"ARITHMETIC_BASE","status":"KILLED","line":2,"column":1},
		{"type":"CONDITIONALS_NEGATION","status":"TIMED OUT","line":2,"column":4},
		{"type":"INVERT_NEGATIVES","status":"NOT COVERED","line":2,"column":9},
		{"type":"INVERT_NEGATIVES","status":"NOT VIABLE","line":2,"column":9},
		{"type":"CONDITIONALS_NEGATION","status":"LIVED","line":1,"column":2}]}]}`)
	src := func(name string) ([]byte, error) { return []byte("one\n  two\n\tif a < b {\n"), nil }
	r, err := parseResult("p", data, src)
	if err != nil {
		t.Fatal(err)
	}
	if r.Killed != 2 || r.Lived != 2 || r.TimedOut != 1 || r.NotCover != 1 || r.NotViable != 1 {
		t.Fatalf("counts %+v", r)
	}
	if e, c := r.Efficacy(), r.Coverage(); e != 50 || c != 80 {
		t.Fatalf("efficacy %v, coverage %v; want 50, 80", e, c)
	}
	want := []mutant{{File: "a.go", Type: "CONDITIONALS_NEGATION", Code: "one", Line: 1, Col: 2},
		{File: "a.go", Type: "CONDITIONALS_BOUNDARY", Code: "if a < b {", Line: 3, Col: 7}}
	if !slices.Equal(r.LivedList, want) {
		t.Fatalf("lived %+v, want %+v", r.LivedList, want)
	}
	if r.Elapsed != 2500*time.Millisecond {
		t.Fatalf("elapsed %v, want 2.5s", r.Elapsed)
	}
	if r.OK() {
		t.Fatal("50% efficacy passes the thresholds")
	}
	if _, err := parseResult("p", []byte("not json"), nil); err == nil {
		t.Fatal("bad JSON parsed")
	}
}

func TestThresholds(t *testing.T) {
	for _, tc := range []struct {
		r  result
		ok bool
	}{
		{result{Killed: 9, Lived: 1, NotCover: 1}, true},      // 90%, 90.9%
		{result{Killed: 89, Lived: 11}, false},                // 89%
		{result{Killed: 17, NotCover: 3}, true},               // 100%, 85%
		{result{Killed: 16, NotCover: 3, TimedOut: 9}, false}, // 84.2% coverage
		{result{}, false},
	} {
		if got := tc.r.OK(); got != tc.ok {
			t.Errorf("%+v: OK = %v (efficacy %.1f, coverage %.1f)", tc.r, got, tc.r.Efficacy(), tc.r.Coverage())
		}
	}
}

func TestExcludes(t *testing.T) {
	got := excludes(settings{Only: []string{"b.go"}, Exclude: []string{"^x_"}}, []string{"a.go", "b.go", "c.d.go"})
	want := []string{"/", `^a\.go$`, `^c\.d\.go$`, "^x_"}
	if !slices.Equal(got, want) {
		t.Fatalf("excludes = %q, want %q", got, want)
	}
	if got := excludes(settings{}, []string{"a.go"}); !slices.Equal(got, []string{"/"}) {
		t.Fatalf("no settings: %q", got)
	}
}

func TestChangedPackages(t *testing.T) {
	pkgs := []string{"fanout", "backplane", "backplane/wire", "internal/auth"}
	changed := []string{"backplane/wire/wire.go", "internal/auth/jwt_test.go", "fanout/README.md", "docs/x.go"}
	if got, want := changedPackages(pkgs, changed), []string{"backplane/wire", "internal/auth"}; !slices.Equal(got, want) {
		t.Fatalf("changed packages %q, want %q", got, want)
	}
}

func TestTableAndSection(t *testing.T) {
	rs := []result{
		{Pkg: "backplane", Killed: 9, Lived: 1, LivedList: []mutant{{File: "a.go", Type: "T", Code: "x < y", Line: 4, Col: 2}}},
		{Pkg: "fanout", Killed: 1, Lived: 1},
	}
	tb := table(rs)
	for _, want := range []string{"| backplane | 9 | 1 | 0 | 0 | 0 | 90.0% | 100.0% |", "| fanout | 1 | 1 | 0 | 0 | 0 | 50.0% ✗ |",
		"- backplane: group commands", "- `backplane/a.go:4:2` T: `x < y`"} {
		if !strings.Contains(tb, want) {
			t.Errorf("table lacks %q:\n%s", want, tb)
		}
	}
	doc := "head\n" + beginMark + "\nold\n" + endMark + "\ntail\n"
	out, err := replaceSection([]byte(doc), "new\n")
	if err != nil || string(out) != "head\n"+beginMark+"\nnew\n"+endMark+"\ntail\n" {
		t.Fatalf("replaceSection = %q, %v", out, err)
	}
	if _, err := replaceSection([]byte("no markers"), "x"); err == nil {
		t.Fatal("replaceSection without markers succeeded")
	}

	// Running one package again replaces its row and lived mutants and
	// keeps the others', in their order.
	again := mergeTable(tb, []result{{Pkg: "backplane", Killed: 10, Lived: 0}, {Pkg: "conn", Killed: 3, Lived: 1,
		LivedList: []mutant{{File: "c.go", Type: "U", Code: "a > b", Line: 7, Col: 1}}}})
	for _, want := range []string{"| backplane | 10 | 0 | 0 | 0 | 0 | 100.0% | 100.0% |", "| fanout | 1 | 1 | 0 | 0 | 0 | 50.0% ✗ |",
		"| conn | 3 | 1 |", "- `conn/c.go:7:1` U: `a > b`"} {
		if !strings.Contains(again, want) {
			t.Errorf("merged table lacks %q:\n%s", want, again)
		}
	}
	if strings.Contains(again, "backplane/a.go") {
		t.Errorf("merged table keeps backplane's old lived mutant:\n%s", again)
	}
	if i, j, k := strings.Index(again, "| backplane |"), strings.Index(again, "| fanout |"), strings.Index(again, "| conn |"); !(i < j && j < k) {
		t.Errorf("merged table's order is not backplane, fanout, conn:\n%s", again)
	}
	doc2 := "head\n" + beginMark + "\n" + tb + endMark + "\n"
	if got := section([]byte(doc2)); got != "\n"+tb {
		t.Errorf("section = %q", got)
	}
}
