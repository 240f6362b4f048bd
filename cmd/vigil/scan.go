package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdScan(args []string, stdout, stderr io.Writer) int {
	fset := newFlags("scan", "vigil scan [--policy FILE | --db PATH ...] [--json] PATH ...", stderr)
	policyFile := fset.String("policy", "", "use the engine and databases of this policy `file`")
	var dbs listFlag
	fset.Var(&dbs, "db", "database file or directory (repeatable); default: "+strings.Join(defaultDatabases, ", ")+" where present")
	asJSON := fset.Bool("json", false, "print one JSON object per infected or failed file")
	if err := fset.Parse(args); err != nil {
		return 2
	}
	if fset.NArg() == 0 {
		fset.Usage()
		return 2
	}
	if *policyFile != "" && len(dbs) > 0 {
		fmt.Fprintln(stderr, "vigil scan: --policy and --db exclude each other")
		return 2
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Warn, Output: stderr})
	engine, err := scanEngine(*policyFile, dbs, log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vigil scan: %v\n", err)
		return 2
	}

	s := &scanner{engine: engine, stdout: stdout, stderr: stderr, json: *asJSON}
	start := time.Now()
	paths := make(chan job, 256)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range paths {
				s.scanFile(j)
			}
		}()
	}
	for _, root := range fset.Args() {
		s.walk(root, paths)
	}
	close(paths)
	wg.Wait()

	fmt.Fprintf(stderr, "\n----------- SCAN SUMMARY -----------\nScanned files: %d\nInfected files: %d\nErrors: %d\nData scanned: %.2f MB\nTime: %.3f sec\n",
		s.files.Load(), s.infected.Load(), s.errors.Load(), float64(s.bytes.Load())/1e6, time.Since(start).Seconds())
	switch {
	case s.infected.Load() > 0:
		return 1
	case s.errors.Load() > 0:
		return 2
	}
	return 0
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

type scanner struct {
	engine scan.Engine
	stdout io.Writer
	stderr io.Writer
	json   bool

	mu                             sync.Mutex // serialises output lines
	files, infected, errors, bytes atomic.Int64
}

// job is a file to scan; follow is set for paths named on the command
// line, whose symbolic links are followed.
type job struct {
	path   string
	follow bool
}

// walk sends every regular file under root to paths. Symbolic links are
// not followed below the command line, special files are skipped.
func (s *scanner) walk(root string, paths chan<- job) {
	fi, err := os.Stat(root)
	if err != nil {
		s.fail(root, err)
		return
	}
	if !fi.IsDir() {
		if fi.Mode().IsRegular() {
			paths <- job{path: root, follow: true}
		}
		return
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			s.fail(p, err)
			return nil
		}
		if d.Type().IsRegular() {
			paths <- job{path: p}
		}
		return nil
	})
}

func (s *scanner) scanFile(j job) {
	p := j.path
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK
	if !j.follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(p, flags, 0)
	if err != nil {
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
	res, err := s.engine.Scan(context.Background(), f)
	if err != nil {
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
	if s.json {
		json.NewEncoder(s.stdout).Encode(map[string]string{"path": p, "result": "error", "error": err.Error()})
		return
	}
	fmt.Fprintf(s.stderr, "%s: ERROR: %v\n", p, err)
}
