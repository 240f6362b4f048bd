package dirtrace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/watch"
)

// event is one ring-buffer record: bpf/dirwatch.h's struct dw_event and
// the names that follow it.
type event struct {
	dirwatchDwEvent
	name, newName string
}

func (e *event) has(f dirwatchDwFlags) bool { return e.Flags&f != 0 }

func parseRecord(b []byte) (event, error) {
	var e event
	n, err := binary.Decode(b, binary.NativeEndian, &e.dirwatchDwEvent)
	if err != nil {
		return e, fmt.Errorf("decode event header: %w", err)
	}
	rest := b[n:]
	nl, ml := int(e.NameLen), int(e.NewNameLen)
	if nl+ml > len(rest) {
		return e, fmt.Errorf("decode event: names of %d+%d bytes in %d", nl, ml, len(rest))
	}
	e.name = cstring(rest[:nl])
	e.newName = cstring(rest[nl : nl+ml])
	return e, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	if !strings.HasPrefix(p, dir) {
		return false
	}
	return len(p) == len(dir) || dir == "/" || p[len(dir)] == '/'
}

// convert turns a kernel record into directory events, keeping the
// tracked paths current with the renames it reports.
func (t *Tracer) convert(e event) []watch.DirEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.has(dirwatchDwFlagsDW_F_PATHS) {
		return t.convertPaths(e)
	}
	parent, ok := t.byKey[dirwatchDwKey{Ino: e.Ino, Dev: e.Dev}]
	switch e.Op {
	case dirwatchDwOpDW_OP_MKDIR:
		if !ok || e.name == "" {
			return nil // untracked since, or unreadable
		}
		return []watch.DirEvent{{Op: watch.Created, Path: filepath.Join(parent, e.name), Source: t.source()}}
	case dirwatchDwOpDW_OP_RENAME:
		newParent, newOK := t.byKey[dirwatchDwKey{Ino: e.NewIno, Dev: e.NewDev}]
		if e.name == "" || e.newName == "" {
			return nil
		}
		from, to := "", ""
		if ok {
			from = filepath.Join(parent, e.name)
		}
		if newOK {
			to = filepath.Join(newParent, e.newName)
		}
		return t.renamed(from, to, e.has(dirwatchDwFlagsDW_F_DIR), e.has(dirwatchDwFlagsDW_F_EXCHANGE), e.has(dirwatchDwFlagsDW_F_NEW_DIR))
	}
	return nil
}

// renamed classifies a rename between from and to ("" when that side is
// not tracked, or for a Removed's To, unknown): fromDir says the entry
// that was at from is a directory, toDir (exchange only) the one that was
// at to.
func (t *Tracer) renamed(from, to string, fromDir, exchange, toDir bool) []watch.DirEvent {
	fromIn, toIn := from != "" && t.trackedLocked(filepath.Dir(from)), to != "" && t.trackedLocked(filepath.Dir(to))
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

func (t *Tracer) trackedLocked(dir string) bool {
	_, ok := t.keyOfPathLocked(dir)
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
	for _, d := range evs {
		switch d.Op {
		case watch.Moved:
			for _, p := range t.subtreeLocked(d.From) {
				k, _ := t.keyOfPathLocked(p)
				changes = append(changes, change{k, d.Path + p[len(d.From):]})
			}
		case watch.Removed:
			t.untrackLocked(d.Path)
		}
	}
	if !exchange {
		// A directory renamed over an empty one replaced it.
		for _, d := range evs {
			if d.Op == watch.Moved {
				t.untrackLocked(d.Path)
			}
		}
	}
	// Delete first: with an exchange, old and new paths overlap.
	for _, c := range changes {
		t.delPathLocked(t.byKey[c.key])
	}
	for _, c := range changes {
		t.byKey[c.key] = c.path
		t.setPathLocked(c.path, c.key)
	}
}

// convertPaths handles a syscall-rung record: paths relative to a
// directory fd, resolved here and kept when their parent is tracked.
func (t *Tracer) convertPaths(e event) []watch.DirEvent {
	from, ok := t.resolveLocked(e.Pid, e.Dfd, e.name, e.has(dirwatchDwFlagsDW_F_BASE), dirwatchDwKey{Ino: e.Ino, Dev: e.Dev})
	if !ok {
		t.log.Debug("unresolved path", "pid", e.Pid, "path", e.name)
		return nil
	}
	switch e.Op {
	case dirwatchDwOpDW_OP_MKDIR:
		if !t.trackedLocked(filepath.Dir(from)) {
			return nil
		}
		return []watch.DirEvent{{Op: watch.Created, Path: from, Source: t.source()}}
	case dirwatchDwOpDW_OP_RENAME:
		to, ok := t.resolveLocked(e.Pid, e.NewDfd, e.newName, e.has(dirwatchDwFlagsDW_F_NEW_BASE), dirwatchDwKey{Ino: e.NewIno, Dev: e.NewDev})
		if !ok {
			t.log.Debug("unresolved path", "pid", e.Pid, "path", e.newName)
			return nil
		}
		if !t.trackedLocked(filepath.Dir(from)) && !t.trackedLocked(filepath.Dir(to)) {
			return nil
		}
		exchange := e.has(dirwatchDwFlagsDW_F_EXCHANGE)
		// The syscall does not say what moved: a tracked path was a
		// directory; otherwise look at where it is now.
		fromDir := t.trackedLocked(from) || isDir(to)
		toDir := exchange && (t.trackedLocked(to) || isDir(from))
		return t.renamed(from, to, fromDir, exchange, toDir)
	}
	return nil
}

// resolveLocked makes a syscall's path absolute and clean, with the
// symlinks in its parent resolved. A relative path starts from the
// directory the kernel saw (when tracked), else from the process's cwd or
// dfd as /proc shows them now.
func (t *Tracer) resolveLocked(pid uint32, dfd int32, p string, hasBase bool, base dirwatchDwKey) (string, bool) {
	if p == "" {
		return "", false
	}
	if !filepath.IsAbs(p) {
		dir, ok := "", false
		if hasBase {
			dir, ok = t.byKey[base]
		}
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
	if real, err := filepath.EvalSymlinks(parent); err == nil {
		parent = real
	}
	return filepath.Join(parent, filepath.Base(p)), true
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}
