package bench

import (
	"strings"
	"testing"
)

func TestSampleStats(t *testing.T) {
	s := Sample{Unit: "ms", Values: []float64{5, 1, 3, 2, 4}}
	if got := s.Median(); got != 3 {
		t.Fatalf("median %v, want 3", got)
	}
	if got := s.Spread(); got != "1.00–5.00" {
		t.Fatalf("spread %q", got)
	}
	if got := Ratio(s, Sample{Values: []float64{2}}); got != "1.50×" {
		t.Fatalf("ratio %q", got)
	}
	var ten Sample
	for i := 1; i <= 10; i++ {
		ten.Add(float64(i))
	}
	if got := ten.Spread(); !strings.HasPrefix(got, "p10–p90 ") {
		t.Fatalf("spread of 10 values %q, want percentiles", got)
	}
	if got := (Sample{}).Cell(); got != "not measured" {
		t.Fatalf("empty cell %q", got)
	}
}

func TestPlotSVG(t *testing.T) {
	p := Plot{Title: "t <&>", Series: []Series{{Name: "a", Color: "red", X: []float64{2, 3}, Y: []float64{10, 20}, Lo: []float64{9, 18}, Hi: []float64{11, 25}}}}
	out := p.SVG()
	for _, want := range []string{"<svg ", "<polyline", "t &lt;&amp;&gt;", "</svg>"} {
		if !strings.Contains(out, want) {
			t.Fatalf("svg lacks %q", want)
		}
	}
}
