package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/daemon"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/scan/clamav"
)

// defaultDatabases are used by `vigil scan` without --db or --policy,
// where they exist.
var defaultDatabases = []string{"/var/lib/clamav", "/var/lib/vigil/db"}

// progressAfter is how long a scan runs before the progress line shows,
// and progressEvery how often it is redrawn (variables for tests).
var (
	progressAfter = time.Second
	progressEvery = 250 * time.Millisecond
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const scanSynopsis = "vigil scan [--policy FILE | --db PATH ...] [--json] [--exclude GLOB ...] [--follow] [--report] PATH ..."

func cmdScan(args []string, stdout, stderr io.Writer) int {
	fset := newFlags("scan", scanSynopsis, stderr)
	policyFile := fset.String("policy", "", "use the engine and databases of this policy `file`")
	var dbs, excludes listFlag
	fset.Var(&dbs, "db", "database `path`, a file or a directory (repeatable); default: "+strings.Join(defaultDatabases, ", ")+" where present")
	asJSON := fset.Bool("json", false, "print one JSON object per infected or failed file, then the summary")
	fset.Var(&excludes, "exclude", "skip files and directories matching this `glob` (repeatable), as a watch's exclude does: a name\n(*.iso), a path relative to the scanned directory (cache/**, a/*/b), or an absolute one (/srv/*.iso);\n** matches any number of directories, a trailing / directories only, and !GLOB re-includes")
	follow := fset.Bool("follow", false, "follow symbolic links met inside the trees (links named on the command line are always followed)")
	report := fset.Bool("report", false, "print what the engine loaded (signatures per type, skipped files, version)")
	paths, code, ok := parseArgs(fset, args, stdout)
	if !ok {
		return code
	}
	if len(paths) == 0 && !*report {
		fset.Usage()
		return 2
	}
	if *policyFile != "" && len(dbs) > 0 {
		fmt.Fprintln(stderr, "vigil scan: --policy and --db exclude each other")
		return 2
	}
	rel, abs, err := compileExcludes(excludes)
	if err != nil {
		fmt.Fprintf(stderr, "vigil scan: --exclude %v\n", err)
		return 2
	}
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(stderr, "vigil scan: %v\n", err)
		return 2
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Warn, Output: stderr})
	engine, err := scanEngine(*policyFile, dbs, log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vigil scan: %v\n", err)
		return 2
	}
	if c, ok := engine.(io.Closer); ok {
		defer c.Close()
	}
	if *report {
		printReport(stdout, engine, *asJSON)
		if len(paths) == 0 {
			return 0
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s := &scanner{
		engine:   engine,
		stdout:   stdout,
		stderr:   stderr,
		json:     *asJSON,
		follow:   *follow,
		excludes: rel,
		absolute: abs,
		cwd:      cwd,
	}
	if isTerminal(stderr) {
		s.progress = stderr
	}
	code = s.run(ctx, paths)
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "vigil scan: interrupted")
		return 2
	}
	return code
}

// printReport prints the engine's load report: one line, or a JSON object.
func printReport(w io.Writer, e scan.Engine, asJSON bool) {
	var (
		line string
		obj  any
	)
	if b, ok := e.(*clamav.Engine); ok {
		r := b.Report()
		line, obj = r.String(), r
	} else {
		line = fmt.Sprintf("%s engine, version %s", e.Name(), e.Version())
		obj = map[string]string{"engine": e.Name(), "version": e.Version()}
	}
	if asJSON {
		json.NewEncoder(w).Encode(map[string]any{"result": "report", "report": obj})
		return
	}
	fmt.Fprintln(w, line)
}

func scanEngine(policyFile string, dbs []string, log hclog.Logger, stderr io.Writer) (scan.Engine, error) {
	if policyFile != "" {
		pol, diags := policy.Load(policyFile)
		if len(diags) > 0 {
			policy.WriteDiagnostics(stderr, diags)
		}
		if diags.HasErrors() {
			return nil, fmt.Errorf("load %s: %w", policyFile, daemon.ErrPolicy)
		}
		return daemon.NewEngine(pol, log)
	}
	if len(dbs) == 0 {
		for _, db := range defaultDatabases {
			if _, err := os.Stat(db); err == nil {
				dbs = append(dbs, db)
			}
		}
	}
	e, err := clamav.Load(dbs, log)
	if err != nil {
		return nil, fmt.Errorf("load databases: %w", err)
	}
	return e, nil
}

// isTerminal reports whether w is a terminal, where a progress line helps
// rather than litters a log.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

type scanner struct {
	engine   scan.Engine
	stdout   io.Writer
	stderr   io.Writer
	json     bool
	follow   bool
	excludes policy.Excludes // --exclude, relative to each PATH scanned
	absolute policy.Excludes // --exclude starting with "/", relative to "/"
	cwd      string          // to make relative paths absolute for those
	progress io.Writer       // the terminal for the progress line, or nil

	mu                             sync.Mutex // serialises output lines
	progressShown                  bool       // under mu
	files, infected, errors, bytes atomic.Int64
}

// job is a file to scan; follow is set for paths whose symbolic link may
// be followed (named on the command line, or --follow).
type job struct {
	path   string
	follow bool
}

// run scans the roots with one worker per core and prints the summary; it
// returns the exit code: 1 infected, else 2 on errors, else 0.
func (s *scanner) run(ctx context.Context, roots []string) int {
	start := time.Now()
	jobs := make(chan job, 256)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s.scanFile(ctx, j)
			}
		}()
	}
	stopProgress := s.startProgress(start)
	for _, root := range roots {
		if ctx.Err() != nil {
			break
		}
		s.walk(ctx, root, jobs)
	}
	close(jobs)
	wg.Wait()
	stopProgress()
	s.summary(time.Since(start))
	switch {
	case s.infected.Load() > 0:
		return 1
	case s.errors.Load() > 0:
		return 2
	}
	return 0
}

// summary prints clamscan's summary block, or a JSON object with --json.
func (s *scanner) summary(elapsed time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.json {
		json.NewEncoder(s.stdout).Encode(map[string]any{
			"result": "summary", "engine": s.engine.Name(), "engine_version": s.engine.Version(),
			"files": s.files.Load(), "infected": s.infected.Load(), "errors": s.errors.Load(),
			"bytes": s.bytes.Load(), "seconds": elapsed.Seconds(),
		})
		return
	}
	secs := elapsed.Seconds()
	fmt.Fprintf(s.stdout, "\n----------- SCAN SUMMARY -----------\nEngine: %s %s\nScanned files: %d\nInfected files: %d\nErrors: %d\nData scanned: %.2f MB\nTime: %.3f sec (%d m %d s)\n",
		s.engine.Name(), s.engine.Version(), s.files.Load(), s.infected.Load(), s.errors.Load(),
		float64(s.bytes.Load())/1e6, secs, int(secs)/60, int(secs)%60)
}

// startProgress redraws a one-line count on the terminal once the scan
// has run for progressAfter; the returned func erases it.
func (s *scanner) startProgress(start time.Time) (stop func()) {
	if s.progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.Sub(start) < progressAfter {
					continue
				}
				s.mu.Lock()
				fmt.Fprintf(s.progress, "\r\x1b[Kscanned %d files, %.1f MB, %d infected, %d errors, %.0fs",
					s.files.Load(), float64(s.bytes.Load())/1e6, s.infected.Load(), s.errors.Load(), now.Sub(start).Seconds())
				s.progressShown = true
				s.mu.Unlock()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		s.mu.Lock()
		s.clearProgress()
		s.mu.Unlock()
	}
}

// clearProgress erases the progress line before other output; s.mu held.
func (s *scanner) clearProgress() {
	if s.progressShown {
		fmt.Fprint(s.progress, "\r\x1b[K")
		s.progressShown = false
	}
}

// walk sends every regular file under root to jobs. Symbolic links below
// root are skipped unless --follow; special files are skipped; excluded
// names are not entered.
func (s *scanner) walk(ctx context.Context, root string, jobs chan<- job) {
	fi, err := os.Stat(root)
	if err != nil {
		s.fail(root, err)
		return
	}
	if !fi.IsDir() {
		if fi.Mode().IsRegular() {
			jobs <- job{path: root, follow: true}
		}
		return
	}
	visited := map[fileID]bool{idOf(fi): true}
	s.walkDir(ctx, root, root, jobs, visited)
}

type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), st.Ino}
	}
	return fileID{}
}

func (s *scanner) walkDir(ctx context.Context, root, dir string, jobs chan<- job, visited map[fileID]bool) {
	des, err := os.ReadDir(dir)
	if err != nil {
		s.fail(dir, err)
		// ReadDir returns what it read before the error: go on with it.
	}
	for _, de := range des {
		if ctx.Err() != nil {
			return
		}
		p := filepath.Join(dir, de.Name())
		t := de.Type()
		if s.excluded(root, p, t.IsDir()) {
			continue
		}
		if t&fs.ModeSymlink != 0 {
			if !s.follow {
				continue
			}
			fi, err := os.Stat(p)
			if err != nil {
				s.fail(p, err)
				continue
			}
			t = fi.Mode().Type()
			if fi.IsDir() {
				if s.excluded(root, p, true) { // by a glob for directories only
					continue
				}
				// A link to a directory already seen would loop.
				if id := idOf(fi); !visited[id] {
					visited[id] = true
					s.walkDir(ctx, root, p, jobs, visited)
				}
				continue
			}
		}
		switch {
		case t.IsDir():
			fi, err := de.Info()
			if err != nil {
				s.fail(p, err)
				continue
			}
			visited[idOf(fi)] = true
			s.walkDir(ctx, root, p, jobs, visited)
		case t.IsRegular():
			jobs <- job{path: p, follow: s.follow}
		}
		// Devices, FIFOs and sockets are skipped: reading them could block
		// or never end, and they hold no file to infect.
	}
}

// compileExcludes compiles --exclude globs, with a watch's exclude
// semantics (gitignore's): those that start with "/" apart, to match whole
// paths.
func compileExcludes(globs []string) (rel, abs policy.Excludes, err error) {
	var relative, absolute []string
	for _, g := range globs {
		if strings.HasPrefix(strings.TrimPrefix(g, "!"), "/") {
			absolute = append(absolute, g)
		} else {
			relative = append(relative, g)
		}
	}
	if rel, err = policy.CompileExcludes(relative); err == nil {
		abs, err = policy.CompileExcludes(absolute)
	}
	return rel, abs, err
}

// excluded reports whether p, below root, matches the --exclude globs;
// dir says it is a directory.
func (s *scanner) excluded(root, p string, dir bool) bool {
	if r, err := filepath.Rel(root, p); err == nil && s.excludes.Excluded(r, dir) {
		return true
	}
	if len(s.absolute) == 0 {
		return false
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.cwd, p)
	}
	return s.absolute.Excluded(strings.TrimPrefix(p, "/"), dir)
}

func (s *scanner) scanFile(ctx context.Context, j job) {
	if ctx.Err() != nil {
		return
	}
	p := j.path
	// O_NONBLOCK: a file swapped for a FIFO since the walk must not hang us.
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	if !j.follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(p, flags, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) && !j.follow {
			return // replaced by a symbolic link since the walk
		}
		s.fail(p, err)
		return
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.fail(p, err)
		return
	}
	if !fi.Mode().IsRegular() {
		return // replaced by a special file since the walk
	}
	res, err := s.engine.Scan(ctx, f)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.fail(p, err)
		return
	}
	s.files.Add(1)
	s.bytes.Add(fi.Size())
	if !res.Infected {
		return
	}
	s.infected.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearProgress()
	if s.json {
		json.NewEncoder(s.stdout).Encode(map[string]string{"path": p, "result": "found", "signature": res.Signature})
		return
	}
	fmt.Fprintf(s.stdout, "%s: %s FOUND\n", p, res.Signature)
}

func (s *scanner) fail(p string, err error) {
	s.errors.Add(1)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clearProgress()
	if s.json {
		json.NewEncoder(s.stdout).Encode(map[string]string{"path": p, "result": "error", "error": err.Error()})
		return
	}
	fmt.Fprintf(s.stderr, "%s: ERROR: %v\n", p, err)
}
