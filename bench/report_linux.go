package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
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
	var floor *DensitySystem
	for i := range r.Systems {
		if r.Systems[i].Spec.Kind == KindFloor {
			floor = &r.Systems[i]
		}
	}
	source := ""
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tconns\topen\tmsgpack\tfailed\t503\tRSS\tB/conn\tvs baseline\tslope B/conn\theap+stack/conn\tconns/GiB\tkernel B/conn\tconns/GiB with kernel\tgoroutines\tidle CPU\t× floor\tdropped\t")
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
			idle, vsFloor := "-", "-"
			if p.IdleWindowSec > 0 {
				idle = fmt.Sprintf("%.2f%%", p.IdleCPUPct)
				if floor != nil && s.Spec.Kind != KindFloor {
					for _, fp := range floor.Points {
						if fp.Conns == p.Conns && fp.IdleWindowSec > 0 {
							vsFloor = ratioStr(p.IdleCPUPct, fp.IdleCPUPct)
						}
					}
				}
			}
			if p.KernelSource != "" {
				source = p.KernelSource
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%.0f\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t%d\t\n",
				s.Spec.Name, p.Conns, p.Open, p.MessagePack, p.Connect.Failures, p.Connect.Rejected503, mib(float64(p.RSS)), p.BytesPerConn, vs, p.SlopePerConn,
				p.HeapStackPer, p.ConnsPerGiB, p.KernelPerConn, p.ConnsPerGiBKernel, p.Goroutines, idle, vsFloor, p.Dropped)
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
	if source != "" {
		fmt.Fprintf(w, "(kernel B/conn: the server end's half of the socket slab growth, both loopback ends alike, from %s; × floor: idle CPU over the floor server's, the keep-alive system calls alone)\n", source)
	} else {
		fmt.Fprintln(w, "(kernel B/conn: not measured, neither /proc/slabinfo nor /proc/meminfo readable)")
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
	var floor *FanoutSystem
	for i := range r.Systems {
		if r.Systems[i].Spec.Kind == KindFloor {
			floor = &r.Systems[i]
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tnodes\tconns\tvia\tsize\tdelivered/expected\tp50 ms\tp99 ms\tmax ms\tbroadcast p50 ms\tvs baseline\t× floor\tdeliveries/s\tCPU s/M deliv\tvs baseline\t× floor\tclient CPU s\tdropped\t")
	for _, s := range r.Systems {
		for _, c := range s.Cases {
			vsLat, vsCPU, flLat, flCPU := "-", "-", "-", "-"
			if hasBase && s.Spec.Kind != KindBaseline && s.Spec.Kind != KindFloor {
				for _, bc := range base.Cases {
					if bc.Via == c.Via && bc.Size == c.Size {
						vsLat = ratioStr(bc.Completion.P50ms, c.Completion.P50ms)
						vsCPU = ratioStr(bc.CPUSecPerMillion, c.CPUSecPerMillion)
					}
				}
			}
			if floor != nil && s.Spec.Kind != KindFloor {
				if fc, ok := floor.caseOf(c.Via, c.Size); ok {
					flLat = ratioStr(c.Completion.P50ms, fc.Completion.P50ms)
					flCPU = ratioStr(c.CPUSecPerMillion, fc.CPUSecPerMillion)
				}
			}
			if c.Error != "" {
				fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%d\tERROR (below)\t\t\t\t\t\t\t\t\t\t\t\t\n", s.Spec.Name, s.Nodes, s.Connect.Connected, s.Connect.Requested, c.Via, c.Size)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%s\t%d\t%d/%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.0f\t%.2f\t%s\t%s\t%.2f\t%d\t\n",
				s.Spec.Name, s.Nodes, s.Connect.Connected, s.Connect.Requested, c.Via, c.Size, c.Delivered, c.Expected, c.Latency.P50ms, c.Latency.P99ms,
				c.Latency.MaxMs, c.Completion.P50ms, vsLat, flLat, c.DeliveriesPerSec, c.CPUSecPerMillion, vsCPU, flCPU, c.ClientCPUSec, c.Dropped)
		}
	}
	tw.Flush()
	for _, s := range r.Systems {
		if s.Connect.Requested > 0 {
			fmt.Fprintf(w, "connections: %s: %s; %d in the group\n", s.Spec.Name, s.Connect, s.Members)
		}
		for _, c := range s.Cases {
			if c.WriteCPUus > 0 {
				fmt.Fprintf(w, "%s: %s %d B: the write loop's own CPU %.2f µs per write\n", s.Spec.Name, c.Via, c.Size, c.WriteCPUus)
			}
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
	fmt.Fprintln(w, "(vs baseline: baseline's figure over this system's; above 1× means faster/cheaper. × floor: this system's figure over the floor server's, the kernel's cost for the same deliveries (one write per socket); 1× is the floor. broadcast = send until the last member received)")
	writeShortfalls(w, r.Shortfalls())
}

// caseOf finds the system's case for (via, size).
func (s *FanoutSystem) caseOf(via string, size int) (FanoutCase, bool) {
	for _, c := range s.Cases {
		if c.Via == via && c.Size == size && c.Error == "" {
			return c, true
		}
	}
	return FanoutCase{}, false
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

// WriteFloorTable prints the floor report.
func WriteFloorTable(w io.Writer, r *FloorReport) {
	fmt.Fprintf(w, "\nFloor: what the kernel costs, %d connections, the same load client (%s, %d cores, load %s)\n", r.Conns, r.Machine.CPU, r.Machine.Cores, r.Machine.LoadAvg)
	fmt.Fprintf(w, "connections: %s\n", r.Connect)
	if r.Kernel.Source != "" {
		fmt.Fprintf(w, "kernel memory (%s): %.0f B per connection both loopback ends, %.0f B the server's end -> %.0f connections per GiB of kernel memory alone; socket buffers %.0f B/conn; floor server RSS %.0f B/conn\n",
			r.Kernel.Source, r.KernelBothEnds, r.KernelPerConn, r.ConnsPerGiBKernel, r.TCPMemPerConn, r.ServerRSSPerConn)
	} else {
		fmt.Fprintln(w, "kernel memory: not measured (neither /proc/slabinfo nor /proc/meminfo readable)")
	}
	fmt.Fprintf(w, "idle, keep-alive system calls only: %.2f%% of a core over %.0f s, %.0f ping reads+writes/s, %.2f µs each\n",
		r.IdleCPUPct, r.IdleWindowSec, r.PingsPerSec, r.IdleCPUusPerPing)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tsize\tdelivered/expected\tbroadcast p50 ms\tp99 ms\tlatency p50 ms\tloop wall p50 ms\tCPU µs/write\tserver CPU µs/deliv\tclient CPU µs/deliv\tshort writes\t")
	for _, c := range r.Cases {
		if c.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\tERROR: %s\t\t\t\t\t\t\t\t\t\n", c.Mode, c.Size, c.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t\n", c.Mode, c.Size, c.Delivered, c.Expected,
			c.Completion.P50ms, c.Completion.P99ms, c.Latency.P50ms, c.LoopWallMs, c.WriteCPUus, c.ServerCPUus, c.ClientCPUus, c.ShortWrites)
	}
	tw.Flush()
	fmt.Fprintln(w, "(broadcast = send until the last client has it; CPU µs/write: the writer threads' own CPU per write(2)/writev(2), the receiver's loopback TCP work included; server CPU: the whole floor process per delivery, idle rate removed)")
	if r.Error != "" {
		fmt.Fprintf(w, "floor: ERROR: %s\n", r.Error)
	}
	writeShortfalls(w, r.Shortfalls())
}

// FloorSVG charts the delivery latency of each floor case.
func FloorSVG(w io.Writer, r *FloorReport) error {
	ch := Chart{Title: fmt.Sprintf("Floor: delivery latency, %d conns (raw write loops)", r.Conns), XLabel: "percentile",
		YLabel: "latency (ms, log)", XTickLabels: pctLabels, LogY: true}
	for _, c := range r.Cases {
		ch.Series = append(ch.Series, pctSeries(fmt.Sprintf("%s %d B", c.Mode, c.Size), c.Hist))
	}
	return WriteSVG(w, ch)
}

// WriteScaleTable prints the scale report.
func WriteScaleTable(w io.Writer, r *ScaleReport) {
	fmt.Fprintf(w, "\nScale: %d nodes × %d = %d idle SignalR connections on one Redis, %s (%s, %d cores, %d GiB, load %s)\n",
		r.Nodes, r.PerNode, r.Conns, r.Spec.Name, r.Machine.CPU, r.Machine.Cores, r.Machine.MemGiB, r.Machine.LoadAvg)
	fmt.Fprintf(w, "connections: %s; %.1f s from the first attempt to the last open\n", r.Connect, r.ConnectSeconds)
	fmt.Fprintf(w, "clients ping every %.0f s; node arguments: %s\n", r.ClientKeepAliveSec, strings.Join(r.NodeArgs, " "))
	kernel := "kernel: not measured"
	if r.Kernel.Source != "" {
		kernel = fmt.Sprintf("kernel %.0f B (the server end; %.0f B both loopback ends, %s)", r.KernelPerConn, r.KernelBothEnds, r.Kernel.Source)
	}
	fmt.Fprintf(w, "memory per connection: nodes' RSS %.0f B, %s -> %.0f B with the kernel; %.0f connections per GiB, %.0f with the kernel\n",
		r.RSSPerConn, kernel, r.WithKernel, r.ConnsPerGiB, r.ConnsPerGiBKernel)
	fmt.Fprintf(w, "idle: the fleet uses %.1f%% of a core (keep-alives both ways), Redis %.2f%%\n", r.IdleCPUPct, r.RedisIdleCPUPct)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "broadcasts\tsize\tdelivered/expected\tlost\tdropped\treach p50 ms\tp99 ms\tmax ms\tall reached p50 ms\tp99 ms\tdeliveries/s\tserver CPU µs/deliv\tclient CPU µs/deliv\tRedis CPU ms (over s)\t")
	fmt.Fprintf(tw, "%d\t%d\t%d/%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.1f (%.0f)\t\n", r.Messages, r.Size, r.Delivered, r.Expected,
		r.Lost, r.DroppedDuring, r.Reach.P50ms, r.Reach.P99ms, r.Reach.MaxMs, r.Completion.P50ms, r.Completion.P99ms,
		r.DeliveriesPerSec, r.ServerCPUus, r.ClientCPUus, r.RedisCPUSec*1000, r.RedisBroadcastSec)
	tw.Flush()
	fmt.Fprintln(w, "(reach: PUBLISH to arrival, per delivery; all reached: PUBLISH until the last client has it, per broadcast; CPU: the nodes' over the broadcasts less their idle rate, per delivery; Redis CPU: over the whole broadcast phase, its idle rate above for comparison)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tadmin\tplanned\tconnections\tRSS\tRSS₀\topen fds\talive\tclosed, by reason\trejected, by reason\t")
	for i, n := range r.Fleet {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%s\t%s\t%d\t%v\t%s\t%s\t\n", i, n.Admin, n.Planned, n.Connections, mib(float64(n.RSS)), mib(float64(n.RSS0)),
			n.OpenFDs, n.Alive, countsStr(n.Closed), countsStr(n.Rejected))
	}
	tw.Flush()
	if r.Error != "" {
		fmt.Fprintf(w, "scale: ERROR: %s\n", r.Error)
	}
	writeShortfalls(w, r.Shortfalls())
}

// countsStr renders reason → count as "a 3, b 1", largest first.
func countsStr(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.0f", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// ScaleSVG charts the reach-time distribution and each broadcast's time
// until every client had it.
func ScaleSVG(w io.Writer, r *ScaleReport) error {
	reach := Chart{Title: fmt.Sprintf("Reach time, %d connections on %d nodes, %d B through Redis", r.Connect.Connected, r.Nodes, r.Size),
		XLabel: "percentile", YLabel: "PUBLISH to arrival (ms, log)", XTickLabels: pctLabels, LogY: true,
		Series: []Series{pctSeries(r.Spec.Name, r.Hist)}}
	all := Chart{Title: "Each broadcast: PUBLISH until every client has it", XLabel: "broadcast", YLabel: "ms"}
	s := Series{Name: r.Spec.Name}
	for i, ms := range r.CompletionMs {
		s.Points = append(s.Points, [2]float64{float64(i + 1), ms})
	}
	all.Series = []Series{s}
	return WriteSVG(w, reach, all)
}
