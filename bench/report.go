package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// WriteJSONFile writes v as indented JSON.
func WriteJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	return nil
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func ratioStr(base, v float64) string {
	if v <= 0 || base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", base/v)
}

// WriteDensityTable prints the density report.
func WriteDensityTable(w io.Writer, r *DensityReport) {
	fmt.Fprintf(w, "\nDensity: idle SignalR connections (%s, %d cores, %s)\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Go)
	var base *DensitySystem
	for i := range r.Systems {
		if r.Systems[i].Spec.Kind == KindBaseline {
			base = &r.Systems[i]
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tconns\topen\tRSS\tB/conn\tvs baseline\tslope B/conn\theap+stack/conn\tconns/GiB\tgoroutines\tslab/conn (both ends)\tidle CPU\tdropped\t")
	for _, s := range r.Systems {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\tERROR: %s\t\t\t\t\t\t\t\t\t\t\t\t\n", s.Spec.Name, s.Error)
		}
		for _, p := range s.Points {
			vs := "-"
			if base != nil && s.Spec.Kind != KindBaseline {
				for _, bp := range base.Points {
					if bp.Conns == p.Conns {
						vs = ratioStr(bp.BytesPerConn, p.BytesPerConn)
					}
				}
			}
			idle := "-"
			if p.IdleWindowSec > 0 {
				idle = fmt.Sprintf("%.2f%%", p.IdleCPUPct)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%d\t\n",
				s.Spec.Name, p.Conns, p.Open, mib(float64(p.RSS)), p.BytesPerConn, vs, p.SlopePerConn,
				p.HeapStackPer, p.ConnsPerGiB, p.Goroutines, p.SlabPerConn, idle, p.Dropped)
		}
	}
	tw.Flush()
}

// DensitySVG charts server RSS against connections for every system.
func DensitySVG(w io.Writer, r *DensityReport) error {
	c := Chart{Title: "Server RSS against idle connections", XLabel: "connections", YLabel: "RSS (MiB)"}
	for _, s := range r.Systems {
		ser := Series{Name: s.Spec.Name, Points: [][2]float64{{0, float64(s.RSS0) / (1 << 20)}}}
		for _, p := range s.Points {
			ser.Points = append(ser.Points, [2]float64{float64(p.Conns), float64(p.RSS) / (1 << 20)})
		}
		c.Series = append(c.Series, ser)
	}
	return WriteSVG(w, c)
}
