package main

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/watch"
)

var watchSection = section{
	name:  "watch",
	title: "watch setup, directories/s",
	needs: []need{needRoot, needFanotify},
	run:   runWatch,
}

// treeSizes are the directory trees of the watch and memory sections,
// smallest first; the full run ends at the design's 100,000.
func (e *env) treeSizes() []int {
	if e.quick {
		return []int{2000, 5000}
	}
	return []int{10000, 50000, designDirs}
}

// watchRef is clamonacc's rate as the design measured it.
const watchRef = "~35,000 (at 50,000)"

// runWatch times watch.Place over each tree with a notification-class
// group, then reads the daemon's own "watches placed" figure.
func runWatch(e *env) ([]row, error) {
	reps := 3
	if e.quick {
		reps = 1
	}
	var rows []row
	placeRates, runRates := map[int]float64{}, map[int]float64{}
	floors := map[int]floor{}
	for _, n := range e.treeSizes() {
		root, err := e.dirTree(n)
		if err != nil {
			return rows, err
		}
		var best watch.Stats
		var low floor
		for range reps {
			if err := e.stopped(); err != nil {
				return rows, err
			}
			st, err := placeOnce(root)
			if err != nil {
				return rows, err
			}
			if best.Elapsed == 0 || st.Elapsed < best.Elapsed {
				best = st
			}
			dirs, elapsed, err := floorOnce(root)
			if err != nil {
				return rows, err
			}
			if low.elapsed == 0 || elapsed < low.elapsed {
				low = floor{dirs, elapsed}
			}
		}
		floors[n] = low
		rate := best.Rate()
		placeRates[n] = rate
		rows = append(rows, row{
			figure:   fmt.Sprintf("watch setup, directories/s (%s-directory tree), watch.Place, best of %d", group(int64(n)), reps),
			aim:      watchAim(n),
			measured: fmt.Sprintf("%s (%s dirs in %s)", group(int64(rate)), group(int64(best.Dirs)), millis(best.Elapsed)),
			ref:      e.watchPeerRef(n),
			met:      watchMet(n, rate),
		})
	}
	for _, n := range e.treeSizes() {
		figure := fmt.Sprintf("watch setup by `vigil run` (its \"watches placed\" log: marked, and tracked by the eBPF tracer), %s-directory tree, best of %d starts", group(int64(n)), reps)
		if reason := e.unmet([]need{needVigil}); reason != "" {
			rows = append(rows, row{figure: figure, measured: "skipped: " + reason})
			continue
		}
		p, err := e.placement(n)
		if err != nil {
			return rows, err
		}
		rate := float64(p.dirs) / p.elapsed.Seconds()
		runRates[n] = rate
		rows = append(rows, row{
			figure:   figure,
			aim:      watchAim(n),
			measured: fmt.Sprintf("%s (%s dirs in %s%s%s)", group(int64(rate)), group(int64(p.dirs)), millis(p.elapsed), medianNote(p), crossNote(p)),
			ref:      e.watchPeerRef(n),
			met:      watchMet(n, rate),
		})
	}
	rows = append(rows, floorRows(floors, placeRates, runRates, reps)...)
	rows = append(rows, e.watchRatios("watch.Place", placeRates)...)
	rows = append(rows, e.watchRatios("`vigil run`", runRates)...)
	if reason := e.unmet([]need{needVigil}); reason == "" {
		r, err := e.startupRow(reps)
		if err != nil {
			return rows, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// floor is the best of floorOnce's walks over one tree.
type floor struct {
	dirs    int
	elapsed time.Duration
}

func (f floor) rate() float64 { return float64(f.dirs) / f.elapsed.Seconds() }

// floorRows give the kernel's floor on each tree, and how near the walks
// came to it.
func floorRows(floors map[int]floor, placeRates, runRates map[int]float64, reps int) []row {
	var rows []row
	for _, n := range slices.Sorted(maps.Keys(floors)) {
		f := floors[n]
		near := fmt.Sprintf("; watch.Place at %.0f%% of it", 100*placeRates[n]/f.rate())
		if r, ok := runRates[n]; ok {
			near += fmt.Sprintf(", `vigil run` at %.0f%%", 100*r/f.rate())
		}
		rows = append(rows, row{
			figure: fmt.Sprintf("watch setup floor on this machine, directories/s (%s-directory tree): only what any walk must do (list each directory with subdirectories; mark, and statx to tell a leaf, every directory), %d threads, best of %d",
				group(int64(n)), runtime.NumCPU(), reps),
			aim:      "report",
			measured: fmt.Sprintf("%s (%s dirs in %s)%s", group(int64(f.rate())), group(int64(f.dirs)), millis(f.elapsed), near),
		})
	}
	return rows
}

// startupRow times `vigil run` on an empty tree from exec until READY=1:
// what a start or restart costs besides the walk (the policy and the
// bench's database loaded, the eBPF hook chosen down its ladder, the
// sources started).
func (e *env) startupRow(reps int) (row, error) {
	root, err := e.dir("empty")
	if err != nil {
		return row{}, err
	}
	var times []time.Duration
	for i := range reps {
		if err := e.stopped(); err != nil {
			return row{}, err
		}
		d, err := e.startDaemon(fmt.Sprintf("empty-%d", i), root)
		if err != nil {
			return row{}, err
		}
		d.stop()
		times = append(times, d.ready)
	}
	slices.Sort(times)
	measured := millis(times[0])
	if len(times) > 1 {
		measured += fmt.Sprintf(" (median %s)", millis(times[len(times)/2]))
	}
	ref := "–"
	if e.peer != nil && e.peer.startup > 0 {
		ref = fmt.Sprintf("clamonacc alone, its clamd started before: %s", millis(e.peer.startup))
	}
	return row{
		figure:   fmt.Sprintf("`vigil run` start-up on an empty tree, exec to READY=1 (1,000-signature database), best of %d", reps),
		aim:      "report",
		measured: measured,
		ref:      ref,
	}, nil
}

// watchAimDirs is the smallest tree the set-up aim is for: on a smaller
// one the start and end of the walk weigh more than its directories.
const watchAimDirs = 50000

func watchAim(n int) string {
	if n < watchAimDirs {
		return "report (the aim is at 50,000 and 100,000)"
	}
	return "≥ 350,000"
}

func watchMet(n int, rate float64) verdict {
	if n < watchAimDirs {
		return noAim
	}
	return atLeast(rate, 350000)
}

// placeOnce marks every directory below root in a new group. A
// notification group with FAN_OPEN costs the kernel what a permission mark
// costs, and can never block an open.
func placeOnce(root string) (watch.Stats, error) {
	g, err := fanotify.Init(unix.FAN_CLASS_NOTIF|unix.FAN_UNLIMITED_MARKS, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return watch.Stats{}, fmt.Errorf("notification group: %w", err)
	}
	defer g.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := watch.Place(ctx, notifyMarker{g}, []watch.Root{{Path: root, Recursive: true, Events: policy.EventOpen}}, nil)
	if err != nil {
		return st, err
	}
	if st.Errors > 0 || st.Missing > 0 {
		return st, fmt.Errorf("place %s: %d errors, %d missing", root, st.Errors, st.Missing)
	}
	return st, nil
}

type notifyMarker struct{ g *fanotify.Group }

func (m notifyMarker) MarkDir(d watch.Dir, _ policy.Events) error {
	if err := m.g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, d.Fd, d.Name); err != nil {
		return fmt.Errorf("mark %s: %w", d.Path, err)
	}
	return nil
}

// medianNote gives the median start's rate, when there were several.
func medianNote(p placement) string {
	if p.starts < 2 {
		return ""
	}
	return fmt.Sprintf("; median of %d: %s/s", p.starts, group(int64(float64(p.dirs)/p.median.Seconds())))
}

// crossNote says when the inotify cross-check caught up, if there was one.
func crossNote(p placement) string {
	if p.cross == 0 {
		return "; inotify the primary source"
	}
	return fmt.Sprintf("; inotify's cross-check in the background %s later", millis(p.cross))
}

// placement is what daemons started on a tree of directories showed.
type placement struct {
	dirs      int
	elapsed   time.Duration // the fastest start's
	median    time.Duration // of all the starts'
	starts    int
	cross     time.Duration // the fastest start's, from "watches placed" to the cross-check's end; 0 without one
	rss, peak int64         // the first start's
}

// placement starts vigil on the n-directory tree three times (once with
// -quick), as the watch.Place row repeats its walk: a start-up is a few
// hundred milliseconds, which this 2-vCPU machine's neighbours can stretch
// by a tenth. Each start reads the placement figure and the memory once
// ready, and stops the daemon. Done once per tree and shared by the watch
// and memory sections.
func (e *env) placement(n int) (placement, error) {
	e.mu.Lock()
	p, ok := e.memo[n]
	e.mu.Unlock()
	if ok {
		return p, nil
	}
	root, err := e.dirTree(n)
	if err != nil {
		return p, err
	}
	reps := 3
	if e.quick {
		reps = 1
	}
	var times []time.Duration
	for i := range reps {
		if err := e.stopped(); err != nil {
			return p, err
		}
		e.progress("starting vigil on the %s-directory tree (%d of %d)", group(int64(n)), i+1, reps)
		q, err := e.startOnce(n, root, i)
		if err != nil {
			return p, err
		}
		times = append(times, q.elapsed)
		switch {
		case i == 0:
			p = q
		case q.elapsed < p.elapsed:
			p.dirs, p.elapsed, p.cross = q.dirs, q.elapsed, q.cross
		}
	}
	slices.Sort(times)
	p.median, p.starts = times[len(times)/2], len(times)
	e.mu.Lock()
	e.memo[n] = p
	e.mu.Unlock()
	return p, nil
}

// startOnce starts vigil on root, waits for its cross-check, and reads
// its figures.
func (e *env) startOnce(n int, root string, i int) (placement, error) {
	var p placement
	d, err := e.startDaemon(fmt.Sprintf("dirs-%d-%d", n, i), root)
	if err != nil {
		return p, err
	}
	defer d.stop()
	// Memory once inotify, the eBPF tracer's cross-check, has caught up
	// in the background: the daemon as it then runs.
	if err := d.waitCrossCheck(); err != nil {
		return p, err
	}
	if p.rss, p.peak, err = d.rss(); err != nil {
		return p, err
	}
	if p.dirs, p.elapsed, err = d.placed(); err != nil {
		return p, err
	}
	if _, cross, err := d.crossChecked(); err == nil {
		p.cross = cross // absent when inotify is the primary source
	}
	if p.dirs < n {
		return p, fmt.Errorf("vigil placed %d directories of %d", p.dirs, n)
	}
	return p, nil
}
