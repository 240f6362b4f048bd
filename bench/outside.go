package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan/clamav"
)

var outsideSection = section{
	name:  "outside",
	title: "filesystem mode, ignore_out_of_scope: out-of-scope opens, and the `mv`-in race it opens",
	needs: []need{needRoot, needFanotify, needVigil},
	run:   runOutside,
}

// runOutside mounts a tmpfs with a watched directory (filesystem mode)
// and a tree of 4 KiB files beside it, out of scope. (a) It times
// open+read+close of those files with no monitor, then with the daemon
// and the setting off (every open reaches vigil) and on (the first open
// in a directory ignore-marks it, re-opens never reach vigil). (b) With
// the setting on, a tree with EICAR is built outside, the file opened
// once (its directory ignore-marked), the tree `mv`-ed in and the file
// read at once: a read that succeeds is a miss, the window in which the
// rename watcher has not yet removed the mark.
func runOutside(e *env) ([]row, error) {
	dirs, files, reps, trials := 100, 100, 3, 1000
	if e.quick {
		dirs, reps, trials = 10, 2, 100
	}
	m := e.newMounts()
	defer m.close()
	mnt, err := m.tmpfs(512)
	if err != nil {
		return nil, err
	}
	watched := filepath.Join(mnt, "w")
	if err := os.Mkdir(watched, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", watched, err)
	}
	n := dirs * files
	e.progress("outside: writing %s files of 4 KiB out of scope", group(int64(n)))
	paths, err := outsideTree(filepath.Join(mnt, "out"), dirs, files)
	if err != nil {
		return nil, err
	}
	r, err := newReader(paths)
	if err != nil {
		return nil, err
	}
	var base, off, on []pass
	passes := func(dst []pass) []pass { return e.passes(dst, reps, r.pass) }
	base = passes(base)

	// Setting off: every open is a round trip, first or not.
	d, err := e.startVigil("outside-off", watchBlock(watched, "filesystem"))
	if err != nil {
		return nil, err
	}
	r.pass()
	c0, err := d.counters()
	if err == nil {
		off = passes(off)
	}
	c1, err2 := d.counters()
	d.stop()
	if err = errors.Join(err, err2); err != nil {
		return nil, err
	}
	offEvents := c1["events"] - c0["events"]

	// Setting on: the first pass marks every directory, re-opens are quiet.
	d, err = startOutsideOn(e, "outside-on", watched)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	r.pass()
	placed, err := waitPlaced(e, d, dirs)
	if err != nil {
		return nil, err
	}
	c0, err = d.counters()
	if err != nil {
		return nil, err
	}
	on = passes(on)
	c1, err = d.counters()
	if err != nil {
		return nil, err
	}
	onEvents := c1["events"] - c0["events"]
	base = passes(base)
	for _, p := range append(append(append([]pass(nil), base...), off...), on...) {
		if p.err != nil {
			return nil, p.err
		}
	}

	// (b) the race, with the same daemon.
	e.progress("outside: race, %s trials of mv-in of an ignore-marked tree", group(int64(trials)))
	misses, never, windows, err := outsideRace(e, d, filepath.Join(mnt, "staging"), watched, trials)
	if err != nil {
		return nil, err
	}

	baseTotal := medianTotal(base)
	offRatio := float64(medianTotal(off)) / float64(baseTotal)
	onRatio := float64(medianTotal(on)) / float64(baseTotal)
	nFiles := group(int64(n))
	raceCell := fmt.Sprintf("%s / %s (%s)", group(int64(misses)), group(int64(trials)), percent(misses, trials))
	if never > 0 {
		raceCell += fmt.Sprintf("; %d files still readable once the daemon settled", never)
	}
	windowCell := "no miss"
	if len(windows) > 0 {
		windowCell = p50p99(windows)
	}
	return []row{
		{
			figure:   fmt.Sprintf("%s out-of-scope 4 KiB files re-opened, filesystem mode, ignore_out_of_scope off, cost vs no monitor", nFiles),
			aim:      "report",
			measured: fmt.Sprintf("%s (%s vs %s; %s events reached vigil)", ratio(offRatio), millis(medianTotal(off)), millis(baseTotal), group(int64(offEvents))),
		},
		{
			figure:   fmt.Sprintf("%s out-of-scope 4 KiB files re-opened, filesystem mode, ignore_out_of_scope on, cost vs no monitor", nFiles),
			aim:      "report",
			measured: fmt.Sprintf("%s (%s vs %s; %s events reached vigil; %d directories ignore-marked)", ratio(onRatio), millis(medianTotal(on)), millis(baseTotal), group(int64(onEvents)), placed),
		},
		{
			figure:   "race, ignore_out_of_scope on, tmpfs: tree with EICAR built outside, its directory ignore-marked, `mv`-ed in and the file read at once",
			aim:      "report",
			measured: raceCell,
		},
		{
			figure:   "race window, ignore_out_of_scope on: from `mv`'s return to the first denied read of a missed file, p50 / p99",
			aim:      "report",
			measured: windowCell,
		},
	}, nil
}

// outsideTree writes dirs directories of files 4 KiB files under root.
func outsideTree(root string, dirs, files int) ([]string, error) {
	data := randomBytes(latencyFileSize)
	var paths []string
	for i := range dirs {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("build tree: %w", err)
		}
		for j := range files {
			p := filepath.Join(d, fmt.Sprintf("f%03d", j))
			copy(data, fmt.Sprintf("%08d", len(paths)))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return nil, fmt.Errorf("build tree: %w", err)
			}
			paths = append(paths, p)
		}
	}
	return paths, nil
}

// startOutsideOn starts vigil with the setting on. startVigil writes a
// settings block of its own, so the setting is added to its policy file
// and the daemon reloaded, through `vigil reload`, the CLI contract.
func startOutsideOn(e *env, name, watched string) (*daemonProc, error) {
	d, err := e.startVigil(name, watchBlock(watched, "filesystem"))
	if err != nil {
		return nil, err
	}
	pol := d.cmd.Args[slices.Index(d.cmd.Args, "--policy")+1]
	b, err := os.ReadFile(pol)
	if err == nil {
		b = bytes.Replace(b, []byte("settings {"), []byte("settings {\n  ignore_out_of_scope = true"), 1)
		err = os.WriteFile(pol, b, 0o600)
	}
	if err == nil {
		if out, rerr := exec.Command(e.vigil, "reload", "--socket", d.socket).CombinedOutput(); rerr != nil {
			err = fmt.Errorf("vigil reload: %w: %s", rerr, bytes.TrimSpace(out))
		}
	}
	if err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// quietPlaced reads vigil_out_of_scope_ignore_marks_total{result="placed"}.
func quietPlaced(d *daemonProc) (int, error) {
	out, err := d.metrics()
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `vigil_out_of_scope_ignore_marks_total{result="placed"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, errors.New("vigil_out_of_scope_ignore_marks_total missing: is ignore_out_of_scope in force?")
}

// waitPlaced waits up to 10s for at least want ignore marks.
func waitPlaced(e *env, d *daemonProc, want int) (int, error) {
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if err := e.stopped(); err != nil {
			return 0, err
		}
		n, err := quietPlaced(d)
		if err != nil || n >= want {
			return n, err
		}
		if time.Since(start) > 10*time.Second {
			return n, fmt.Errorf("%d of %d directories ignore-marked after 10s", n, want)
		}
	}
}

// outsideRace runs the mv-in trials; never counts files still readable
// once the daemon had a second to see every move.
func outsideRace(e *env, d *daemonProc, staging, watched string, trials int) (misses, never int, windows []time.Duration, err error) {
	eicar := []byte(clamav.EICAR)
	var missed []string
	placed, err := quietPlaced(d)
	if err != nil {
		return 0, 0, nil, err
	}
	for i := range trials {
		if err := e.stopped(); err != nil {
			return 0, 0, nil, err
		}
		top := fmt.Sprintf("t%d", i)
		built := filepath.Join(staging, top)
		dir := filepath.Join(built, "a", "b", "c")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, 0, nil, fmt.Errorf("build tree: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "eicar"), eicar, 0o644); err != nil {
			return 0, 0, nil, fmt.Errorf("write eicar: %w", err)
		}
		// Out of scope: allowed, and c gets its ignore mark.
		if _, err := os.ReadFile(filepath.Join(dir, "eicar")); err != nil {
			return 0, 0, nil, fmt.Errorf("trial %d: out-of-scope read: %w", i, err)
		}
		placed++
		if placed, err = waitPlaced(e, d, placed); err != nil {
			return 0, 0, nil, fmt.Errorf("trial %d: %w", i, err)
		}
		if err := os.Rename(built, filepath.Join(watched, top)); err != nil {
			return 0, 0, nil, fmt.Errorf("move tree in: %w", err)
		}
		moved := time.Now()
		p := filepath.Join(watched, top, "a", "b", "c", "eicar")
		_, err := os.ReadFile(p)
		switch {
		case err == nil:
			misses++
			// How long the window stays open: read until denied.
			for time.Since(moved) < time.Second {
				if _, err := os.ReadFile(p); errors.Is(err, unix.EPERM) {
					windows = append(windows, time.Since(moved))
					break
				}
			}
			missed = append(missed, p)
		case !errors.Is(err, unix.EPERM):
			return 0, 0, nil, fmt.Errorf("trial %d: %w", i, err)
		}
	}
	time.Sleep(time.Second)
	for _, p := range missed {
		if _, err := os.ReadFile(p); err == nil {
			never++
		}
	}
	return misses, never, windows, nil
}
