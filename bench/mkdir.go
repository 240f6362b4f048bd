package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

var mkdirSection = section{
	name:  "mkdir",
	title: "cost of mkdir+rmdir for everyone while the eBPF tracer runs, outside and inside the watches",
	needs: []need{needRoot, needFanotify, needVigil},
	run:   runMkdir,
}

// mkdirDepth is how deep below the top of the tmpfs, or the bench's temp
// dir, the directories are made: the programs climb from there to the top
// of the filesystem when no watch covers them.
const mkdirDepth = 8

// runMkdir times pairs of mkdir and rmdir, as a build or a package
// manager does them, with no daemon and with `vigil run` watching one
// tree: in a directory outside every watch (the tracer sees every mkdir on
// the machine and must let these go cheaply) and in one inside the watch
// (each is reported, marked and tracked by the daemon, which the caller
// does not wait for). Each is done by name relative to an open directory
// (mkdirat, as Go and most tools do) and by absolute path (as the shell's
// mkdir does): the syscall rung cannot tell from the kernel where an
// absolute path leads. On a tmpfs, where the pair costs a few
// microseconds and no journal adds noise, and on the temp dir's
// filesystem, where waking the daemon for each record costs most (it
// sleeps between the slower pairs). Rounds with and without the daemon
// alternate, and the best of each counts.
func runMkdir(e *env) ([]row, error) {
	pairs, rounds := 20000, 3
	if e.quick {
		pairs, rounds = 2000, 2
	}
	m := e.newMounts()
	defer m.close()
	mnt, err := m.tmpfs(64)
	if err != nil {
		return nil, err
	}
	disk, err := e.dir("mkdir")
	if err != nil {
		return nil, err
	}
	type mkdirCase struct {
		fs, where, dir string
		absolute       bool
		none, with     time.Duration // best of the rounds
	}
	var cases []*mkdirCase
	var watches []string
	for _, top := range []string{mnt, disk} {
		watches = append(watches, filepath.Join(top, "w"))
		for _, place := range []struct{ sub, where string }{{"out", "outside the watches"}, {"w", "inside a watch"}} {
			p := filepath.Join(append([]string{top, place.sub}, strings.Split(strings.Repeat("d/", mkdirDepth-1), "/")...)...)
			if err := os.MkdirAll(p, 0o755); err != nil {
				return nil, fmt.Errorf("create %s: %w", p, err)
			}
			for _, abs := range []bool{false, true} {
				cases = append(cases, &mkdirCase{fs: fsType(top), where: place.where, dir: p, absolute: abs})
			}
		}
	}
	measure := func(with bool) error {
		for _, c := range cases {
			if err := e.stopped(); err != nil {
				return err
			}
			d, err := mkdirPairs(c.dir, c.absolute, pairs)
			if err != nil {
				return err
			}
			best := &c.none
			if with {
				best = &c.with
			}
			if *best == 0 || d < *best {
				*best = d
			}
		}
		return nil
	}
	hook := "?"
	for r := range rounds {
		e.progress("mkdir: round %d of %d, without and with `vigil run`", r+1, rounds)
		if err := measure(false); err != nil {
			return nil, err
		}
		d, err := e.startDaemon("mkdir", watches...)
		if err != nil {
			return nil, err
		}
		hook = loggedHook(d)
		err = measure(true)
		d.stop()
		if err != nil {
			return nil, err
		}
	}
	var rows []row
	for _, c := range cases {
		kind := "mkdirat"
		if c.absolute {
			kind = "absolute path"
		}
		per := func(t time.Duration) time.Duration { return t / time.Duration(pairs) }
		rows = append(rows, row{
			figure: fmt.Sprintf("mkdir+rmdir by %s, %s, %d levels down on %s: no daemon → `vigil run` (hook %s), best of %d × %s",
				kind, c.where, mkdirDepth, c.fs, hook, rounds, group(int64(pairs))),
			aim:      "report",
			measured: fmt.Sprintf("%s → %s per pair (%s)", micros(per(c.none)), micros(per(c.with)), ratio(float64(c.with)/float64(c.none))),
			ref:      "–",
		})
	}
	return rows, nil
}

// mkdirPairs makes and removes a directory in dir n times, by name through
// an open descriptor or by absolute path, and returns the time taken.
func mkdirPairs(dir string, absolute bool, n int) (time.Duration, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	name, dfd := "m", fd
	if absolute {
		name, dfd = filepath.Join(dir, "m"), unix.AT_FDCWD
	}
	start := time.Now()
	for range n {
		if err := unix.Mkdirat(dfd, name, 0o755); err != nil {
			return 0, fmt.Errorf("mkdir %s: %w", name, err)
		}
		if err := unix.Unlinkat(dfd, name, unix.AT_REMOVEDIR); err != nil {
			return 0, fmt.Errorf("rmdir %s: %w", name, err)
		}
	}
	return time.Since(start), nil
}

var hookLine = regexp.MustCompile(`"hook":"([^"]+)"`)

// loggedHook is the rung the daemon says it chose, "?" if it did not.
func loggedHook(d *daemonProc) string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return "?"
	}
	if m := hookLine.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "?"
}
