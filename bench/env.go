package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/features"
)

// env is what the sections share: the temp dir, the trees built in it
// (each built once), the daemons started (killed on close).
type env struct {
	vigil    string // absolute path of the binary; "" when unusable
	vigilErr error
	quick    bool
	deadline time.Duration
	log      io.Writer
	tmp      string // fresh, symlinks resolved: paths compare equal to the kernel's

	mu      sync.Mutex
	trees   map[string]string
	daemons map[*daemonProc]bool
	nextID  int
	closed  bool
	stop    atomic.Bool       // a signal came: sections return errStopped
	memo    map[int]placement // daemon placements by tree size
	db      string
	peer    *peer // what the clamonacc section measured; nil when it did not run
}

func newEnv(vigil string, quick bool, deadline time.Duration, log io.Writer) (*env, error) {
	dir, err := os.MkdirTemp(os.TempDir(), "vigil-bench-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("resolve temp dir: %w", err)
	}
	e := &env{
		quick:    quick,
		deadline: deadline,
		log:      log,
		tmp:      real,
		trees:    map[string]string{},
		daemons:  map[*daemonProc]bool{},
		memo:     map[int]placement{},
	}
	e.vigil, e.vigilErr = resolveVigil(vigil)
	return e, nil
}

// close kills every daemon still running, then removes the temp dir. It
// may be called more than once, from the signal handler too.
func (e *env) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	ds := make([]*daemonProc, 0, len(e.daemons))
	for d := range e.daemons {
		ds = append(ds, d)
	}
	e.mu.Unlock()
	for _, d := range ds {
		d.kill()
		d.wait()
	}
	if err := os.RemoveAll(e.tmp); err != nil {
		fmt.Fprintf(e.log, "bench: remove temp dir: %v\n", err)
	}
}

var errStopped = errors.New("interrupted")

// interrupt kills the daemons and makes stopped return errStopped.
func (e *env) interrupt() {
	e.stop.Store(true)
	e.mu.Lock()
	defer e.mu.Unlock()
	for d := range e.daemons {
		d.kill()
	}
}

// stopped is checked by long loops outside the timed parts.
func (e *env) stopped() error {
	if e.stop.Load() {
		return errStopped
	}
	return nil
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.log, "bench: "+format+"\n", args...)
}

// need is a precondition of a section; check says why it is unmet ("" when
// met).
type need struct {
	check func(e *env) string
}

var (
	needRoot = need{func(*env) string {
		if euid := os.Geteuid(); euid != 0 {
			return fmt.Sprintf("needs root, running as uid %d", euid)
		}
		return ""
	}}
	needFanotify = need{func(*env) string {
		if err := features.FanotifyPermission(); err != nil {
			return fmt.Sprintf("fanotify permission events unavailable: %v", err)
		}
		return ""
	}}
	needVigil = need{func(e *env) string {
		if e.vigilErr != nil {
			return e.vigilErr.Error()
		}
		return ""
	}}
)

func (e *env) unmet(needs []need) string {
	for _, n := range needs {
		if reason := n.check(e); reason != "" {
			return reason
		}
	}
	return ""
}

// dir makes a new directory in the temp dir.
func (e *env) dir(name string) (string, error) {
	e.mu.Lock()
	e.nextID++
	id := e.nextID
	e.mu.Unlock()
	p := filepath.Join(e.tmp, fmt.Sprintf("%s-%d", name, id))
	if err := os.Mkdir(p, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", p, err)
	}
	return p, nil
}

// dirTree returns a tree of n directories (plus its root), built once and
// shared by the sections: 100 top directories with n/100-1 subdirectories
// each, empty, like the directory skeleton of a large upload area.
func (e *env) dirTree(n int) (string, error) {
	key := fmt.Sprintf("dirs-%d", n)
	e.mu.Lock()
	p, ok := e.trees[key]
	e.mu.Unlock()
	if ok {
		return p, nil
	}
	root, err := e.dir(key)
	if err != nil {
		return "", err
	}
	if err := e.fillDirTree(root, n); err != nil {
		return "", err
	}
	e.mu.Lock()
	e.trees[key] = root
	e.mu.Unlock()
	return root, nil
}

// fillDirTree builds dirTree's shape in the empty directory root; the
// clamonacc section builds it on a filesystem it mounted.
func (e *env) fillDirTree(root string, n int) error {
	e.progress("building a %s-directory tree", group(int64(n)))
	top := min(100, n)
	per := n/top - 1
	for i := range top {
		if err := e.stopped(); err != nil {
			return err
		}
		d := filepath.Join(root, fmt.Sprintf("d%03d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("build tree: %w", err)
		}
		for j := range per {
			if err := os.Mkdir(filepath.Join(d, fmt.Sprintf("s%04d", j)), 0o755); err != nil {
				return fmt.Errorf("build tree: %w", err)
			}
		}
	}
	return nil
}

// fileTree builds dirs directories of files files of size bytes each,
// and returns the file paths in the order they were written.
func (e *env) fileTree(name string, dirs, files, size int) (string, []string, error) {
	root, err := e.dir(name)
	if err != nil {
		return "", nil, err
	}
	data := randomBytes(size)
	paths := make([]string, 0, dirs*files)
	for i := range dirs {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", nil, fmt.Errorf("build tree: %w", err)
		}
		for j := range files {
			if err := e.stopped(); err != nil {
				return "", nil, err
			}
			p := filepath.Join(d, fmt.Sprintf("f%03d", j))
			// Distinct contents: no file is a copy of another.
			copy(data, fmt.Sprintf("%08d", len(paths)))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return "", nil, fmt.Errorf("build tree: %w", err)
			}
			paths = append(paths, p)
		}
	}
	return root, paths, nil
}

// fsType names the filesystem of path, the figures depend on it.
func fsType(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown filesystem"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem %#x", st.Type)
}
