// Command bench measures the figures of vigil's design ("Figures we aim
// at") on this machine and prints them as a markdown table. Run it as root
// for the fanotify and daemon figures: `make bench`, or
//
//	go run ./bench --vigil bin/vigil [--only NAME] [--quick]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// section is one group of figures, in a file of its own.
type section struct {
	name  string // for --only
	title string // the figure named when the whole section is skipped
	needs []need
	run   func(e *env) ([]row, error)
}

// sections in the order they are printed. To add one: a new file with a
// section value, and a line here.
var sections = []section{
	clamonaccSection, // first: the others quote its figures
	latencySection,
	watchSection,
	engineSection,
	memorySection,
	raceSection,
	stormSection,
	engineBodySection,
	clamdSection,
	outsideSection,
	mkdirSection,
	writeSection,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vigil := fs.String("vigil", "bin/vigil", "the vigil `binary` run as the daemon")
	only := fs.String("only", "", "run only these sections (comma-separated `names`; see --list)")
	quick := fs.Bool("quick", false, "smaller trees and corpora: a smoke check, not figures to quote")
	list := fs.Bool("list", false, "list the sections and exit")
	deadline := fs.Duration("deadline", 2*time.Minute, "kill a daemon still running after this long, releasing any blocked open")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *list {
		for _, s := range sections {
			fmt.Fprintf(stdout, "%-8s %s\n", s.name, s.title)
		}
		return 0
	}
	chosen, err := choose(sections, *only)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}

	e, err := newEnv(*vigil, *quick, *deadline, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	// Daemons die with us whatever the way out: return, panic (deferred
	// calls run while panicking) or a signal. On a signal the daemons are
	// killed at once, which releases an open waiting for them; the sections
	// then stop at their next check and the temp dir goes with the return.
	done := make(chan struct{})
	defer close(done)
	defer e.close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "bench: %v: stopping\n", s)
			e.interrupt()
		case <-done:
			return
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			e.close()
		}
		os.Exit(1)
	}()

	var rows []row
	failed := false
	for _, s := range chosen {
		if e.stopped() != nil {
			return 1
		}
		if reason := e.unmet(s.needs); reason != "" {
			rows = append(rows, row{figure: s.title, measured: "skipped: " + reason})
			continue
		}
		e.progress("%s: %s", s.name, s.title)
		start := time.Now()
		got, err := s.run(e)
		rows = append(rows, got...)
		if err != nil {
			failed = true
			rows = append(rows, row{figure: s.title, measured: "error: " + err.Error()})
			fmt.Fprintf(stderr, "bench: %s: %v\n", s.name, err)
		}
		e.progress("%s: done in %v", s.name, time.Since(start).Round(time.Millisecond))
	}
	if e.stopped() != nil {
		return 1
	}
	fmt.Fprintln(stdout, e.machine())
	fmt.Fprintln(stdout)
	writeTable(stdout, rows)
	if failed {
		return 1
	}
	return 0
}

// choose picks the sections named in only (all when empty).
func choose(all []section, only string) ([]section, error) {
	if only == "" {
		return all, nil
	}
	var out []section
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		i := -1
		for j, s := range all {
			if s.name == name {
				i = j
			}
		}
		if i < 0 {
			names := make([]string, len(all))
			for j, s := range all {
				names[j] = s.name
			}
			return nil, fmt.Errorf("--only %q: no such section (have %s)", name, strings.Join(names, ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// machine is the line printed above the table: figures mean little
// without it.
func (e *env) machine() string {
	mode := ""
	if e.quick {
		mode = ", --quick (smoke check: do not quote)"
	}
	return fmt.Sprintf("vigil bench: kernel %s, %d CPUs, %s, temp files on %s%s",
		kernel(), runtime.NumCPU(), runtime.Version(), fsType(e.tmp), mode)
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// resolveVigil returns the absolute path of the vigil binary, or why it
// cannot be used.
func resolveVigil(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no vigil binary at %s (make build)", path)
	}
	if err != nil {
		return "", err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable", path)
	}
	return abs, nil
}
