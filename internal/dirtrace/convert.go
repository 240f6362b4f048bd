package dirtrace

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/watch"
)

// event is one ring-buffer record: bpf/dirwatch.h's struct dw_event and
// the names and chains that follow it.
type event struct {
	dirwatchDwEvent
	name, newName   string
	chain, newChain string // names with their NULs, from a directory up
}

func (e *event) has(f dirwatchDwFlags) bool { return e.Flags&f != 0 }

func parseRecord(b []byte) (event, error) {
	var e event
	n, err := binary.Decode(b, binary.NativeEndian, &e.dirwatchDwEvent)
	if err != nil {
		return e, fmt.Errorf("decode event header: %w", err)
	}
	rest := b[n:]
	lens := []uint32{e.NameLen, e.ChainLen, e.NewNameLen, e.NewChainLen}
	parts := make([]string, len(lens))
	for i, l := range lens {
		if int64(l) > int64(len(rest)) {
			return e, fmt.Errorf("decode event: names and chains of %v bytes in %d", lens, len(b)-n)
		}
		parts[i], rest = string(rest[:l]), rest[l:]
	}
	e.name, e.chain, e.newName, e.newChain = cstring(parts[0]), parts[1], cstring(parts[2]), parts[3]
	return e, nil
}

func cstring(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return s
}

// chainPathLocked returns the path of the directory a chain starts from:
// the path of the watched directory k covering it, then the chain's names
// from the top. ok is false when no watched directory covers it (the
// record's flag watched is off) or k is no longer tracked.
func (t *Tracer) chainPathLocked(watched bool, k dirwatchDwKey, chain string) (string, bool) {
	if !watched {
		return "", false
	}
	a, ok := t.byKey[k]
	if !ok {
		return "", false
	}
	rel, ok := chainRel(chain)
	if !ok {
		return "", false
	}
	return filepath.Join(a.path, rel), true
}

// chainRel turns a chain into the relative path it stands for, "" for
// none; false when a name is not one a directory can have.
func chainRel(chain string) (string, bool) {
	if chain == "" {
		return "", true
	}
	names := strings.Split(strings.TrimSuffix(chain, "\x00"), "\x00")
	slices.Reverse(names)
	for _, n := range names {
		if n == "" || n == "." || n == ".." || strings.Contains(n, "/") {
			return "", false
		}
	}
	return strings.Join(names, "/"), true
}

// movedOut returns where a directory moved out of every watch went, from
// a top chain (dirwatch.h): the path of its new parent through a mount of
// dev, joined with name, and checked to lead to inode ino (0: any). ""
// when it cannot tell.
func movedOut(top bool, dev uint32, chain, name string, ino uint64) string {
	if !top {
		return ""
	}
	rel, ok := chainRel(chain)
	if !ok {
		return ""
	}
	p, ok := topPath(dev, "/"+filepath.Join(rel, name), ino)
	if !ok {
		return ""
	}
	return p
}

// convert turns a kernel record into directory events, keeping the
// tracked paths current with the renames it reports.
func (t *Tracer) convert(e event) []watch.DirEvent {
	// A side no watch covers has a path only when a directory moved out of
	// every watch to it: then the marks go. Found before the lock: it
	// reads mountinfo and stats the path.
	var outFrom, outTo string
	if e.Op == dirwatchDwOpDW_OP_RENAME && !e.has(dirwatchDwFlagsDW_F_PATHS) {
		outFrom = movedOut(e.has(dirwatchDwFlagsDW_F_TOP), e.Dev, e.chain, e.name, 0)
		outTo = movedOut(e.has(dirwatchDwFlagsDW_F_NEW_TOP), e.NewDev, e.newChain, e.newName, e.TargetIno)
	}
	if e.has(dirwatchDwFlagsDW_F_PATHS) {
		return t.convertPaths(e)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	parent, ok := t.chainPathLocked(e.has(dirwatchDwFlagsDW_F_WATCHED), dirwatchDwKey{Ino: e.Ino, Dev: e.Dev}, e.chain)
	switch e.Op {
	case dirwatchDwOpDW_OP_MKDIR:
		if !ok || e.name == "" {
			return nil // untracked since, or unreadable
		}
		return []watch.DirEvent{{Op: watch.Created, Path: filepath.Join(parent, e.name), Source: t.source()}}
	case dirwatchDwOpDW_OP_RENAME:
		newParent, newOK := t.chainPathLocked(e.has(dirwatchDwFlagsDW_F_NEW_WATCHED), dirwatchDwKey{Ino: e.NewIno, Dev: e.NewDev}, e.newChain)
		if e.name == "" || e.newName == "" {
			return nil
		}
		from, to := outFrom, outTo
		if ok {
			from = filepath.Join(parent, e.name)
		}
		if newOK {
			to = filepath.Join(newParent, e.newName)
		}
		return t.renamed(from, to, ok, newOK, e.has(dirwatchDwFlagsDW_F_DIR), e.has(dirwatchDwFlagsDW_F_EXCHANGE), e.has(dirwatchDwFlagsDW_F_NEW_DIR))
	}
	return nil
}

// renamed classifies a rename between from and to ("" when unknown):
// fromIn and toIn say a tracked directory covers that side, fromDir that
// the entry that was at from is a directory, toDir (exchange only) the one
// that was at to.
func (t *Tracer) renamed(from, to string, fromIn, toIn, fromDir, exchange, toDir bool) []watch.DirEvent {
	var out []watch.DirEvent
	move := func(src, dst string, srcIn, dstIn bool) {
		switch {
		case srcIn && dstIn:
			out = append(out, watch.DirEvent{Op: watch.Moved, Path: dst, From: src, Source: t.source()})
		case srcIn:
			out = append(out, watch.DirEvent{Op: watch.Removed, Path: src, To: dst, Source: t.source()})
		case dstIn:
			out = append(out, watch.DirEvent{Op: watch.Created, Path: dst, Source: t.source()})
		}
	}
	if fromDir {
		move(from, to, fromIn, toIn)
	}
	if exchange && toDir {
		move(to, from, toIn, fromIn)
	}
	t.rebaseLocked(out, exchange)
	return out
}

// trackedLocked reports whether dir is in the watched map itself.
func (t *Tracer) trackedLocked(dir string) bool {
	_, ok := t.keyOfPathLocked(dir)
	return ok
}

// coversLocked reports whether the entries of dir are reported: dir is in
// the watched map, or below a directory in it with its tree. Only the
// syscall rung, which sees paths, asks.
func (t *Tracer) coversLocked(dir string) bool {
	if t.trackedLocked(dir) {
		return true
	}
	_, _, ok := t.treeAboveLocked(dir)
	return ok
}

// rebaseLocked applies moves to the tracked paths at once, so that events
// from inside a moved tree name its new place; directories moved out are
// forgotten.
func (t *Tracer) rebaseLocked(evs []watch.DirEvent, exchange bool) {
	type change struct {
		key  dirwatchDwKey
		path string
	}
	var changes []change
	left := false // something tracked was still at a move's From
	for _, d := range evs {
		switch d.Op {
		case watch.Moved:
			for _, p := range t.subtreeLocked(d.From) {
				k, _ := t.keyOfPathLocked(p)
				changes = append(changes, change{k, d.Path + p[len(d.From):]})
				left = true
			}
		case watch.Removed:
			t.untrackLocked(d.Path)
		}
	}
	if !exchange {
		// A directory renamed over an empty one replaced it: its entry,
		// never one below it, goes. Not when nothing was left at From:
		// the manager, told of the move by inotify first, may have
		// tracked the moved directories at their new paths already.
		for _, d := range evs {
			if d.Op == watch.Moved && left {
				t.forgetLocked(d.Path)
			}
		}
	}
	// Delete first: with an exchange, old and new paths overlap.
	for _, c := range changes {
		t.delPathLocked(t.byKey[c.key].path)
	}
	for _, c := range changes {
		a := t.byKey[c.key]
		a.path = c.path
		t.byKey[c.key] = a
		t.setPathLocked(c.path, c.key)
	}
}

// convertPaths handles a syscall-rung record: paths relative to a
// directory fd, resolved here and kept when their parent is tracked. The
// paths are resolved, and a rename's sides looked at, without t.mu: that
// reads /proc and walks the paths, which may wait on a slow or hung
// filesystem (NFS, FUSE), and Track, with which the manager marks new
// directories, waits for t.mu.
func (t *Tracer) convertPaths(e event) []watch.DirEvent {
	rename := e.Op == dirwatchDwOpDW_OP_RENAME
	if !rename && e.Op != dirwatchDwOpDW_OP_MKDIR {
		return nil
	}
	t.mu.Lock()
	base, hasBase := t.chainPathLocked(e.has(dirwatchDwFlagsDW_F_WATCHED), dirwatchDwKey{Ino: e.Ino, Dev: e.Dev}, e.chain)
	var newBase string
	var hasNewBase bool
	if rename {
		newBase, hasNewBase = t.chainPathLocked(e.has(dirwatchDwFlagsDW_F_NEW_WATCHED), dirwatchDwKey{Ino: e.NewIno, Dev: e.NewDev}, e.newChain)
	}
	t.mu.Unlock()

	from, ok := resolve(e.Pid, e.Dfd, e.name, base, hasBase)
	if !ok {
		t.log.Debug("unresolved path", "pid", e.Pid, "path", e.name)
		return nil
	}
	if !rename {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.coversLocked(filepath.Dir(from)) {
			return nil
		}
		return []watch.DirEvent{{Op: watch.Created, Path: from, Source: t.source()}}
	}
	to, ok := resolve(e.Pid, e.NewDfd, e.newName, newBase, hasNewBase)
	if !ok {
		t.log.Debug("unresolved path", "pid", e.Pid, "path", e.newName)
		return nil
	}
	t.mu.Lock()
	fromIn, toIn := t.coversLocked(filepath.Dir(from)), t.coversLocked(filepath.Dir(to))
	fromTracked, toTracked := t.trackedLocked(from), t.trackedLocked(to)
	t.mu.Unlock()
	if !fromIn && !toIn {
		return nil
	}
	// The syscall does not say what moved: a tracked path was a
	// directory; otherwise look at where it is now.
	exchange := e.has(dirwatchDwFlagsDW_F_EXCHANGE)
	fromDir := fromTracked || isDir(to)
	toDir := exchange && (toTracked || isDir(from))
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.renamed(from, to, fromIn, toIn, fromDir, exchange, toDir)
}

// resolve makes a syscall's path absolute and clean, with the symlinks in
// its parent resolved. A relative path starts from base, the directory
// the kernel saw, when a tracked directory covers it (hasBase), else from
// the process's cwd or dfd as /proc shows them now.
func resolve(pid uint32, dfd int32, p, base string, hasBase bool) (string, bool) {
	if p == "" {
		return "", false
	}
	if !filepath.IsAbs(p) {
		dir, ok := base, hasBase
		if !ok {
			link := "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/cwd"
			if dfd != unix.AT_FDCWD {
				link = "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/fd/" + strconv.Itoa(int(dfd))
			}
			var err error
			if dir, err = os.Readlink(link); err != nil || !filepath.IsAbs(dir) {
				return "", false
			}
		}
		p = filepath.Join(dir, p)
	}
	p = filepath.Clean(p)
	parent := filepath.Dir(p)
	if real, err := realDir(parent); err == nil {
		parent = real
	}
	return filepath.Join(parent, filepath.Base(p)), true
}

// realDir returns the path of directory dir with its symlinks resolved,
// as the kernel names what one walk of dir opened: most paths the syscall
// rung reports are outside every watch and deep, and filepath.EvalSymlinks
// would lstat each of their components.
func realDir(dir string) (string, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	// Removed since, or outside this process's root: the kernel says so
	// in words, not in a path.
	if !filepath.IsAbs(real) || strings.HasSuffix(real, " (deleted)") {
		return filepath.EvalSymlinks(dir)
	}
	return real, nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}
