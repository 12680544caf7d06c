package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
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

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func ratioStr(base, v float64) string {
	if v <= 0 || base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", base/v)
}

// WriteDensityTable prints the density report.
func WriteDensityTable(w io.Writer, r *DensityReport) {
	fmt.Fprintf(w, "\nDensity: idle SignalR connections (%s, %d cores, %s, load %s)\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Go, r.Machine.LoadAvg)
	var base *DensitySystem
	for i := range r.Systems {
		if r.Systems[i].Spec.Kind == KindBaseline {
			base = &r.Systems[i]
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tconns\topen\tfailed\t503\tRSS\tB/conn\tvs baseline\tslope B/conn\theap+stack/conn\tconns/GiB\tgoroutines\tslab/conn (both ends)\tidle CPU\tdropped\t")
	for _, s := range r.Systems {
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
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%.0f\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%d\t\n",
				s.Spec.Name, p.Conns, p.Open, p.Connect.Failures, p.Connect.Rejected503, mib(float64(p.RSS)), p.BytesPerConn, vs, p.SlopePerConn,
				p.HeapStackPer, p.ConnsPerGiB, p.Goroutines, p.SlabPerConn, idle, p.Dropped)
		}
	}
	tw.Flush()
	for _, s := range r.Systems {
		for _, p := range s.Points {
			if p.Connect.Requested > 0 && (p.Connect.Short() || p.Connect.Failures > 0) {
				fmt.Fprintf(w, "connections: %s +%d to %d: %s\n", s.Spec.Name, p.Connect.Requested, p.Conns, p.Connect)
			}
		}
		if s.Error != "" {
			fmt.Fprintf(w, "%s: ERROR: %s\n", s.Spec.Name, s.Error)
		}
	}
	writeShortfalls(w, r.Shortfalls())
}

// Shortfalls lists, one line each, every system and size whose requested
// connections did not all open.
func (r *DensityReport) Shortfalls() []string {
	var out []string
	for _, s := range r.Systems {
		for _, p := range s.Points {
			if p.Connect.Short() {
				out = append(out, fmt.Sprintf("%s: %d of %d connections open at size %d (%d of the %d added: %s)",
					s.Spec.Name, p.Open, p.Conns, p.Conns, p.Connect.Connected, p.Connect.Requested, p.Connect))
			}
		}
	}
	return out
}

// Errors lists the systems that could not be measured.
func (r *DensityReport) Errors() []string {
	return systemErrors(r.Systems, func(s DensitySystem) (string, string) { return s.Spec.Name, s.Error })
}

// Errors lists the systems and cases that could not be measured.
func (r *FanoutReport) Errors() []string {
	out := systemErrors(r.Systems, func(s FanoutSystem) (string, string) { return s.Spec.Name, s.Error })
	for _, s := range r.Systems {
		for _, c := range s.Cases {
			if c.Error != "" {
				out = append(out, fmt.Sprintf("%s %s %d B: %s", s.Spec.Name, c.Via, c.Size, c.Error))
			}
		}
	}
	return out
}

// Errors lists the systems that could not be measured.
func (r *StormReport) Errors() []string {
	return systemErrors(r.Systems, func(s StormResult) (string, string) { return s.Spec.Name, s.Error })
}

func systemErrors[T any](items []T, f func(T) (name, err string)) []string {
	var out []string
	for _, it := range items {
		if name, err := f(it); err != "" {
			out = append(out, name+": "+err)
		}
	}
	return out
}

// writeShortfalls ends a table with the runs that fell short.
func writeShortfalls(w io.Writer, short []string) {
	for _, l := range short {
		fmt.Fprintf(w, "SHORT: %s\n", l)
	}
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

func baselineOf[T any](items []T, spec func(T) SystemSpec) (T, bool) {
	for _, it := range items {
		if spec(it).Kind == KindBaseline {
			return it, true
		}
	}
	var zero T
	return zero, false
}

// WriteFanoutTable prints the fanout report.
func WriteFanoutTable(w io.Writer, r *FanoutReport) {
	fmt.Fprintf(w, "\nFanout: %d connections requested per system, all in one group (%s, %d cores, load %s)\n", r.Conns, r.Machine.CPU, r.Machine.Cores, r.Machine.LoadAvg)
	base, hasBase := baselineOf(r.Systems, func(s FanoutSystem) SystemSpec { return s.Spec })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tnodes\tconns\tvia\tsize\tdelivered/expected\tp50 ms\tp99 ms\tmax ms\tbroadcast p50 ms\tvs baseline\tdeliveries/s\tCPU s/M deliv\tvs baseline\tclient CPU s\tdropped\t")
	for _, s := range r.Systems {
		for _, c := range s.Cases {
			vsLat, vsCPU := "-", "-"
			if hasBase && s.Spec.Kind != KindBaseline {
				for _, bc := range base.Cases {
					if bc.Via == c.Via && bc.Size == c.Size {
						vsLat = ratioStr(bc.Completion.P50ms, c.Completion.P50ms)
						vsCPU = ratioStr(bc.CPUSecPerMillion, c.CPUSecPerMillion)
					}
				}
			}
			if c.Error != "" {
				fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%d\tERROR (below)\t\t\t\t\t\t\t\t\t\t\n", s.Spec.Name, s.Nodes, s.Connect.Connected, s.Connect.Requested, c.Via, c.Size)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%d\t%d/%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%.0f\t%.2f\t%s\t%.2f\t%d\t\n",
				s.Spec.Name, s.Nodes, s.Connect.Connected, s.Connect.Requested, c.Via, c.Size, c.Delivered, c.Expected, c.Latency.P50ms, c.Latency.P99ms,
				c.Latency.MaxMs, c.Completion.P50ms, vsLat, c.DeliveriesPerSec, c.CPUSecPerMillion, vsCPU, c.ClientCPUSec, c.Dropped)
		}
	}
	tw.Flush()
	for _, s := range r.Systems {
		if s.Connect.Requested > 0 {
			fmt.Fprintf(w, "connections: %s: %s; %d in the group\n", s.Spec.Name, s.Connect, s.Members)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "%s: ERROR: %s\n", s.Spec.Name, s.Error)
		}
		for _, c := range s.Cases {
			if c.Error != "" {
				fmt.Fprintf(w, "%s %s %d B: ERROR: %s\n", s.Spec.Name, c.Via, c.Size, c.Error)
			}
		}
	}
	fmt.Fprintln(w, "(vs baseline: baseline's figure over this system's; above 1× means faster/cheaper. broadcast = send until the last member received)")
	writeShortfalls(w, r.Shortfalls())
}

// Shortfalls lists, one line each, every system whose requested
// connections did not all open (or whose connect phase failed).
func (r *FanoutReport) Shortfalls() []string {
	var out []string
	for _, s := range r.Systems {
		if s.Connect.Short() || s.Connect.Requested == 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d requested connections open (%s)", s.Spec.Name, s.Connect.Connected, r.Conns, s.Connect))
		}
	}
	return out
}

var pctLabels = []string{"p50", "p75", "p90", "p95", "p99", "p99.9", "max"}
var pctValues = []float64{50, 75, 90, 95, 99, 99.9, 100}

func pctSeries(name string, h *Hist) Series {
	s := Series{Name: name}
	if h == nil {
		return s
	}
	for i, p := range pctValues {
		v := h.Percentile(p) / 1000
		if p == 100 {
			v = float64(h.MaxUS) / 1000
		}
		s.Points = append(s.Points, [2]float64{float64(i), v})
	}
	return s
}

// FanoutSVG charts the per-delivery latency distribution of each case.
func FanoutSVG(w io.Writer, r *FanoutReport) error {
	var charts []Chart
	type key struct {
		via  string
		size int
	}
	var order []key
	seen := map[key]bool{}
	for _, s := range r.Systems {
		for _, c := range s.Cases {
			k := key{c.Via, c.Size}
			if !seen[k] {
				seen[k] = true
				order = append(order, k)
			}
		}
	}
	for _, k := range order {
		ch := Chart{Title: fmt.Sprintf("Delivery latency, %d conns, %d B via %s", r.Conns, k.size, k.via),
			XLabel: "percentile", YLabel: "latency (ms, log)", XTickLabels: pctLabels, LogY: true}
		for _, s := range r.Systems {
			for _, c := range s.Cases {
				if c.Via == k.via && c.Size == k.size {
					ch.Series = append(ch.Series, pctSeries(s.Spec.Name, c.Hist))
				}
			}
		}
		charts = append(charts, ch)
	}
	if len(charts) == 0 {
		charts = append(charts, Chart{Title: "no fanout data"})
	}
	return WriteSVG(w, charts...)
}

// WriteStormTable prints the storm report.
func WriteStormTable(w io.Writer, r *StormReport) {
	fmt.Fprintf(w, "\nStorm: clients connecting at once, official no-jitter retry 0/2/10/30 s (%s, %d cores, load %s)\n", r.Machine.CPU, r.Machine.Cores, r.Machine.LoadAvg)
	base, hasBase := baselineOf(r.Systems, func(s StormResult) SystemSpec { return s.Spec })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tclients\tconnected\tgiven up\ts until all\taccepted/s\tvs baseline\t503s\tfailed attempts\thandshake p50 ms\tp99 ms\tvs baseline\testablished lost\tserver alive\t")
	for _, s := range r.Systems {
		vsRate, vsHS := "-", "-"
		if hasBase && s.Spec.Kind != KindBaseline {
			if base.AcceptedPerSec > 0 && s.AcceptedPerSec > 0 {
				vsRate = fmt.Sprintf("%.2f×", s.AcceptedPerSec/base.AcceptedPerSec)
			}
			vsHS = ratioStr(base.Handshake.P99ms, s.Handshake.P99ms)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2f\t%.0f\t%s\t%d\t%d\t%.1f\t%.1f\t%s\t%d/%d\t%v\t\n",
			s.Spec.Name, s.Clients, s.Connected, s.GivenUp, s.SecondsToAll, s.AcceptedPerSec, vsRate, s.Rejected503,
			s.Failures, s.Handshake.P50ms, s.Handshake.P99ms, vsHS, s.EstablishedLost, s.Established, s.ServerAlive)
	}
	tw.Flush()
	for _, s := range r.Systems {
		if len(s.FirstErrors) > 0 {
			fmt.Fprintf(w, "%s: first errors: %s\n", s.Spec.Name, strings.Join(s.FirstErrors, " | "))
		}
		if s.Error != "" {
			fmt.Fprintf(w, "%s: ERROR: %s\n", s.Spec.Name, s.Error)
		}
	}
	writeShortfalls(w, r.Shortfalls())
}

// Shortfalls lists every system where not every storm client connected or
// an established connection was lost.
func (r *StormReport) Shortfalls() []string {
	var out []string
	for _, s := range r.Systems {
		if s.Connected < s.Clients || s.EstablishedLost > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d storm clients connected (%d given up), %d of %d established lost; first errors: %s",
				s.Spec.Name, s.Connected, s.Clients, s.GivenUp, s.EstablishedLost, s.Established, strings.Join(s.FirstErrors, " | ")))
		}
	}
	return out
}

// StormSVG charts the handshake latency distribution in the storm.
func StormSVG(w io.Writer, r *StormReport) error {
	ch := Chart{Title: "Handshake latency during the storm (negotiate to handshake answer)", XLabel: "percentile",
		YLabel: "latency (ms, log)", XTickLabels: pctLabels, LogY: true}
	for _, s := range r.Systems {
		ch.Series = append(ch.Series, pctSeries(s.Spec.Name, s.HandshakeHist))
	}
	return WriteSVG(w, ch)
}
