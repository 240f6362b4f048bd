package watch

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
)

// Manager keeps every directory of the watched trees marked: it places the
// marks at start, then follows its sources' directory events, walking
// whatever is created or moved in (it may already hold files and
// directories), forgetting what is removed or moved out, and walking
// everything again when a source lost events. Work stuck on a filesystem
// that does not answer is left behind (see guard), so that the rest of
// the watches are kept current meanwhile.
type Manager struct {
	log      hclog.Logger
	srcs     Sources
	walker   *Walker
	unwalker *Walker // nil without an unmarker
	marked   tree

	mu      sync.Mutex
	roots   []Root
	pending map[string]devIno // tracked, unmarked ancestors of missing roots
	// While the first placement runs, the directories it marked, for the
	// cross-check sources to track afterwards (in Run).
	placing  bool
	backlog  backlog
	backlogN int // directories in the backlog at the start of the pass
	backlogT time.Time
	settled  chan struct{} // closed once the backlog is worked through
	// The work left behind on filesystems that do not answer, see guard.
	stallAfter time.Duration
	left       int                  // stalled jobs
	stuck      map[string][]*jobTag // the directories they are stuck at, and which are
	rescues    []string             // their parents, to walk again beside them
	deferred   []string             // directories met below those meanwhile
	overflowed bool                 // more than maxDeferred were met: walk everything again
	full       bool                 // maxLeft jobs are stalled: guard waits (said once)
	anyStuck   atomic.Bool          // len(stuck) > 0, for the walks' hot path
	retry      chan struct{}        // a stalled job ended: walk what was deferred

	events    atomic.Uint64 // directory events handled
	busy      atomic.Int32  // events being handled (a walk may take long)
	resyncs   atomic.Uint64
	trackErrs atomic.Uint64
	stalls    atomic.Uint64
}

// Sources are what keeps the marks current.
type Sources struct {
	// Primary sources track each directory before the walk lists it: a
	// subdirectory made after the listing is reported by them, one made
	// before is found by the listing.
	Primary []Source
	// CrossCheck sources run beside the primary ones to confirm them and
	// catch what they lose. They track the directories of the first
	// placement after it, in Run, so that the placement pays for the
	// primary sources only; later directories they track at once. With
	// no primary source, make them primary.
	CrossCheck []Source
	// Others report what no directory source sees, as a filesystem
	// mounted in a watch (MountSource); they track nothing.
	Others []Source
}

// All is every source, primary first.
func (s Sources) All() []Source {
	return slices.Concat(s.Primary, s.CrossCheck, s.Others)
}

// NewManager returns a manager that marks directories through mark,
// removes marks from directories moved out through unmark (FAN_MARK_REMOVE),
// and tells the sources which directories to track. log may be nil.
func NewManager(mark, unmark Marker, srcs Sources, log hclog.Logger) *Manager {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{
		log:        log.Named("watch"),
		srcs:       srcs,
		pending:    make(map[string]devIno),
		settled:    make(chan struct{}),
		stallAfter: stallAfter,
		stuck:      make(map[string][]*jobTag),
		retry:      make(chan struct{}, 1),
	}
	m.walker = NewWalker(trackingMarker{m: m, mark: mark}, log)
	m.walker.avoid = m.avoid
	if unmark != nil {
		// A tree moved out is no business of the watches once stuck.
		m.unwalker = NewWalker(unmark, log)
		m.unwalker.avoid = func(_ context.Context, dir string) bool { return m.isStuck(dir) }
		// A tree moved out may be gone from where it went by the time
		// its event is handled (moved on, back in, or removed): a
		// warning for each flooded the log under churn, and said
		// nothing wrong.
		m.unwalker.missingLevel = hclog.Debug
	}
	return m
}

// placed is a directory the first placement marked, as the backlog of the
// cross-check sources keeps it: its descriptor is closed by then.
type placed struct {
	path string
	key  devIno
}

// backlog is a stack of placed directories in chunks: it grows with every
// directory of the first placement, on its hot path, and a slice would
// copy itself over and over.
type backlog struct {
	chunks [][]placed
	n      int
}

const backlogChunk = 4096

func (b *backlog) push(p placed) {
	if len(b.chunks) == 0 || len(b.chunks[len(b.chunks)-1]) == backlogChunk {
		b.chunks = append(b.chunks, make([]placed, 0, backlogChunk))
	}
	last := len(b.chunks) - 1
	b.chunks[last] = append(b.chunks[last], p)
	b.n++
}

// pop takes up to n directories off the top; the slice is the caller's.
func (b *backlog) pop(n int) []placed {
	if b.n == 0 {
		return nil
	}
	last := len(b.chunks) - 1
	c := b.chunks[last]
	out := slices.Clone(c[max(len(c)-n, 0):]) // a push may reuse the room
	if len(out) == len(c) {
		b.chunks[last] = nil
		b.chunks = b.chunks[:last]
	} else {
		b.chunks[last] = c[:len(c)-len(out)]
	}
	b.n -= len(out)
	return out
}

func (b *backlog) len() int { return b.n }

// trackingMarker marks a directory, then has the sources track it before
// the walk lists it.
type trackingMarker struct {
	m    *Manager
	mark Marker
}

func (t trackingMarker) MarkDir(d Dir, ev policy.Events) error {
	errs := []error{nil}
	t.MarkDirs([]Dir{d}, ev, errs)
	return errs[0]
}

func (t trackingMarker) MarkDirs(ds []Dir, ev policy.Events, errs []error) {
	m := t.m
	// The roots are tracked before they are marked, by the cross-check
	// too: nothing above a root is tracked, so a root removed and made
	// again is reported from its own tracking only (by inotify: the eBPF
	// tracer covers a root's insides, not the directories above it). A
	// root removed once its mark could be seen and before it was tracked
	// was reported by no source; and the cross-check's backlog tracks its
	// last directories a second after start-up at 100,000 directories.
	var roots []Dir
	for _, d := range ds {
		if m.walker.isRoot(d.Path) {
			roots = append(roots, d)
		}
	}
	m.track(m.srcs.Primary, roots...)
	m.track(m.srcs.CrossCheck, roots...)

	if bm, ok := t.mark.(BatchMarker); ok {
		bm.MarkDirs(ds, ev, errs)
	} else {
		for i, d := range ds {
			errs[i] = t.mark.MarkDir(d, ev)
		}
	}
	marked := ds
	if len(roots) > 0 || slices.ContainsFunc(errs[:len(ds)], func(err error) bool { return err != nil }) {
		marked = make([]Dir, 0, len(ds))
		for i, d := range ds {
			if errs[i] == nil {
				marked = append(marked, d)
			}
		}
	}
	if len(marked) == 0 {
		return
	}
	m.marked.setAll(marked)
	if len(roots) > 0 {
		marked = slices.DeleteFunc(marked, func(d Dir) bool { return m.walker.isRoot(d.Path) })
	}
	m.track(m.srcs.Primary, marked...)
	m.mu.Lock()
	placing := m.placing
	if placing && len(m.srcs.CrossCheck) > 0 {
		for _, d := range marked {
			m.backlog.push(placed{d.Path, d.key()})
		}
	}
	m.mu.Unlock()
	if !placing {
		m.track(m.srcs.CrossCheck, marked...)
	}
}

func (m *Manager) track(srcs []Source, ds ...Dir) {
	if len(ds) == 0 {
		return
	}
	for _, s := range srcs {
		if err := s.Track(ds...); err != nil {
			// Sources log their own limits once; this counts, and says
			// which at debug level.
			if n := notGone(err); n > 0 {
				m.trackErrs.Add(uint64(n))
				m.log.Debug("track", "source", s.Name(), "error", err)
			}
		}
	}
}

// notGone is the number of errors err joins, one a directory, from
// Source.Track, but for directories gone before they could be tracked
// (ENOENT: removed, or renamed, since they were marked). Those are no
// error: the source tracking their parent reports the rename, and a
// removed directory's mark went with it. Under churn (trees made and
// removed at once) they were most of track_errors.
func notGone(err error) int {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	n := 0
	for _, e := range errs {
		if !errors.Is(e, unix.ENOENT) {
			n++
		}
	}
	return n
}

// Place marks every root's tree and tracks the ancestors of roots that do
// not exist yet, so that they are placed when they appear. The
// cross-check sources track the first placement's directories in Run.
// A walk stalled on a filesystem that does not answer is left behind (see
// guard): Place then returns what is marked so far, with Stats.Stalled.
func (m *Manager) Place(ctx context.Context, roots []Root) (Stats, error) {
	start := time.Now()
	m.mu.Lock()
	m.roots = roots
	first := m.backlogT.IsZero()
	m.placing = first
	m.mu.Unlock()
	type result struct {
		st  Stats
		err error
	}
	res := make(chan result, 1)
	var r result
	if m.guard(ctx, "", func(ctx context.Context) {
		st, err := m.walker.Place(ctx, roots)
		m.trackPending(ctx)
		res <- result{st, err}
	}) {
		r = <-res
	} else {
		m.rescue(ctx)
		r = result{Stats{Dirs: m.marked.len(), Stalled: true, Elapsed: time.Since(start)}, ctx.Err()}
		go func() {
			if r := <-res; r.err != nil && ctx.Err() == nil {
				m.log.Error("stalled walk of the watches", "error", r.err)
			}
		}()
	}
	m.mu.Lock()
	if first {
		m.placing = false
		m.backlogN, m.backlogT = m.backlog.len(), time.Now()
		if m.backlogN == 0 {
			close(m.settled)
		}
	}
	m.mu.Unlock()
	return r.st, r.err
}

// crossCheckBatch is how many backlog directories Run tracks between two
// looks at the event channels: an event waits for at most one batch.
const crossCheckBatch = 64

// crossCheck has the cross-check sources track up to n directories of the
// backlog, and reports whether some are left. A directory is tracked only
// if its path still leads to the inode that was marked: one moved or
// removed since is the primary sources' and the events' business.
func (m *Manager) crossCheck(n int) bool {
	m.mu.Lock()
	batch := m.backlog.pop(n)
	left := m.backlog.len() > 0
	m.mu.Unlock()
	at := m.walker.enter()
	defer m.walker.leave(at)
	// At start-up every directory of the tree comes this way, and what
	// each allocates is garbage the daemon's peak memory is made of: the
	// directory goes to the sources in a slice made once per batch.
	one := make([]Dir, 1)
	for _, want := range batch {
		if m.isStuck(want.path) {
			continue // the primary sources track it
		}
		at.set(want.path)
		fd, err := openDir(unix.AT_FDCWD, want.path, unix.O_NOFOLLOW)
		if err == nil {
			if d, _, err := statDir(fd, want.path); err == nil && d.key() == want.key && m.marked.marked(d.Path, d.key()) {
				one[0] = d
				m.track(m.srcs.CrossCheck, one...)
			}
			unix.Close(fd)
		}
		at.set("")
	}
	if !left && len(batch) > 0 {
		m.log.Info("cross-check sources placed", "dirs", m.backlogN, "elapsed", time.Since(m.backlogT))
		close(m.settled)
	}
	return left
}

// Settled is closed once the cross-check sources track every directory
// of the first placement (at once after Place when there is nothing for
// them to do): what start-up allocated is garbage by then.
func (m *Manager) Settled() <-chan struct{} { return m.settled }

// Dirs is the number of directories marked now.
func (m *Manager) Dirs() int { return m.marked.len() }

// ManagerStats counts what the manager did since it started.
type ManagerStats struct {
	Events, Resyncs uint64
	TrackErrors     uint64 // directories a source could not track, one per source
	Stalls          uint64 // jobs left behind on filesystems that did not answer, see guard
	Stalled         int    // of those, still running
	Busy            bool   // handling an event now
	Backlog         int    // directories the cross-check sources have yet to track
}

// Stats returns the manager's counters.
func (m *Manager) Stats() ManagerStats {
	m.mu.Lock()
	backlog, stalled := m.backlog.len(), m.left
	m.mu.Unlock()
	return ManagerStats{
		Events: m.events.Load(), Resyncs: m.resyncs.Load(), TrackErrors: m.trackErrs.Load(),
		Stalls: m.stalls.Load(), Stalled: stalled, Busy: m.busy.Load() > 0, Backlog: backlog,
	}
}

// Run handles the sources' events until ctx is done or every source has
// closed its channel.
func (m *Manager) Run(ctx context.Context) error {
	in := make(chan DirEvent, 256)
	var wg sync.WaitGroup
	for _, s := range m.srcs.All() {
		wg.Go(func() {
			for ev := range s.Events() {
				select {
				case in <- ev:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(in) }()
	// While the cross-check backlog lasts, backlog is ready, and a batch of
	// it runs whenever no event is (or as often as one: select is fair).
	backlog := make(chan struct{})
	close(backlog)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-in:
			if !ok {
				return nil
			}
			m.Handle(ctx, ev)
		case <-m.retry:
			m.rescue(ctx)
			dirs, resync := m.takeDeferred()
			if resync {
				m.Handle(ctx, DirEvent{Op: Resync, Source: "stalled walks"})
			}
			for _, dir := range dirs {
				m.Handle(ctx, DirEvent{Op: Created, Path: dir, Source: "stalled walks"})
			}
		case <-backlog:
			left := make(chan bool, 1)
			// Left behind, the batch is tracked when it ends; the rest of
			// the backlog goes on.
			if m.guard(ctx, "", func(context.Context) { left <- m.crossCheck(crossCheckBatch) }) && !<-left {
				backlog = nil
			}
		}
	}
}

// Handle applies one directory event. It returns early, leaving the work
// behind, when that stalls on a filesystem that does not answer (see
// guard).
func (m *Manager) Handle(ctx context.Context, ev DirEvent) {
	m.events.Add(1)
	m.log.Trace("directory event", "op", ev.Op, "dir", ev.Path, "from", ev.From, "source", ev.Source)
	m.guard(ctx, ev.Path, func(ctx context.Context) {
		m.busy.Add(1)
		defer m.busy.Add(-1)
		m.handle(ctx, ev)
	})
}

func (m *Manager) handle(ctx context.Context, ev DirEvent) {
	switch ev.Op {
	case Created:
		// A directory made where an ancestor of a missing root stood is
		// another inode: the sources track it anew (see trackPending).
		m.unpend(ev.Path)
		m.created(ctx, ev.Path)
	case Moved:
		// The marks moved with the inodes; walking the new place updates
		// every path and picks up what the move brought along.
		m.unpend(ev.Path)
		m.created(ctx, ev.Path)
		m.forget(ev.From)
		if !m.covered(ev.Path) {
			m.unmarkTree(ctx, ev.Path)
		}
	case Removed:
		m.forget(ev.Path)
		if ev.To != "" && !m.covered(ev.To) {
			m.unmarkTree(ctx, ev.To)
		}
		// Sources report paths: another directory may stand there already.
		m.created(ctx, ev.Path)
	case Resync:
		m.resyncs.Add(1)
		m.log.Warn("directory events were lost: walking every watch again", "source", ev.Source)
		m.mu.Lock()
		roots := m.roots
		m.mu.Unlock()
		if _, err := m.walker.Place(ctx, roots); err != nil && ctx.Err() == nil {
			m.log.Error("resync", "error", err)
		}
	case Remounted:
		// Where a filesystem was replaced is not known: each root, and
		// each mount point in a watch, is walked if it is not the
		// directory marked there. inotify reports the unmount of the
		// directories it tracks, but it may be over its limit.
		for _, p := range m.remountedAt() {
			m.created(ctx, p)
		}
	}
	m.trackPending(ctx)
}

func (m *Manager) created(ctx context.Context, dir string) {
	if !m.covered(dir) && !m.aboveRoot(dir) || m.avoid(ctx, dir) {
		return
	}
	d, err := m.stat(dir)
	if err != nil {
		return // gone again, or not a directory (a symlink is not followed)
	}
	// Reported by several sources: marked already, and its new entries
	// are reported because it is tracked. Not so a directory made again
	// where one was marked, though it may have the same inode number.
	if m.marked.markedAs(dir, d) {
		return
	}
	// A walk cut short by a stop or a reload is no error: the next
	// group's manager walks the watches anew.
	if _, err := m.walker.Subtree(ctx, dir); err != nil && ctx.Err() == nil {
		m.log.Error("walk new directory", "dir", dir, "error", err)
	}
}

// forget stops tracking dir and what is below it, the ancestors of roots
// not marked among them. Deleted directories lose their marks with their
// inodes.
func (m *Manager) forget(dir string) {
	if m.marked.remove(dir) == 0 && !m.unpend(dir) {
		return
	}
	for _, s := range m.srcs.All() {
		s.Untrack(dir)
	}
}

// unpend drops the ancestors of missing roots at dir and below it from
// those tracked, so that trackPending tracks what stands there now anew,
// and reports whether there were any.
func (m *Manager) unpend(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	found := false
	for p := range m.pending {
		if mountinfo.Under(p, dir) {
			delete(m.pending, p)
			found = true
		}
	}
	return found
}

// unmarkTree removes the marks of a tree moved out of every watch.
func (m *Manager) unmarkTree(ctx context.Context, dir string) {
	if m.unwalker == nil {
		return
	}
	all := policy.EventOpen | policy.EventExec | policy.EventAccess
	if _, err := m.unwalker.Place(ctx, []Root{{Path: dir, Recursive: true, Events: all}}); err != nil {
		m.log.Debug("unmark moved-out tree", "dir", dir, "error", err)
	}
}

// remountedAt is where a filesystem may have been replaced, as seen from
// the watches: the roots, and the mount points they cover.
func (m *Manager) remountedAt() []string {
	m.mu.Lock()
	var at []string
	for _, r := range m.roots {
		at = append(at, r.Path)
	}
	m.mu.Unlock()
	ms, err := mountinfo.Read()
	if err != nil {
		m.log.Warn("read the mount table", "error", err)
	}
	for _, mt := range ms {
		if m.covered(mt.Point) {
			at = append(at, mt.Point)
		}
	}
	return at
}

// covered reports whether files in dir are watched by some root.
func (m *Manager) covered(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.roots {
		if mountinfo.Under(dir, r.Path) && (r.Recursive || dir == r.Path) {
			return true
		}
	}
	return false
}

// aboveRoot reports whether dir is a strict ancestor of some root.
func (m *Manager) aboveRoot(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.roots {
		if r.Path != dir && mountinfo.Under(r.Path, dir) {
			return true
		}
	}
	return false
}

// trackPending sees to each root that is not marked: the deepest
// existing ancestor of one that does not exist (yet) is tracked, without
// marks, so that the directory made next on the way down is reported.
func (m *Manager) trackPending(ctx context.Context) {
	m.mu.Lock()
	roots := m.roots
	m.mu.Unlock()
	for _, r := range roots {
		// A root marked is there: a hung one is not looked at again.
		if m.marked.has(r.Path) || m.isStuck(r.Path) {
			continue
		}
		m.pendRoot(ctx, r.Path)
	}
}

// maxPendLooks bounds pendRoot's looks at one root, against a path made
// and removed without end.
const maxPendLooks = 16

// pendRoot has the sources track the deepest existing ancestor of root. A
// directory made below that ancestor before the tracking took is reported
// by no source: so after tracking a directory anew it looks again, and
// places root if it is there by then. A root there at the first look is
// placed too, unless it is marked already (see created): it may have
// been made after the event that removed the one before had looked, and
// nothing above it reported that.
func (m *Manager) pendRoot(ctx context.Context, root string) {
	at := m.walker.enter()
	defer m.walker.leave(at)
	for look := 0; look < maxPendLooks; look++ {
		at.set(root)
		var st unix.Stat_t
		err := unix.Lstat(root, &st)
		at.set("")
		if err == nil {
			m.created(ctx, root)
			return
		}
		anew := false
		for dir := root; ; {
			parent := filepath.Dir(dir)
			if parent == dir || m.isStuck(parent) {
				return
			}
			dir = parent
			at.set(dir)
			exists, tracked := m.trackAncestor(dir)
			at.set("")
			if exists {
				anew = tracked
				break
			}
		}
		if !anew {
			return
		}
	}
}

// trackAncestor has the sources track dir, an ancestor of a root not
// marked, unless they track that directory already: another one may stand
// at its path now, and the sources track inodes. It reports whether dir
// exists (or cannot be told: true stops pendRoot's climb) and whether it
// was tracked anew.
func (m *Manager) trackAncestor(dir string) (exists, anew bool) {
	fd, err := openDir(unix.AT_FDCWD, dir, unix.O_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, false
	}
	if err != nil {
		return true, false
	}
	defer unix.Close(fd)
	d, _, err := statDir(fd, dir)
	if err != nil {
		m.trackErrs.Add(1)
		return true, false
	}
	m.mu.Lock()
	old, tracked := m.pending[dir]
	m.pending[dir] = d.key()
	m.mu.Unlock()
	if tracked && old == d.key() {
		return true, false
	}
	m.track(m.srcs.All(), d)
	return true, true
}

// stat is statAt for a path (a symlink is not followed), as the walks'
// own, for guard to tell where it waits.
func (m *Manager) stat(path string) (Dir, error) {
	at := m.walker.enter()
	defer m.walker.leave(at)
	at.set(path)
	d, _, err := statAt(unix.AT_FDCWD, path)
	return d, err
}

// isStuck reports whether dir is at or below a directory a stalled job is
// stuck at.
func (m *Manager) isStuck(dir string) bool {
	if !m.anyStuck.Load() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stuckLocked(dir, nil)
}
