package watch

import (
	"context"
	"path/filepath"
	"slices"
	"time"

	"github.com/vigilsec/vigil/internal/mountinfo"
)

// A hung NFS server or FUSE daemon blocks, for good, every system call on
// its filesystem: a walk that reaches a mount of it, or a look at one of
// its directories, never returns. The watch manager must still mark new
// directories everywhere else, and must not spend its own life waiting,
// so it runs its work under guard and leaves behind what makes no
// progress, avoiding the directories it is stuck at until it ends.
const (
	// stallAfter is how long the manager waits on work during which its
	// walks take up, list or mark nothing; it looks stallLooks times in
	// that span.
	stallAfter = 5 * time.Second
	stallLooks = 5
	// maxLeft bounds the work left behind at once: each job holds a
	// thread, stuck in the kernel. Beyond it the manager waits.
	maxLeft = 8
	// maxDeferred bounds the directories met below stuck ones while they
	// are stuck; beyond it every watch is walked again once they are not.
	maxDeferred = 4096
)

// guard runs job and waits for it. When the walks make no progress for
// stallAfter meanwhile, it leaves job behind (see leaveBehind) and returns
// false; the job still runs, and ends whenever the filesystem answers.
// dir is where job works, named when the walks are stuck nowhere. job gets
// ctx marked as its own: its walks do not avoid where it is stuck itself.
// job should end soon after ctx does: guard still waits for it then, so
// that nothing the job marks or tracks outlives the caller's use of them.
func (m *Manager) guard(ctx context.Context, dir string, job func(ctx context.Context)) bool {
	tag := new(jobTag)
	ctx = context.WithValue(ctx, jobKey{}, tag)
	done := make(chan struct{})
	go func() {
		defer close(done)
		job(ctx)
	}()
	taken, _ := m.walks()
	since := time.Now()
	tick := time.NewTicker(m.stallAfter / stallLooks)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return true
		case <-tick.C:
		}
		if now, _ := m.walks(); now != taken {
			taken, since = now, time.Now()
			continue
		}
		if time.Since(since) >= m.stallAfter && m.leaveBehind(dir, done, tag) {
			return false
		}
	}
}

// jobTag tells one guarded job from another, in its context under jobKey.
type jobTag struct{ _ byte } // not zero-sized: each is its own

type jobKey struct{}

func jobOf(ctx context.Context) *jobTag {
	tag, _ := ctx.Value(jobKey{}).(*jobTag)
	return tag
}

// walks is how far the manager's walks have come, and where they work
// now: see Walker.Progress.
func (m *Manager) walks() (taken uint64, busy []string) {
	taken, busy = m.walker.Progress()
	if m.unwalker != nil {
		n, more := m.unwalker.Progress()
		taken += n
		busy = append(busy, more...)
	}
	return taken, busy
}

// leaveBehind records a stalled job, at the directories the walks work on
// that no stalled job was stuck at before (at dir, if given, when there
// are none), and reports true; false when maxLeft jobs are stalled
// already.
func (m *Manager) leaveBehind(dir string, done <-chan struct{}, tag *jobTag) bool {
	_, busy := m.walks()
	points := mountPoints(busy)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left >= maxLeft {
		if !m.full {
			m.full = true
			m.log.Error("too many directory walks stalled on filesystems that do not answer: waiting for this one", "stalled", m.left, "dir", dir)
		}
		return false
	}
	var at []string
	for _, p := range busy {
		if len(m.stuck[p]) == 0 && !slices.Contains(at, p) {
			at = append(at, p)
		}
	}
	if len(at) == 0 && dir != "" {
		at = []string{dir}
	}
	for _, p := range at {
		m.stuck[p] = append(m.stuck[p], tag)
		if points[p] {
			m.rescues = append(m.rescues, filepath.Dir(p))
		}
	}
	m.anyStuck.Store(len(m.stuck) > 0)
	m.left++
	m.stalls.Add(1)
	m.log.Warn("directory walk stalled: a filesystem does not answer; going on without what is below, until it does",
		"at", at, "waited", m.stallAfter)
	go m.await(at, done, tag)
	m.poke()
	return true
}

// mountPoints tells which of dirs are mount points, from mountinfo:
// asking a hung one would wait.
func mountPoints(dirs []string) map[string]bool {
	if len(dirs) == 0 {
		return nil
	}
	ms, err := mountinfo.Read()
	if err != nil {
		return nil
	}
	points := make(map[string]bool)
	for _, mt := range ms {
		if slices.Contains(dirs, mt.Point) {
			points[mt.Point] = true
		}
	}
	return points
}

// poke has Run see to the stalled jobs' business: rescues and deferred
// directories.
func (m *Manager) poke() {
	select {
	case m.retry <- struct{}{}:
	default: // one is pending
	}
}

// rescue walks again the parents of the mount points stalled jobs were
// newly stuck at, avoiding those: a stalled walk may have held up their
// siblings, whose batch of leaves it checks one by one. (Below a
// directory that is not a mount point, the siblings are on the hung
// filesystem too.)
func (m *Manager) rescue(ctx context.Context) {
	m.mu.Lock()
	dirs := m.rescues
	m.rescues = nil
	m.mu.Unlock()
	for _, dir := range dirs {
		if !m.covered(dir) || m.isStuck(dir) {
			continue
		}
		m.guard(ctx, dir, func(ctx context.Context) {
			if _, err := m.walker.Subtree(ctx, dir); err != nil && ctx.Err() == nil {
				m.log.Error("walk beside a stalled walk", "dir", dir, "error", err)
			}
		})
	}
}

// await ends a stalled job's stay: once it is done, the directories it was
// stuck at are walked again as any other, and what was deferred meanwhile
// is handled.
func (m *Manager) await(at []string, done <-chan struct{}, tag *jobTag) {
	start := time.Now()
	<-done
	m.mu.Lock()
	for _, p := range at {
		owners := slices.DeleteFunc(m.stuck[p], func(o *jobTag) bool { return o == tag })
		if len(owners) == 0 {
			delete(m.stuck, p)
		} else {
			m.stuck[p] = owners
		}
	}
	m.anyStuck.Store(len(m.stuck) > 0)
	m.left--
	m.full = false
	m.mu.Unlock()
	m.log.Info("stalled directory walk ended", "at", at, "after", time.Since(start).Round(time.Millisecond))
	m.poke()
}

// avoid reports whether dir is at or below a directory another stalled
// job than ctx's is stuck at, and if so defers it: walking it would stall
// too. A job that was stuck there itself and goes on walks it.
func (m *Manager) avoid(ctx context.Context, dir string) bool {
	if !m.anyStuck.Load() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stuckLocked(dir, jobOf(ctx)) {
		return false
	}
	switch {
	case len(m.deferred) < maxDeferred:
		m.deferred = append(m.deferred, dir)
	case !m.overflowed:
		m.overflowed = true
		m.log.Warn("too many directories deferred below stalled walks: every watch is walked again once they end", "deferred", len(m.deferred))
	}
	return true
}

// stuckLocked reports whether dir is at or below a directory a stalled
// job other than self (nil: any) is stuck at.
func (m *Manager) stuckLocked(dir string, self *jobTag) bool {
	for p, owners := range m.stuck {
		if mountinfo.Under(dir, p) && slices.ContainsFunc(owners, func(o *jobTag) bool { return o != self }) {
			return true
		}
	}
	return false
}

// takeDeferred returns the deferred directories no longer below a stuck
// one, and whether every watch should be walked again instead.
func (m *Manager) takeDeferred() (dirs []string, resync bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.overflowed && len(m.stuck) == 0 {
		m.overflowed, m.deferred = false, nil
		return nil, true
	}
	kept := m.deferred[:0]
	for _, d := range m.deferred {
		if m.stuckLocked(d, nil) {
			kept = append(kept, d)
		} else {
			dirs = append(dirs, d)
		}
	}
	clear(m.deferred[len(kept):])
	m.deferred = kept
	return dirs, false
}
