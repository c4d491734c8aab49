package bench

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Sample is repeated measurements of one figure, in a unit (ms, MiB, %).
type Sample struct {
	Unit   string
	Values []float64
}

// Add records one value.
func (s *Sample) Add(v float64) { s.Values = append(s.Values, v) }

// AddDur records a duration in the sample's unit (ms or s).
func (s *Sample) AddDur(d time.Duration) {
	if s.Unit == "s" {
		s.Add(d.Seconds())
		return
	}
	s.Add(float64(d) / float64(time.Millisecond))
}

// N is the number of values.
func (s Sample) N() int { return len(s.Values) }

func (s Sample) sorted() []float64 {
	v := append([]float64(nil), s.Values...)
	sort.Float64s(v)
	return v
}

// Quantile is the q-quantile (0..1) by linear interpolation; NaN when empty.
func (s Sample) Quantile(q float64) float64 {
	v := s.sorted()
	if len(v) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(v)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return v[lo] + (v[hi]-v[lo])*(pos-float64(lo))
}

// Median is the 0.5-quantile.
func (s Sample) Median() float64 { return s.Quantile(0.5) }

// Spread is "min–max" below 10 values, "p10–p90" from 10 on.
func (s Sample) Spread() string {
	if s.N() == 0 {
		return "—"
	}
	if s.N() >= 10 {
		return fmt.Sprintf("p10–p90 %s–%s", num(s.Quantile(0.1)), num(s.Quantile(0.9)))
	}
	v := s.sorted()
	return fmt.Sprintf("%s–%s", num(v[0]), num(v[len(v)-1]))
}

// Cell is "median unit (spread, n=N)" for a table.
func (s Sample) Cell() string {
	if s.Unit == "ms" && s.N() > 0 && s.Median() >= 10000 {
		sec := Sample{Unit: "s"}
		for _, v := range s.Values {
			sec.Add(v / 1000)
		}
		return sec.Cell()
	}
	if s.N() == 0 {
		return "not measured"
	}
	if s.N() == 1 {
		return fmt.Sprintf("%s %s (n=1)", num(s.Median()), s.Unit)
	}
	return fmt.Sprintf("%s %s (%s, n=%d)", num(s.Median()), s.Unit, s.Spread(), s.N())
}

// Ratio is median(a)/median(b) as "1.23×", or "—".
func Ratio(a, b Sample) string {
	if a.N() == 0 || b.N() == 0 || b.Median() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a.Median()/b.Median())
}

// num prints a value with about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "—"
	case v == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
