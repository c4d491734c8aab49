package bench

import (
	"fmt"
	"strings"
)

// Row is one figure of a table: ours beside a floor measured in the same run.
type Row struct {
	Figure    string
	Ours      Sample
	FloorName string
	Floor     Sample
	Note      string
}

// Section is one part of the report: prose and a table.
type Section struct {
	Title string
	Intro []string
	Rows  []Row
	After []string
}

// Report is docs/benchmarks.md.
type Report struct {
	Header   []string
	Sections []*Section
	Gaps     []string
}

// Section returns the section titled title, adding it when new.
func (r *Report) Section(title string) *Section {
	for _, s := range r.Sections {
		if s.Title == title {
			return s
		}
	}
	s := &Section{Title: title}
	r.Sections = append(r.Sections, s)
	return s
}

// Gap records something not measured, and why.
func (r *Report) Gap(format string, args ...any) {
	r.Gaps = append(r.Gaps, fmt.Sprintf(format, args...))
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	for _, l := range r.Header {
		b.WriteString(l + "\n")
	}
	b.WriteString("\n")
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "## %s\n\n", s.Title)
		for _, l := range s.Intro {
			b.WriteString(l + "\n")
		}
		if len(s.Intro) > 0 {
			b.WriteString("\n")
		}
		if len(s.Rows) > 0 {
			b.WriteString("| figure | cloudctl: median (spread, runs) | floor | floor: median (spread, runs) | ratio | notes |\n")
			b.WriteString("|---|---|---|---|---|---|\n")
			for _, row := range s.Rows {
				floor, ratio := "—", "—"
				if row.FloorName != "" {
					floor = row.Floor.Cell()
					ratio = Ratio(row.Ours, row.Floor)
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", row.Figure, row.Ours.Cell(), dash(row.FloorName), floor, ratio, row.Note)
			}
			b.WriteString("\n")
		}
		for _, l := range s.After {
			b.WriteString(l + "\n")
		}
		if len(s.After) > 0 {
			b.WriteString("\n")
		}
	}
	if len(r.Gaps) > 0 {
		b.WriteString("## Not measured in this run\n\n")
		for _, g := range r.Gaps {
			b.WriteString("- " + g + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
