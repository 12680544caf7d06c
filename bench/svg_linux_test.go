package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

func wellFormed(t *testing.T, b []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	elems := map[string]int{}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return elems
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok {
			elems[se.Name.Local]++
		}
	}
}

func TestWriteSVGWellFormed(t *testing.T) {
	charts := []Chart{
		{Title: "RSS <&> \"quotes\"", XLabel: "connections", YLabel: "MiB", Series: []Series{
			{Name: "edgeplane & co", Points: [][2]float64{{0, 10}, {1000, 12}, {19000, 40}}},
			{Name: "baseline <gorilla>", Points: [][2]float64{{0, 10}, {1000, 40}, {19000, 600}}},
		}},
		{Title: "latency", XTickLabels: pctLabels, LogY: true, Series: []Series{
			pctSeries("a", func() *Hist { var h Hist; h.RecordUS(100); h.RecordUS(5000); return &h }()),
			pctSeries("empty", nil),
		}},
		{Title: "no data"},
	}
	var buf bytes.Buffer
	if err := WriteSVG(&buf, charts...); err != nil {
		t.Fatal(err)
	}
	elems := wellFormed(t, buf.Bytes())
	if elems["svg"] != 1 || elems["polyline"] != 3 || !strings.Contains(buf.String(), "&lt;gorilla&gt;") {
		t.Fatalf("elements %v", elems)
	}
}

func TestReportSVGs(t *testing.T) {
	var buf bytes.Buffer
	rep := &DensityReport{Systems: []DensitySystem{{Spec: SystemSpec{Name: "baseline", Kind: KindBaseline}, RSS0: 8 << 20,
		Points: []DensityPoint{{Conns: 100, RSS: 10 << 20}}}}}
	if err := DensitySVG(&buf, rep); err != nil {
		t.Fatal(err)
	}
	wellFormed(t, buf.Bytes())
	buf.Reset()
	if err := FanoutSVG(&buf, &FanoutReport{}); err != nil {
		t.Fatal(err)
	}
	wellFormed(t, buf.Bytes())
}
