package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var writeSection = section{
	name:  "write",
	title: "writers: clean 4 KiB files rewritten under vigil (each close a FAN_CLOSE_WRITE), cost vs no monitor",
	needs: []need{needRoot, needFanotify, needVigil},
	run:   runWrite,
}

// writeCase is a daemon writers face: a watch in mode, asking for opens
// and execs (the default), or for execs alone, so that a writer's open
// raises no permission event and its close is all that reaches vigil.
type writeCase struct {
	mode     string // "tree" or "filesystem"
	execOnly bool
}

func (c writeCase) String() string {
	if c.execOnly {
		return c.mode + ` mode, on = ["exec"] (only the closes reach vigil)`
	}
	return c.mode + " mode"
}

func (c writeCase) slug() string {
	if c.execOnly {
		return c.mode + "-exec"
	}
	return c.mode
}

func (c writeCase) policy(watched string) string {
	if !c.execOnly {
		return watchBlock(watched, c.mode)
	}
	return fmt.Sprintf("watch %q {\n  mode = %q\n  on   = [\"exec\"]\n}\n", watched, c.mode)
}

// writeCases are run on every filesystem of raceFilesystems; the
// exec-only ones on the first (tmpfs) alone, to keep the section short.
var writeCases = []writeCase{
	{mode: "tree"},
	{mode: "filesystem"},
	{mode: "tree", execOnly: true},
	{mode: "filesystem", execOnly: true},
}

// writeResult is what one case on one filesystem gave.
type writeResult struct {
	fs                string
	c                 writeCase
	base, with        []pass
	daemons           int
	closes            uint64 // writers' closes under vigil
	hasCloseWrites    bool   // the daemon exports close_writes
	reached           uint64 // close_writes counted by the daemon
	events, overflows uint64
	cpu               time.Duration
}

// runWrite mounts a tmpfs and an ext4 image of its own, writes a tree of
// 4 KiB files in each, and times writers rewriting every file (open
// O_WRONLY|O_TRUNC, write, close) with no monitor and under vigil, in
// tree mode (directory marks) and in filesystem mode (a mark on the
// filesystem the bench mounted, never another). Each close is a
// FAN_CLOSE_WRITE notification, which the daemon reads and acts on (drops
// the file's ignore mark and cached verdict); with the default watch the
// writer's open is a permission event too. As in latency.go, a daemon is
// started afresh in each round, between passes with no monitor.
func runWrite(e *env) ([]row, error) {
	dirs, files, rounds, reps := 50, 100, 2, 3
	if e.quick {
		dirs, rounds, reps = 10, 1, 2
	}
	n := dirs * files
	m := e.newMounts()
	defer m.close()

	var results []writeResult
	for i, fs := range raceFilesystems {
		mnt, err := fs.mountChecked(m, n)
		if err != nil {
			return nil, err
		}
		watched := filepath.Join(mnt, "w")
		e.progress("write: %s: writing %s files of 4 KiB", fs.name, group(int64(n)))
		paths, err := outsideTree(watched, dirs, files)
		if err != nil {
			return nil, err
		}
		w, err := newWriter(paths)
		if err != nil {
			return nil, err
		}
		for _, c := range writeCases {
			if c.execOnly && i > 0 {
				continue
			}
			e.progress("write: %s, %s: %d rounds", fs.name, c, rounds)
			res, err := writeRounds(e, w, fs.name, c, watched, rounds, reps)
			if err != nil {
				return nil, err
			}
			results = append(results, res)
		}
	}
	return writeRows(results, n), nil
}

// writeRounds runs rounds of: reps passes with no monitor, a daemon
// started, reps passes under it, the daemon stopped; then reps passes
// with no monitor again.
func writeRounds(e *env, w *writer, fs string, c writeCase, watched string, rounds, reps int) (writeResult, error) {
	res := writeResult{fs: fs, c: c, hasCloseWrites: true}
	passes := func(dst []pass) []pass { return e.passes(dst, reps, w.pass) }
	for round := range rounds {
		res.base = passes(res.base)
		if err := e.stopped(); err != nil {
			return res, err
		}
		d, err := e.startVigil(fmt.Sprintf("write-%s-%s-%d", fs, c.slug(), round), c.policy(watched))
		if err != nil {
			return res, err
		}
		res.daemons++
		err = writeUnder(e, d, w, &res, passes)
		d.stop()
		if err != nil {
			return res, err
		}
	}
	res.base = passes(res.base)
	if err := e.stopped(); err != nil {
		return res, err
	}
	for _, p := range slices.Concat(res.base, res.with) {
		if p.err != nil {
			return res, p.err
		}
	}
	return res, nil
}

// writeUnder runs the passes under the daemon d and adds what its
// counters and CPU time say to res.
func writeUnder(e *env, d *daemonProc, w *writer, res *writeResult, passes func([]pass) []pass) error {
	c0, err := d.counters()
	if err != nil {
		return err
	}
	cpu0, err := cpuTime(d.pid())
	if err != nil {
		return err
	}
	before := len(res.with)
	res.with = passes(res.with)
	closes := uint64(len(res.with)-before) * uint64(len(w.ptrs))
	c1, err := settleCloses(e, d, c0["close_writes"]+closes)
	if err != nil {
		return err
	}
	cpu1, err := cpuTime(d.pid())
	if err != nil {
		return err
	}
	_, ok := c1["close_writes"]
	res.hasCloseWrites = res.hasCloseWrites && ok
	res.closes += closes
	res.reached += c1["close_writes"] - c0["close_writes"]
	res.events += c1["events"] - c0["events"]
	res.overflows += c1["overflows"] - c0["overflows"]
	res.cpu += cpu1 - cpu0
	return nil
}

// settleCloses returns the daemon's counters once it has counted want
// close-writes, or once the count has not moved for 200 ms (a daemon
// that does not count them, or events merged or lost), within 5 s: the
// notifications are read after the writers' closes have returned.
func settleCloses(e *env, d *daemonProc, want uint64) (map[string]uint64, error) {
	var (
		last  uint64
		moved = time.Now()
		end   = moved.Add(5 * time.Second)
	)
	for {
		c, err := d.counters()
		if err != nil {
			return nil, err
		}
		got := c["close_writes"]
		if got >= want || time.Now().After(end) || time.Since(moved) > 200*time.Millisecond {
			return c, nil
		}
		if got != last {
			last, moved = got, time.Now()
		}
		if err := e.stopped(); err != nil {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func writeRows(results []writeResult, n int) []row {
	nFiles := group(int64(n))
	var (
		rows                      []row
		reached, lost, overflowed []string
		overflows                 uint64
		closesTotal, reachedTotal uint64
		counted                   = true
	)
	for _, r := range results {
		base, with := medianTotal(r.base), medianTotal(r.with)
		rt := float64(with) / float64(base)
		perFile := func(d time.Duration) time.Duration { return d / time.Duration(n) }
		measured := fmt.Sprintf("%s vs %s per file (%s; median pass %s vs %s, no monitor's passes %s); with vigil p50 / p99 %s",
			micros(perFile(with)), micros(perFile(base)), ratio(rt), millis(with), millis(base),
			passRange(r.base), p50p99(allLat(r.with)))
		measured += fmt.Sprintf("; %s permission events; daemon CPU %s (%s per file rewritten)",
			group(int64(r.events)), millis(r.cpu), micros(r.cpu/time.Duration(max(r.closes, 1))))
		rows = append(rows, row{
			figure: fmt.Sprintf("writers, %s, %s: %s clean 4 KiB files rewritten (open O_WRONLY|O_TRUNC, write 4 KiB, close), %d passes in %d rounds (a daemon each): time per file with vigil vs no monitor",
				r.c, r.fs, nFiles, len(r.with), r.daemons),
			aim:      "report",
			measured: measured,
		})
		label := r.fs + " " + r.c.slug()
		counted = counted && r.hasCloseWrites
		closesTotal += r.closes
		reachedTotal += r.reached
		reached = append(reached, fmt.Sprintf("%s %s / %s", label, group(int64(r.reached)), group(int64(r.closes))))
		if r.reached < r.closes {
			lost = append(lost, fmt.Sprintf("%s %s", label, group(int64(r.closes-r.reached))))
		}
		overflows += r.overflows
		overflowed = append(overflowed, fmt.Sprintf("%s %d", label, r.overflows))
	}
	cell := strings.Join(reached, ", ")
	switch {
	case !counted:
		cell = "not counted: this vigil exports no close_writes counter"
	case reachedTotal == 0 && closesTotal > 0:
		cell += " (the daemon counted none)"
	case len(lost) > 0:
		cell += "; not counted (merged in the queue, lost, or read late): " + strings.Join(lost, ", ")
	}
	rows = append(rows,
		row{
			figure:   "writers: close-write notifications that reached the daemon (its close_writes counter), of the writers' closes under vigil",
			aim:      "report",
			measured: cell,
		},
		row{
			figure:   "writers: fanotify queue overflows meanwhile (each loses notifications, close-writes among them; the daemon's overflows counter)",
			aim:      "0",
			measured: fmt.Sprintf("%s (%s)", group(int64(overflows)), strings.Join(overflowed, ", ")),
			met:      atMost(float64(overflows), 0),
		})
	return rows
}

// passRange formats the shortest and longest of passes, e.g. "11.9–12.4
// ms": the machine's drift over the case.
func passRange(ps []pass) string {
	ts := sortedCopy(totals(ps))
	if len(ts) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s–%s", strings.TrimSuffix(millis(ts[0]), " ms"), millis(ts[len(ts)-1]))
}

// writer rewrites files with raw system calls on paths converted once,
// as reader reads them: no allocation in the timed loop.
type writer struct {
	*reader
	data []byte
}

func newWriter(paths []string) (*writer, error) {
	r, err := newReader(paths)
	if err != nil {
		return nil, err
	}
	return &writer{reader: r, data: randomBytes(latencyFileSize)}, nil
}

// pass rewrites every file once, timing each.
func (w *writer) pass() pass { return timePass(w.ptrs, w.paths, "rewrite", w.writeFile) }

// writeFile truncates the file and writes w.data in it, as a shell's `>`
// does; the close is the FAN_CLOSE_WRITE.
func (w *writer) writeFile(path *byte) error {
	fd, err := openRaw(path, unix.O_WRONLY|unix.O_TRUNC)
	if err != nil {
		return err
	}
	for b := w.data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil && err != unix.EINTR {
			unix.Close(fd)
			return fmt.Errorf("write: %w", err)
		}
		b = b[max(n, 0):]
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
