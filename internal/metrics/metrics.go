package metrics

import (
	"math/bits"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vigilsec/vigil/internal/onaccess"
	"github.com/vigilsec/vigil/internal/watch"
)

// Sources are the daemon's readers, called at scrape time only, so that
// the permission loop counts nothing twice. A nil func leaves its metrics
// out. Each must be safe to call from any goroutine and return zero
// values while nothing is loaded.
type Sources struct {
	Loop       func() onaccess.Snapshot
	QueueDepth func() int
	Dirs       func() int
	Manager    func() watch.ManagerStats
	Alerts     func() (written, dropped, failed uint64)
	Cache      func() (hits, misses uint64)
	Hook       func() string                 // "" leaves vigil_hook_info out
	Engine     func() (name, version string) // "" name leaves vigil_engine_info out
	EngineDown func() bool                   // true while the engine cannot scan
	Ready      func() bool
}

// Verdict reasons. Every permission event is answered for exactly one.
const (
	reasonClean     = "clean"
	reasonInfected  = "infected"
	reasonAlert     = "alert"
	reasonExcluded  = "excluded"
	reasonCache     = "cache"
	reasonError     = "error"
	reasonTimeout   = "timeout"
	reasonQueueFull = "queue_full"
	reasonSelf      = "self"
	reasonSkipped   = "skipped"
)

type verdictKey struct{ verdict, reason string }

// verdictKeys are the series of vigil_verdicts_total, all exported from
// the start so that rate() sees the first event.
var verdictKeys = []verdictKey{
	{"allow", reasonClean}, {"allow", reasonAlert}, {"allow", reasonExcluded},
	{"allow", reasonCache}, {"allow", reasonSelf}, {"allow", reasonSkipped},
	{"allow", reasonError}, {"allow", reasonTimeout}, {"allow", reasonQueueFull},
	{"deny", reasonInfected},
	{"deny", reasonError}, {"deny", reasonTimeout}, {"deny", reasonQueueFull},
}

// verdicts splits the loop's answers by verdict and reason. The loop
// counts reasons and verdicts separately, so:
//
//   - deny/infected is Blocked, allow/alert is Alerted, allow/self, cache,
//     excluded and skipped are Self, CacheHits, Excluded and Skipped;
//   - the only other denials are on_error ones, so Denied-Blocked of the
//     Errors were denied and the rest allowed;
//   - Errors splits into Timeouts, QueueFull and the rest (error); when
//     policies mix on_error values the allow/deny share of each of the
//     three is an estimate, in proportion to their sizes (exact when every
//     watch has the same on_error);
//   - allow/clean is what remains of Allowed.
//
// The fields are read one by one while the loop runs, so a snapshot may
// be off by the events in flight; differences saturate at zero.
func verdicts(s onaccess.Snapshot) map[verdictKey]uint64 {
	errs := s.Errors
	errDeny := min(sub(s.Denied, s.Blocked), errs)
	errAllow := errs - errDeny
	timeouts := min(s.Timeouts, errs)
	queueFull := min(s.QueueFull, errs-timeouts)
	other := errs - timeouts - queueFull
	deny := apportion(errDeny, []uint64{other, timeouts, queueFull})

	m := map[verdictKey]uint64{
		{"deny", reasonInfected}:   s.Blocked,
		{"deny", reasonError}:      deny[0],
		{"deny", reasonTimeout}:    deny[1],
		{"deny", reasonQueueFull}:  deny[2],
		{"allow", reasonError}:     other - deny[0],
		{"allow", reasonTimeout}:   timeouts - deny[1],
		{"allow", reasonQueueFull}: queueFull - deny[2],
		{"allow", reasonAlert}:     s.Alerted,
		{"allow", reasonSelf}:      s.Self,
		{"allow", reasonCache}:     s.CacheHits,
		{"allow", reasonExcluded}:  s.Excluded,
		{"allow", reasonSkipped}:   s.Skipped,
	}
	clean := s.Allowed
	for _, n := range []uint64{s.Alerted, s.Self, s.CacheHits, s.Excluded, s.Skipped, errAllow} {
		clean = sub(clean, n)
	}
	m[verdictKey{"allow", reasonClean}] = clean
	return m
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// apportion splits total (at most the sum of weights) in proportion to
// weights by largest remainder; no part exceeds its weight.
func apportion(total uint64, weights []uint64) []uint64 {
	parts := make([]uint64, len(weights))
	var sum uint64
	for _, w := range weights {
		sum += w
	}
	if sum == 0 || total == 0 {
		return parts
	}
	total = min(total, sum)
	rems := make([]uint64, len(weights))
	left := total
	for i, w := range weights {
		hi, lo := bits.Mul64(total, w)
		parts[i], rems[i] = bits.Div64(hi, lo, sum) // hi < sum since total <= sum
		left -= parts[i]
	}
	// left < len(weights); only parts with a remainder can grow, and at
	// least left of them have one.
	for ; left > 0; left-- {
		best := -1
		for i, r := range rems {
			if r > 0 && (best < 0 || r > rems[best]) {
				best = i
			}
		}
		parts[best]++
		rems[best] = 0
	}
	return parts
}

// latencyBounds are the upper bounds of the loop's latency buckets: bucket
// i counts decisions under 2^i µs; the last one is open-ended.
func latencyBounds(n int) []float64 {
	b := make([]float64, n-1)
	for i := range b {
		b[i] = float64(uint64(1)<<i) * float64(time.Microsecond) / float64(time.Second)
	}
	return b
}

// histogram turns the loop's power-of-two microsecond buckets into a
// cumulative Prometheus histogram in seconds. The loop keeps no sum, so
// the sum is estimated from each bucket's midpoint (its lower bound for
// the last, open-ended bucket).
func histogram(counts []uint64) (count uint64, sum float64, buckets map[float64]uint64) {
	bounds := latencyBounds(len(counts))
	buckets = make(map[float64]uint64, len(bounds))
	lower := 0.0
	for i, c := range counts {
		count += c
		if i < len(bounds) {
			buckets[bounds[i]] = count
			sum += float64(c) * (lower + bounds[i]) / 2
			lower = bounds[i]
		} else {
			sum += float64(c) * lower
		}
	}
	return count, sum, buckets
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("vigil_"+name, help, labels, nil)
}

var (
	descEvents = desc("events_total",
		"Events read from the fanotify permission group, by type: open, exec and access (permission events, each answered once), overflow (FAN_Q_OVERFLOW, events were lost), no_fd (the kernel could not hand the file over), close_write (a writer closed a file: a notification, its clean verdict dropped).",
		"type")
	descVerdicts = desc("verdicts_total",
		"Permission events answered, by verdict and reason. Reasons error, timeout and queue_full are on_error verdicts; their allow/deny split is estimated when watches mix on_error values.",
		"verdict", "reason")
	descBlocked     = desc("blocked_total", "Opens denied because the file was infected.")
	descAlerted     = desc("alerted_total", "Infected files allowed and reported by an alert watch.")
	descScans       = desc("scans_total", "Files handed to the scan engine.")
	descCacheHits   = desc("cache_hits_total", "Permission events answered from the user-space clean cache (the kernel's ignore mark was missing). Opens that kernel ignore marks let through never reach vigil and are not counted.")
	descLookups     = desc("cache_lookups_total", "Lookups in the user-space clean cache, by result.", "result")
	descIgnoreErrs  = desc("ignore_mark_errors_total", "Kernel ignore marks for clean files that could not be placed.")
	descEngineErrs  = desc("engine_errors_total", "Events decided by on_error because the file or the scan failed, other than timeouts and a full queue.")
	descTimeouts    = desc("timeouts_total", "Events decided by on_error because the scan missed its deadline.")
	descQueueFull   = desc("queue_full_total", "Events decided by on_error because the scan queue was full.")
	descRespondErrs = desc("respond_errors_total", "Answers the kernel refused.")
	descQueueDepth  = desc("queue_depth", "Events waiting for a scan worker.")
	descLatency     = desc("decision_seconds", "Time from reading a permission event to answering it, for events that needed a scan. The sum is estimated from bucket midpoints.")
	descDirs        = desc("watched_dirs", "Directories carrying a fanotify mark.")
	descDirEvents   = desc("dir_events_total", "Directory events (created, renamed, removed) handled by the watch manager.")
	descResyncs     = desc("resyncs_total", "Re-walks of watched trees after lost directory events.")
	descTrackErrs   = desc("track_errors_total", "Directories a directory-event source (eBPF, inotify, fanotify) could not track, counted once per source, but for those removed or renamed before they could be; the log says why (inotify's and fanotify's limits at warning level, once; the others at debug level).")
	descStalls      = desc("walk_stalls_total", "Directory walks left to go on behind because a filesystem did not answer.")
	descStalled     = desc("walks_stalled", "Directory walks now waiting on a filesystem that does not answer.")
	descAlerts      = desc("alerts_total", "Alert records, by result: written, dropped (queue full or closed), failed (write error).", "result")
	descHook        = desc("hook_info", "The eBPF hook rung tracing directories.", "hook")
	descEngine      = desc("engine_info", "The scan engine and its signature database version.", "engine", "version")
	descReady       = desc("ready", "1 once every watch is marked and events are answered.")
	descEngineUp    = desc("engine_up", "0 while the scan engine cannot scan (clamd does not answer PING): on_error decides at once.")
)

// collector reads Sources at each scrape.
type collector struct {
	src Sources

	// The verdict split is derived from several counters read apart, so
	// it is kept monotonic here: a counter must never go down.
	mu         sync.Mutex
	lastEvents uint64
	last       map[verdictKey]uint64
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descEvents, descVerdicts, descBlocked, descAlerted, descScans, descCacheHits,
		descLookups, descIgnoreErrs, descEngineErrs, descTimeouts, descQueueFull,
		descRespondErrs, descQueueDepth, descLatency, descDirs, descDirEvents, descResyncs,
		descTrackErrs, descStalls, descStalled, descAlerts, descHook, descEngine, descEngineUp, descReady,
	} {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Loop != nil {
		c.collectLoop(ch, c.src.Loop())
	}
	if c.src.QueueDepth != nil {
		gauge(ch, descQueueDepth, float64(c.src.QueueDepth()))
	}
	if c.src.Cache != nil {
		hits, misses := c.src.Cache()
		counter(ch, descLookups, hits, "hit")
		counter(ch, descLookups, misses, "miss")
	}
	if c.src.Dirs != nil {
		gauge(ch, descDirs, float64(c.src.Dirs()))
	}
	if c.src.Manager != nil {
		ms := c.src.Manager()
		counter(ch, descDirEvents, ms.Events)
		counter(ch, descResyncs, ms.Resyncs)
		counter(ch, descTrackErrs, ms.TrackErrors)
		counter(ch, descStalls, ms.Stalls)
		gauge(ch, descStalled, float64(ms.Stalled))
	}
	if c.src.Alerts != nil {
		written, dropped, failed := c.src.Alerts()
		counter(ch, descAlerts, written, "written")
		counter(ch, descAlerts, dropped, "dropped")
		counter(ch, descAlerts, failed, "failed")
	}
	if c.src.Hook != nil {
		if h := c.src.Hook(); h != "" {
			gauge(ch, descHook, 1, h)
		}
	}
	if c.src.Engine != nil {
		if name, version := c.src.Engine(); name != "" {
			gauge(ch, descEngine, 1, name, version)
		}
	}
	if c.src.EngineDown != nil {
		gauge(ch, descEngineUp, boolValue(!c.src.EngineDown()))
	}
	if c.src.Ready != nil {
		gauge(ch, descReady, boolValue(c.src.Ready()))
	}
}

func (c *collector) collectLoop(ch chan<- prometheus.Metric, s onaccess.Snapshot) {
	counter(ch, descEvents, s.Opens, "open")
	counter(ch, descEvents, s.Execs, "exec")
	counter(ch, descEvents, s.Accesses, "access")
	counter(ch, descEvents, s.Overflows, "overflow")
	counter(ch, descEvents, s.NoFd, "no_fd")
	counter(ch, descEvents, s.CloseWrites, "close_write")

	v := c.monotonic(s.Events, verdicts(s))
	for _, k := range verdictKeys {
		counter(ch, descVerdicts, v[k], k.verdict, k.reason)
	}

	counter(ch, descBlocked, s.Blocked)
	counter(ch, descAlerted, s.Alerted)
	counter(ch, descScans, s.Scans)
	counter(ch, descCacheHits, s.CacheHits)
	counter(ch, descIgnoreErrs, s.IgnoreErrors)
	counter(ch, descEngineErrs, sub(sub(s.Errors, s.Timeouts), s.QueueFull))
	counter(ch, descTimeouts, s.Timeouts)
	counter(ch, descQueueFull, s.QueueFull)
	counter(ch, descRespondErrs, s.RespondErrors)

	count, sum, buckets := histogram(s.Latency[:])
	ch <- prometheus.MustNewConstHistogram(descLatency, count, sum, buckets)
}

// monotonic returns, per series, the largest value exported so far; a
// drop in events means the counters started again.
func (c *collector) monotonic(events uint64, cur map[verdictKey]uint64) map[verdictKey]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || events < c.lastEvents {
		c.last = make(map[verdictKey]uint64, len(cur))
	}
	c.lastEvents = events
	out := make(map[verdictKey]uint64, len(cur))
	for k, n := range cur {
		n = max(n, c.last[k])
		c.last[k] = n
		out[k] = n
	}
	return out
}

// NewRegistry returns a registry holding vigil's metrics, read from src at
// each scrape, and the Go runtime and process collectors.
func NewRegistry(src Sources) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		&collector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}
