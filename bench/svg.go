package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Chart is a line chart written as SVG by hand: axes, ticks, one polyline
// with markers per series, a legend.
type Chart struct {
	Title, XLabel, YLabel string
	Series                []Series
	// XTickLabels, if set, replaces numeric x ticks: label i at x = i.
	XTickLabels []string
	// LogY draws the y axis on a log10 scale (values must be > 0).
	LogY bool
}

// Series is one line of a chart.
type Series struct {
	Name   string
	Points [][2]float64
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;")
	return r.Replace(s)
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	step := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= step {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func fmtTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case math.Abs(v) >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	default:
		return fmt.Sprintf("%g", math.Round(v*1000)/1000)
	}
}

// WriteSVG renders charts stacked vertically into one SVG document.
func WriteSVG(w io.Writer, charts ...Chart) error {
	const cw, ch = 720, 380
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", cw, ch*len(charts), cw, ch*len(charts))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", cw, ch*len(charts))
	for i, c := range charts {
		c.render(&b, 0, float64(i*ch), cw, ch)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("bench: write svg: %w", err)
	}
	return nil
}

func (c Chart) render(b *strings.Builder, ox, oy float64, w, h float64) {
	const left, right, top, bottom = 80.0, 170.0, 40.0, 50.0
	pw, ph := w-left-right, h-top-bottom
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			y := p[1]
			if c.LogY {
				if y <= 0 {
					continue
				}
				y = math.Log10(y)
			}
			xmin, xmax = math.Min(xmin, p[0]), math.Max(xmax, p[0])
			ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	if math.IsInf(xmin, 1) {
		xmin, xmax, ymin, ymax = 0, 1, 0, 1
	}
	if len(c.XTickLabels) > 0 {
		xmin, xmax = 0, float64(len(c.XTickLabels)-1)
	}
	if !c.LogY {
		ymin = math.Min(0, ymin)
	} else {
		ymin, ymax = math.Floor(ymin), math.Ceil(ymax)
	}
	if xmax == xmin {
		xmax = xmin + 1
	}
	if ymax == ymin {
		ymax = ymin + 1
	}
	if !c.LogY {
		ymax *= 1.08
	}
	if len(c.XTickLabels) == 0 && xmin > 0 {
		xmin = 0
	}
	sx := func(x float64) float64 { return ox + left + (x-xmin)/(xmax-xmin)*pw }
	sy := func(y float64) float64 {
		if c.LogY {
			y = math.Log10(math.Max(y, 1e-12))
		}
		return oy + top + ph - (y-ymin)/(ymax-ymin)*ph
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="15" font-weight="bold">%s</text>`+"\n", ox+left, oy+24, xmlEscape(c.Title))
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", ox+left, oy+top, pw, ph)
	// y ticks
	var yt []float64
	if c.LogY {
		for e := ymin; e <= ymax; e++ {
			yt = append(yt, math.Pow(10, e))
			if ymax-ymin <= 2 && e < ymax {
				yt = append(yt, 2*math.Pow(10, e), 5*math.Pow(10, e))
			}
		}
	} else {
		yt = niceTicks(ymin, ymax, 6)
	}
	for _, v := range yt {
		y := sy(v)
		if y < oy+top-0.5 || y > oy+top+ph+0.5 {
			continue
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", ox+left, y, ox+left+pw, y)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+left-6, y+4, fmtTick(v))
	}
	// x ticks
	if len(c.XTickLabels) > 0 {
		for i, l := range c.XTickLabels {
			x := sx(float64(i))
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, oy+top+ph+18, xmlEscape(l))
		}
	} else {
		for _, v := range niceTicks(xmin, xmax, 6) {
			x := sx(v)
			if x > ox+left+pw+0.5 {
				continue
			}
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x, oy+top, x, oy+top+ph)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, oy+top+ph+18, fmtTick(v))
		}
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", ox+left+pw/2, oy+h-10, xmlEscape(c.XLabel))
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		ox+18, oy+top+ph/2, ox+18, oy+top+ph/2, xmlEscape(c.YLabel))
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			if c.LogY && p[1] <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", sx(p[0]), sy(p[1])))
		}
		if len(pts) > 0 {
			fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
			for _, p := range pts {
				xy := strings.Split(p, ",")
				fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], col)
			}
		}
		ly := oy + top + 10 + float64(i)*18
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", ox+left+pw+12, ly, ox+left+pw+32, ly, col)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", ox+left+pw+38, ly+4, xmlEscape(s.Name))
	}
}
