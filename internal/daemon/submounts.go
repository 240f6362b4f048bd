package daemon

import (
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/watch"
)

// submounts keeps the filesystems mounted in filesystem-mode watches
// marked: a filesystem mark covers its own filesystem only, so each one
// mounted at or below such a watch needs its own, at start and whenever
// one is mounted later.
type submounts struct {
	src  *watch.MountSource
	done chan struct{}
}

// markSubmounts marks the filesystems mounted below p's filesystem-mode
// watches now, and follows the mounts made later; nil without such a
// watch, or when mounts cannot be followed (said in the log).
func markSubmounts(g *fanotify.Group, p *policy.Policy, log hclog.Logger) *submounts {
	if !hasFilesystemWatch(p) {
		return nil
	}
	src, err := watch.NewMountSource(log)
	if err != nil {
		log.Warn("filesystems mounted in a filesystem-mode watch after start are not marked", "error", err)
	}
	if ms, err := mountinfo.Read(); err != nil {
		log.Warn("filesystems mounted in a filesystem-mode watch are not marked", "error", err)
	} else {
		for _, m := range ms {
			markSubmount(g, p, m.Point, log)
		}
	}
	if src == nil {
		return nil
	}
	s := &submounts{src: src, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ev := range src.Events() {
			// Mounted, or unmounted: then this marks what is under it,
			// already marked or another submount.
			markSubmount(g, p, ev.Path, log)
		}
	}()
	return s
}

// markSubmount marks the filesystem at point, a mount point, if it lies
// in a filesystem-mode watch of p.
func markSubmount(g *fanotify.Group, p *policy.Policy, point string, log hclog.Logger) {
	for _, w := range p.Watches {
		if w.Mode != policy.ModeFilesystem || !mountinfo.Under(point, w.Path) {
			continue
		}
		mask := permMask(w.On) &^ unix.FAN_EVENT_ON_CHILD
		if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, point); err != nil {
			log.Warn("mark a filesystem mounted in a watch", "path", w.Path, "dir", point, "error", err)
			continue
		}
		log.Debug("filesystem marked", "path", w.Path, "dir", point)
	}
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
