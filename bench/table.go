package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// row is one line of the figures table.
type row struct {
	figure   string
	aim      string // "" when the design sets none
	measured string
	ref      string // clamonacc's figure, from the design
	met      verdict
}

// verdict says whether a measurement meets its aim.
type verdict int

const (
	noAim verdict = iota // nothing to compare
	aimMet
	aimMissed
)

func atMost(v, limit float64) verdict {
	if v <= limit {
		return aimMet
	}
	return aimMissed
}

func atLeast(v, limit float64) verdict {
	if v >= limit {
		return aimMet
	}
	return aimMissed
}

// writeTable prints rows as a markdown table.
func writeTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| figure | aim | measured | clamonacc here |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		m := r.measured
		switch r.met {
		case aimMet:
			m += " ✓"
		case aimMissed:
			m += " ✗"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", cell(r.figure), cell(r.aim), cell(m), cell(r.ref))
	}
}

// cell makes s safe inside a table cell: one line, pipes escaped, and a
// dash for nothing.
func cell(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "–"
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: a value that was measured, never an interpolation.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// sortedCopy returns ds sorted, leaving ds alone.
func sortedCopy(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// median of totals: the pass that is neither the luckiest nor the unluckiest.
func median(ds []time.Duration) time.Duration {
	return percentile(sortedCopy(ds), 50)
}

// micros formats d in microseconds: one decimal below 100 µs.
func micros(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	prec := 0
	if us < 100 {
		prec = 1
	}
	return strconv.FormatFloat(us, 'f', prec, 64) + " µs"
}

// p50p99 formats the median and the 99th percentile of ds.
func p50p99(ds []time.Duration) string {
	s := sortedCopy(ds)
	return fmt.Sprintf("%s / %s", micros(percentile(s, 50)), micros(percentile(s, 99)))
}

// group formats n with thousands separators: 350000 -> "350,000".
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ratio formats a cost ratio, e.g. "1.02×".
func ratio(r float64) string {
	return strconv.FormatFloat(r, 'f', 2, 64) + "×"
}

// mib formats bytes in MiB with one decimal.
func mib(n int64) string {
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}

// millis formats d in milliseconds with one decimal.
func millis(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}
