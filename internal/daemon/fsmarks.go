package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/answers"
	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/watch"
)

// markFilesystems places one filesystem mark for each watch in
// filesystem mode: every open on that filesystem reaches the loop, which
// decides scope by path, so no directory can be used before it is
// covered. A watch that does not exist yet marks the filesystem of its
// nearest existing ancestor, where it will be made. The filesystems
// mounted below a watch are markSubmounts'. A filesystem that does not
// answer holds start-up for resolveTimeout at most (see placeMarks).
func markFilesystems(g *fanotify.Group, p *policy.Policy, log hclog.Logger) error {
	var marks []fsMark
	for _, w := range p.Watches {
		if w.Mode == policy.ModeFilesystem {
			marks = append(marks, fsMark{path: w.Path, dir: w.Path, mask: fsMask(w)})
		}
	}
	return errors.Join(placeMarks(g, marks, hclog.Info, log)...)
}

func fsMask(w *policy.Watch) uint64 { return permMask(w.On) &^ unix.FAN_EVENT_ON_CHILD }

// fsMark is a filesystem mark for a filesystem-mode watch: on the
// filesystem of dir, or of its nearest existing ancestor when dir does
// not exist yet.
type fsMark struct {
	path, dir string // the watch's path; where to mark
	mask      uint64
}

// place marks m's filesystem and returns the directory it marked at.
//
// The mark looks the directory up and checks that vigil may read it, which
// a hung filesystem may never answer: access(2) asks the same first,
// outside the group. A mark waiting inside the group would hold the
// group's Close, and so its permission events, unanswered once its loop
// has stopped, for as long as the filesystem hangs.
func (m fsMark) place(g *fanotify.Group) (string, error) {
	for at := m.dir; ; at = filepath.Dir(at) {
		err := mayRead(at)
		if err == nil {
			err = g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, m.mask, unix.AT_FDCWD, at)
		}
		if err == nil || at == "/" || !(errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)) {
			if err != nil {
				err = fmt.Errorf("watch %s: mark the filesystem of %s: %w", m.path, at, err)
			}
			return at, err
		}
	}
}

// mayRead is access(2) for reading by vigil's own credentials, again when
// a signal interrupted it (FUSE fails an interrupted request with EINTR).
func mayRead(path string) error {
	for {
		err := unix.Faccessat(unix.AT_FDCWD, path, unix.R_OK, unix.AT_EACCESS)
		if err != unix.EINTR {
			return err
		}
	}
}

// placeMarks places marks at once, each on a goroutine of its own, and
// returns the errors of those placed within resolveTimeout; each mark
// placed is logged at level. A filesystem that does not answer, as a hung
// NFS or FUSE server, holds start-up no longer: its mark is placed when
// it answers, and the log says so then.
func placeMarks(g *fanotify.Group, marks []fsMark, level hclog.Level, log hclog.Logger) []error {
	type placed struct {
		at  string
		err error
	}
	place := func(m fsMark) placed {
		at, err := m.place(g)
		return placed{at, err}
	}
	late := func(m fsMark, p placed) {
		switch {
		case errors.Is(p.err, os.ErrClosed):
			// A reload or stop closed the group meanwhile.
			log.Debug("a filesystem answered after its group was closed", "path", m.path, "dir", p.at)
		case p.err != nil:
			log.Error("a filesystem that did not answer was not marked", "error", p.err)
		default:
			log.Info("filesystem marked once it answered", "path", m.path, "dir", p.at)
		}
	}
	got := answers.Within(marks, resolveTimeout, place, late)
	var (
		errs    []error
		waiting []string
	)
	for _, m := range marks {
		p, ok := got[m]
		switch {
		case !ok:
			waiting = append(waiting, m.dir)
		case p.err != nil:
			errs = append(errs, p.err)
		default:
			log.Log(level, "filesystem marked", "path", m.path, "dir", p.at)
		}
	}
	if len(waiting) > 0 {
		log.Warn("filesystem marks wait on filesystems that do not answer: each is placed when its filesystem answers",
			"dirs", waiting, "waited", resolveTimeout)
	}
	return errs
}

// submounts keeps the filesystems of filesystem-mode watches marked: a
// filesystem mark covers its own filesystem only, so each one mounted at
// or below such a watch needs its own, at start and whenever one is
// mounted later; and a watch's own filesystem is another one once a
// filesystem is mounted over a directory above it, or unmounted from
// there (a disk mounted late, a remount).
type submounts struct {
	src  *watch.MountSource
	done chan struct{}
}

// markSubmounts marks the filesystems mounted below p's filesystem-mode
// watches now and, whenever the mount table changes, every filesystem
// the watches are on then, telling out (nil-safe) too; nil without such
// a watch, or when mounts cannot be followed (said in the log).
func markSubmounts(g *fanotify.Group, p *policy.Policy, out *outside, log hclog.Logger) *submounts {
	if !hasFilesystemWatch(p) {
		return nil
	}
	src, err := watch.NewMountSource(log)
	if err != nil {
		log.Warn("filesystems mounted in a filesystem-mode watch after start are not marked", "error", err)
	}
	// The watches' own filesystems are markFilesystems'. As many as the
	// mounts below the watches: a line each is for debugging.
	remark(g, p, false, log)
	if src == nil {
		return nil
	}
	s := &submounts{src: src, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for range src.Events() {
			// A change marks all again: marking a filesystem twice is
			// nothing, and where a filesystem went is not always told
			// (watch.Remounted). One pass for the changes queued.
			for drained := false; !drained; {
				select {
				case _, ok := <-src.Events():
					drained = !ok
				default:
					drained = true
				}
			}
			remark(g, p, true, log)
			out.refollow()
		}
	}()
	return s
}

// remark marks the filesystems p's filesystem-mode watches are on now,
// their own (the filesystem of each watch's path, or of its nearest
// existing ancestor) when own is set.
func remark(g *fanotify.Group, p *policy.Policy, own bool, log hclog.Logger) {
	ms, err := mountinfo.Read()
	if err != nil {
		log.Warn("filesystems mounted in a filesystem-mode watch are not marked", "error", err)
		return
	}
	for _, err := range placeMarks(g, fsMarks(p, ms, own), hclog.Debug, log) {
		log.Warn("mark a filesystem of a filesystem-mode watch", "error", err)
	}
}

// fsMarks are the marks p's filesystem-mode watches need, with the
// mounts ms: one on each filesystem mounted at or below a watch, and,
// with own, one on the filesystem that holds the watch's path.
func fsMarks(p *policy.Policy, ms []mountinfo.Mount, own bool) []fsMark {
	var marks []fsMark
	for _, w := range p.Watches {
		if w.Mode != policy.ModeFilesystem {
			continue
		}
		if own {
			marks = append(marks, fsMark{path: w.Path, dir: w.Path, mask: fsMask(w)})
		}
		for _, m := range ms {
			if m.Point != w.Path && mountinfo.Under(m.Point, w.Path) {
				marks = append(marks, fsMark{path: w.Path, dir: m.Point, mask: fsMask(w)})
			}
		}
	}
	return marks
}

func hasFilesystemWatch(p *policy.Policy) bool {
	for _, w := range p.Watches {
		if w.Mode == policy.ModeFilesystem {
			return true
		}
	}
	return false
}

// close stops following mounts; the marks go with the group.
func (s *submounts) close() {
	if s == nil {
		return
	}
	s.src.Close()
	<-s.done
}
