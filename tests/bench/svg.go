package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Series is one line of a plot: y values (with an optional min–max band) at x.
type Series struct {
	Name   string
	Color  string
	X      []float64
	Y      []float64
	Lo, Hi []float64 // optional spread, same length as Y
}

// Plot is a line chart written as a standalone SVG.
type Plot struct {
	Title, XLabel, YLabel string
	Series                []Series
}

// SVG renders the plot (width 720, height 420) with linear axes from 0.
func (p Plot) SVG() string {
	const w, h = 720.0, 420.0
	const left, right, top, bottom = 70.0, 20.0, 40.0, 80.0
	xmax, ymax := 1.0, 1.0
	for _, s := range p.Series {
		for i, x := range s.X {
			xmax = math.Max(xmax, x)
			y := s.Y[i]
			if i < len(s.Hi) {
				y = math.Max(y, s.Hi[i])
			}
			if !math.IsNaN(y) {
				ymax = math.Max(ymax, y)
			}
		}
	}
	ystep := niceStep(ymax / 5)
	ymax = math.Ceil(ymax/ystep) * ystep
	xstep := niceStep(xmax / 10)
	px := func(x float64) float64 { return left + x/xmax*(w-left-right) }
	py := func(y float64) float64 { return h - bottom - y/ymax*(h-top-bottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" text-anchor="middle">%s</text>`+"\n", w/2, html.EscapeString(p.Title))
	for y := 0.0; y <= ymax+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, py(y), w-right, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, num(y))
	}
	for x := 0.0; x <= xmax+xstep/2; x += xstep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`+"\n", px(x), h-bottom, px(x), h-bottom+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), h-bottom+18, num(x))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top, left, h-bottom)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (left+w-right)/2, h-bottom+38, html.EscapeString(p.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", (top+h-bottom)/2, html.EscapeString(p.YLabel))
	for si, s := range p.Series {
		if len(s.Lo) == len(s.Y) && len(s.Hi) == len(s.Y) {
			for i, x := range s.X {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-opacity="0.4" stroke-width="5"/>`+"\n", px(x), py(s.Lo[i]), px(x), py(s.Hi[i]), s.Color)
			}
		}
		var pts []string
		for i, x := range s.X {
			if !math.IsNaN(s.Y[i]) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x), py(s.Y[i])))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.Color, strings.Join(pts, " "))
		for _, pt := range pts {
			xy := strings.Split(pt, ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], s.Color)
		}
		ly := h - 22.0
		lx := left + float64(si)*300
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", lx, ly, lx+24, ly, s.Color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+30, ly+4, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}
