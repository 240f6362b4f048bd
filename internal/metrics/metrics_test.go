package metrics

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigilsec/vigil/internal/onaccess"
	"github.com/vigilsec/vigil/internal/watch"
)

// scrape renders reg as text and parses it back, as Prometheus would.
func scrape(t *testing.T, src Sources) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeReg(t, NewRegistry(src))
}

func scrapeReg(t *testing.T, reg interface {
	Gather() ([]*dto.MetricFamily, error)
}) map[string]*dto.MetricFamily {
	t.Helper()
	var buf bytes.Buffer
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatalf("encode: %v", err)
		}
	}
	return parse(t, buf.String())
}

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse exposition: %v\n%s", err, text)
	}
	return fams
}

// value finds the sample of family name whose labels are exactly labels.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf := fams[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if !maps.Equal(got, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func fakeSources() Sources {
	snap := onaccess.Snapshot{
		Events: 1000, Opens: 900, Execs: 80, Accesses: 20,
		Allowed: 990, Denied: 10, Blocked: 4, Alerted: 2, Scans: 300,
		CacheHits: 50, Self: 7, Excluded: 400, Skipped: 30, Errors: 8, Timeouts: 5,
		QueueFull: 1, Overflows: 3, NoFd: 2, RespondErrors: 1, IgnoreErrors: 6, CloseWrites: 40,
	}
	snap.Latency[0] = 1
	snap.Latency[3] = 10
	return Sources{
		Loop:       func() onaccess.Snapshot { return snap },
		QueueDepth: func() int { return 12 },
		Dirs:       func() int { return 345 },
		Manager: func() watch.ManagerStats {
			return watch.ManagerStats{Events: 21, Resyncs: 2, TrackErrors: 1, Stalls: 3, Stalled: 1}
		},
		Alerts:     func() (uint64, uint64, uint64) { return 14, 3, 1 },
		Cache:      func() (uint64, uint64) { return 50, 290 },
		Hook:       func() string { return "fentry" },
		Engine:     func() (string, string) { return "clamav", "daily:27500" },
		EngineDown: func() bool { return true },
		Ready:      func() bool { return true },
	}
}

func TestScrape(t *testing.T) {
	fams := scrape(t, fakeSources())
	// fakeSources mixes on_error values: of its 8 errors (other 2,
	// timeout 5, queue_full 1) Denied-Blocked = 6 were denied.
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"vigil_events_total", map[string]string{"type": "open"}, 900},
		{"vigil_events_total", map[string]string{"type": "exec"}, 80},
		{"vigil_events_total", map[string]string{"type": "access"}, 20},
		{"vigil_events_total", map[string]string{"type": "overflow"}, 3},
		{"vigil_events_total", map[string]string{"type": "no_fd"}, 2},
		{"vigil_events_total", map[string]string{"type": "close_write"}, 40},
		{"vigil_verdicts_total", map[string]string{"verdict": "deny", "reason": "infected"}, 4},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "alert"}, 2},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "self"}, 7},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "cache"}, 50},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "excluded"}, 400},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "skipped"}, 30},
		// 990 - 2 - 7 - 50 - 400 - 30 - 2
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "clean"}, 499},
		// 6 denials over weights other=2, timeout=5, queue_full=1 (of 8):
		// 1.5, 3.75, 0.75 -> 1, 3, 0 + the two largest remainders.
		{"vigil_verdicts_total", map[string]string{"verdict": "deny", "reason": "timeout"}, 4},
		{"vigil_verdicts_total", map[string]string{"verdict": "deny", "reason": "queue_full"}, 1},
		{"vigil_verdicts_total", map[string]string{"verdict": "deny", "reason": "error"}, 1},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "timeout"}, 1},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "queue_full"}, 0},
		{"vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "error"}, 1},
		{"vigil_blocked_total", nil, 4},
		{"vigil_alerted_total", nil, 2},
		{"vigil_scans_total", nil, 300},
		{"vigil_cache_hits_total", nil, 50},
		{"vigil_cache_lookups_total", map[string]string{"result": "hit"}, 50},
		{"vigil_cache_lookups_total", map[string]string{"result": "miss"}, 290},
		{"vigil_ignore_mark_errors_total", nil, 6},
		{"vigil_engine_errors_total", nil, 2},
		{"vigil_timeouts_total", nil, 5},
		{"vigil_queue_full_total", nil, 1},
		{"vigil_respond_errors_total", nil, 1},
		{"vigil_queue_depth", nil, 12},
		{"vigil_watched_dirs", nil, 345},
		{"vigil_dir_events_total", nil, 21},
		{"vigil_resyncs_total", nil, 2},
		{"vigil_track_errors_total", nil, 1},
		{"vigil_walk_stalls_total", nil, 3},
		{"vigil_walks_stalled", nil, 1},
		{"vigil_alerts_total", map[string]string{"result": "written"}, 14},
		{"vigil_alerts_total", map[string]string{"result": "dropped"}, 3},
		{"vigil_alerts_total", map[string]string{"result": "failed"}, 1},
		{"vigil_hook_info", map[string]string{"hook": "fentry"}, 1},
		{"vigil_engine_info", map[string]string{"engine": "clamav", "version": "daily:27500"}, 1},
		{"vigil_engine_up", nil, 0},
		{"vigil_ready", nil, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.name, tt.labels), func(t *testing.T) {
			if tt.labels == nil {
				tt.labels = map[string]string{}
			}
			got, ok := value(fams, tt.name, tt.labels)
			if !ok {
				t.Fatalf("no sample %s%v", tt.name, tt.labels)
			}
			if got != tt.want {
				t.Errorf("%s%v: got %v want %v", tt.name, tt.labels, got, tt.want)
			}
		})
	}

	// The verdicts add up to the events answered.
	var sum float64
	for _, m := range fams["vigil_verdicts_total"].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	if sum != 1000 {
		t.Errorf("sum of vigil_verdicts_total: got %v want 1000", sum)
	}
	if n := len(fams["vigil_verdicts_total"].GetMetric()); n != len(verdictKeys) {
		t.Errorf("vigil_verdicts_total series: got %d want %d", n, len(verdictKeys))
	}

	for name, mf := range fams {
		if strings.HasPrefix(name, "vigil_") && mf.GetHelp() == "" {
			t.Errorf("%s: no HELP", name)
		}
	}
	for _, name := range []string{"go_goroutines", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("%s missing: Go and process collectors not registered", name)
		}
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		name string
		snap onaccess.Snapshot
		want map[verdictKey]uint64 // the non-zero series
	}{
		{
			name: "clean and cached",
			snap: onaccess.Snapshot{Events: 10, Allowed: 10, CacheHits: 3},
			want: map[verdictKey]uint64{{"allow", "clean"}: 7, {"allow", "cache"}: 3},
		},
		{
			name: "on_error deny everywhere",
			snap: onaccess.Snapshot{Events: 20, Allowed: 10, Denied: 10, Blocked: 2, Errors: 8, Timeouts: 5, QueueFull: 2},
			want: map[verdictKey]uint64{
				{"allow", "clean"}: 10, {"deny", "infected"}: 2,
				{"deny", "timeout"}: 5, {"deny", "queue_full"}: 2, {"deny", "error"}: 1,
			},
		},
		{
			name: "on_error allow everywhere",
			snap: onaccess.Snapshot{Events: 20, Allowed: 19, Denied: 1, Blocked: 1, Alerted: 1, Errors: 8, Timeouts: 5, QueueFull: 2},
			want: map[verdictKey]uint64{
				{"allow", "clean"}: 10, {"allow", "alert"}: 1, {"deny", "infected"}: 1,
				{"allow", "timeout"}: 5, {"allow", "queue_full"}: 2, {"allow", "error"}: 1,
			},
		},
		{
			name: "mixed on_error is split in proportion",
			snap: onaccess.Snapshot{Events: 4, Allowed: 2, Denied: 2, Errors: 4, Timeouts: 2},
			want: map[verdictKey]uint64{
				{"allow", "timeout"}: 1, {"allow", "error"}: 1,
				{"deny", "timeout"}: 1, {"deny", "error"}: 1,
			},
		},
		{
			// Allowed counted before the reason: nothing goes negative.
			name: "snapshot taken mid-event",
			snap: onaccess.Snapshot{Events: 3, Allowed: 2, Denied: 0, Blocked: 1, Self: 3, Errors: 1},
			want: map[verdictKey]uint64{{"deny", "infected"}: 1, {"allow", "self"}: 3, {"allow", "error"}: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := verdicts(tt.snap)
			for _, k := range verdictKeys {
				if got[k] != tt.want[k] {
					t.Errorf("%s/%s: got %d want %d", k.verdict, k.reason, got[k], tt.want[k])
				}
			}
			for k := range got {
				if !slices.Contains(verdictKeys, k) {
					t.Errorf("series %v not in verdictKeys", k)
				}
			}
		})
	}
}

func TestApportion(t *testing.T) {
	tests := []struct {
		name    string
		total   uint64
		weights []uint64
		want    []uint64
	}{
		{"nothing", 0, []uint64{3, 4}, []uint64{0, 0}},
		{"all", 7, []uint64{3, 4}, []uint64{3, 4}},
		{"exact", 4, []uint64{2, 6}, []uint64{1, 3}},
		{"largest remainder", 6, []uint64{2, 5, 1}, []uint64{1, 4, 1}},
		{"zero weights", 5, []uint64{0, 0}, []uint64{0, 0}},
		{"total over sum", 9, []uint64{1, 2}, []uint64{1, 2}},
		{"huge", math.MaxUint64 / 2, []uint64{math.MaxUint64 / 2, math.MaxUint64 / 2}, []uint64{math.MaxUint64/4 + 1, math.MaxUint64 / 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := apportion(tt.total, tt.weights)
			if !slices.Equal(got, tt.want) {
				t.Errorf("apportion(%d, %v): got %v want %v", tt.total, tt.weights, got, tt.want)
			}
		})
	}
}

func TestHistogram(t *testing.T) {
	const us = 1e-6
	tests := []struct {
		name    string
		latency map[int]uint64 // bucket index -> count
		want    map[float64]uint64
		count   uint64
		sum     float64
	}{
		{
			name:    "empty",
			latency: nil,
			want:    map[float64]uint64{1 * us: 0, 1024 * us: 0, (1 << 22) * us: 0},
		},
		{
			// bucket 0: under 1 µs; bucket 3: [4, 8) µs.
			name:    "cumulative",
			latency: map[int]uint64{0: 1, 3: 10, 10: 2},
			want: map[float64]uint64{
				1 * us: 1, 2 * us: 1, 4 * us: 1, 8 * us: 11, 512 * us: 11, 1024 * us: 13, (1 << 22) * us: 13,
			},
			count: 13,
			sum:   1*0.5*us + 10*6*us + 2*768*us,
		},
		{
			// the last bucket is open-ended: only +Inf holds it.
			name:    "over the last bound",
			latency: map[int]uint64{23: 4},
			want:    map[float64]uint64{(1 << 22) * us: 0},
			count:   4,
			sum:     4 * (1 << 22) * us,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s onaccess.Snapshot
			for i, n := range tt.latency {
				s.Latency[i] = n
			}
			fams := scrape(t, Sources{Loop: func() onaccess.Snapshot { return s }})
			mf := fams["vigil_decision_seconds"]
			if mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
				t.Fatalf("vigil_decision_seconds: got %v want a histogram", mf)
			}
			h := mf.GetMetric()[0].GetHistogram()
			buckets := h.GetBucket()
			// One bound per bucket but the open-ended last, then +Inf.
			if len(buckets) != len(s.Latency) {
				t.Fatalf("buckets: got %d want %d", len(buckets), len(s.Latency))
			}
			if inf := buckets[len(buckets)-1]; !math.IsInf(inf.GetUpperBound(), 1) || inf.GetCumulativeCount() != tt.count {
				t.Errorf("last bucket: got le=%g %d want le=+Inf %d", inf.GetUpperBound(), inf.GetCumulativeCount(), tt.count)
			}
			buckets = buckets[:len(buckets)-1]
			prev := uint64(0)
			for i, b := range buckets {
				if le, want := b.GetUpperBound(), math.Ldexp(us, i); math.Abs(le-want) > want*1e-9 {
					t.Errorf("bucket %d: got le=%g want %g", i, le, want)
				}
				if b.GetCumulativeCount() < prev {
					t.Errorf("bucket %d: got %d, below the previous %d", i, b.GetCumulativeCount(), prev)
				}
				prev = b.GetCumulativeCount()
				for le, want := range tt.want {
					if math.Abs(b.GetUpperBound()-le) <= le*1e-9 && b.GetCumulativeCount() != want {
						t.Errorf("le=%g: got %d want %d", le, b.GetCumulativeCount(), want)
					}
				}
			}
			if h.GetSampleCount() != tt.count {
				t.Errorf("count: got %d want %d", h.GetSampleCount(), tt.count)
			}
			if math.Abs(h.GetSampleSum()-tt.sum) > 1e-12 {
				t.Errorf("sum: got %g want %g", h.GetSampleSum(), tt.sum)
			}
		})
	}
}

// Derived series never go down while the loop's counters do not restart.
func TestVerdictsMonotonic(t *testing.T) {
	snaps := []onaccess.Snapshot{
		{Events: 10, Allowed: 10},          // clean 10
		{Events: 11, Allowed: 11},          // clean 11: Self not yet counted
		{Events: 11, Allowed: 11, Self: 1}, // clean 10 from the counters
		{Events: 13, Allowed: 13, Self: 1}, // clean 12
		{Events: 2, Allowed: 2},            // restarted: clean 2
	}
	want := []float64{10, 11, 11, 12, 2}
	i := 0
	reg := NewRegistry(Sources{Loop: func() onaccess.Snapshot { return snaps[i] }})
	for ; i < len(snaps); i++ {
		fams := scrapeReg(t, reg)
		got, _ := value(fams, "vigil_verdicts_total", map[string]string{"verdict": "allow", "reason": "clean"})
		if got != want[i] {
			t.Errorf("scrape %d: got clean=%v want %v", i, got, want[i])
		}
	}
}

func TestOptionalSources(t *testing.T) {
	tests := []struct {
		name    string
		src     Sources
		present []string
		absent  []string
	}{
		{
			name:    "none",
			src:     Sources{},
			present: []string{"go_goroutines"},
			absent:  []string{"vigil_events_total", "vigil_ready", "vigil_hook_info", "vigil_engine_info", "vigil_engine_up"},
		},
		{
			name: "nothing loaded yet",
			src: Sources{
				Hook:   func() string { return "" },
				Engine: func() (string, string) { return "", "" },
				Ready:  func() bool { return false },
			},
			present: []string{"vigil_ready"},
			absent:  []string{"vigil_hook_info", "vigil_engine_info", "vigil_verdicts_total"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fams := scrape(t, tt.src)
			for _, n := range tt.present {
				if fams[n] == nil {
					t.Errorf("%s: got absent want present", n)
				}
			}
			for _, n := range tt.absent {
				if fams[n] != nil {
					t.Errorf("%s: got present want absent", n)
				}
			}
		})
	}
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, NewRegistry(fakeSources())); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	text := buf.String()
	for _, line := range []string{
		"# HELP vigil_verdicts_total ",
		"# TYPE vigil_verdicts_total counter",
		"# TYPE vigil_decision_seconds histogram",
		`vigil_decision_seconds_bucket{le="+Inf"} 11`,
		`vigil_ready 1`,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("exposition lacks %q", line)
		}
	}
	fams := parse(t, text)
	if got, _ := value(fams, "vigil_watched_dirs", map[string]string{}); got != 345 {
		t.Errorf("vigil_watched_dirs: got %v want 345", got)
	}
}
