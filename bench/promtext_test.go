package main

import (
	"math"
	"slices"
	"strings"
	"testing"
)

const sampleMetrics = `# HELP vigil_decision_seconds Time from reading a permission event to answering it.
# TYPE vigil_decision_seconds histogram
vigil_decision_seconds_bucket{le="1e-06"} 0
vigil_decision_seconds_bucket{le="2e-06"} 3
vigil_decision_seconds_bucket{le="4e-06"} 10
vigil_decision_seconds_bucket{le="+Inf"} 12
vigil_decision_seconds_sum 0.5
vigil_decision_seconds_count 12
vigil_events_total{type="permission"} 12
`

func TestParseHistogram(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		hist    string
		text    string
		want    []bucket
		wantErr string
	}{
		{"sample", "vigil_decision_seconds", sampleMetrics, []bucket{{1e-6, 0}, {2e-6, 3}, {4e-6, 10}, {inf, 12}}, ""},
		{"out of order and other labels", "x", `x_bucket{le="+Inf",a="b"} 5
x_bucket{a="b",le="0.5"} 2
`, []bucket{{0.5, 2}, {inf, 5}}, ""},
		{"exponent values and a timestamp", "x", `x_bucket{le="1"} 1.5e+06 1700000000
x_bucket{le="+Inf"} 2e6
`, []bucket{{1, 1.5e6}, {inf, 2e6}}, ""},
		{"other histogram only", "x", sampleMetrics, nil, "no buckets"},
		{"no +Inf", "x", `x_bucket{le="1"} 1` + "\n", nil, "no +Inf bucket"},
		{"no le", "x", `x_bucket{a="1"} 1` + "\n", nil, "no le label"},
		{"bad value", "x", `x_bucket{le="1"} many` + "\n", nil, `value "many"`},
		{"bad bound", "x", `x_bucket{le="one"} 1` + "\n", nil, `le "one"`},
		{"no value", "x", `x_bucket{le="1"}` + "\n", nil, "no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHistogram([]byte(tt.text), tt.hist)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("parseHistogram: got error %v want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseHistogram: got error %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseHistogram: got %v want %v", got, tt.want)
			}
		})
	}
}

func TestHistogramDelta(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name          string
		after, before []bucket
		want          []bucket
		wantErr       bool
	}{
		{"difference", []bucket{{1, 5}, {inf, 9}}, []bucket{{1, 2}, {inf, 3}}, []bucket{{1, 3}, {inf, 6}}, false},
		{"nothing new", []bucket{{1, 5}, {inf, 9}}, []bucket{{1, 5}, {inf, 9}}, []bucket{{1, 0}, {inf, 0}}, false},
		{"bucket counts", []bucket{{1, 5}}, []bucket{{1, 2}, {inf, 3}}, nil, true},
		{"bounds differ", []bucket{{1, 5}, {inf, 9}}, []bucket{{2, 2}, {inf, 3}}, nil, true},
		{"counter went down (daemon restarted)", []bucket{{1, 1}, {inf, 1}}, []bucket{{1, 2}, {inf, 3}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := histogramDelta(tt.after, tt.before)
			if (err != nil) != tt.wantErr {
				t.Fatalf("histogramDelta: got error %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("histogramDelta: got %v want %v", got, tt.want)
			}
		})
	}
}

func TestQuantileBucket(t *testing.T) {
	inf := math.Inf(1)
	// 100 observations: 50 at most 1, 40 in (1, 2], 9 in (2, 4], 1 above.
	h := []bucket{{1, 50}, {2, 90}, {4, 99}, {inf, 100}}
	tests := []struct {
		name         string
		bs           []bucket
		q            float64
		lower, upper float64
		wantErr      bool
	}{
		{"median in the first bucket", h, 0.5, 0, 1, false},
		{"just past the first bucket", h, 0.51, 1, 2, false},
		{"p90 at a bucket's edge", h, 0.9, 1, 2, false},
		{"p99", h, 0.99, 2, 4, false},
		{"maximum in the open bucket", h, 1, 4, inf, false},
		{"tiny q is the first observation", h, 0.0001, 0, 1, false},
		{"empty buckets skipped", []bucket{{1, 0}, {2, 0}, {4, 3}, {inf, 3}}, 0.5, 2, 4, false},
		{"no observations", []bucket{{1, 0}, {inf, 0}}, 0.5, 0, 0, true},
		{"no buckets", nil, 0.5, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lower, upper, err := quantileBucket(tt.bs, tt.q)
			if (err != nil) != tt.wantErr {
				t.Fatalf("quantileBucket: got error %v, want error %v", err, tt.wantErr)
			}
			if lower != tt.lower || upper != tt.upper {
				t.Errorf("quantileBucket(%v): got (%v, %v] want (%v, %v]", tt.q, lower, upper, tt.lower, tt.upper)
			}
		})
	}
}

func TestBucketText(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		want   string
	}{
		{"first bucket", 0, 1e-6, "0–1 µs"},
		{"power of two", 128e-6, 256e-6, "128–256 µs"},
		{"open-ended", 0.016384, math.Inf(1), "> 16384 µs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bucketText(tt.lo, tt.hi); got != tt.want {
				t.Errorf("bucketText(%v, %v): got %q want %q", tt.lo, tt.hi, got, tt.want)
			}
		})
	}
}
