package watch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/policy"
)

// Manager keeps every directory of the watched trees marked: it places the
// marks at start, then follows its sources' directory events, walking
// whatever is created or moved in (it may already hold files and
// directories), forgetting what is removed or moved out, and walking
// everything again when a source lost events.
type Manager struct {
	log     hclog.Logger
	unmark  Marker
	sources []Source
	walker  *Walker
	marked  tree

	mu      sync.Mutex
	roots   []Root
	pending map[string]bool // tracked, unmarked ancestors of missing roots

	events    atomic.Uint64 // directory events handled
	busy      atomic.Bool   // an event is being handled (a walk may take long)
	resyncs   atomic.Uint64
	trackErrs atomic.Uint64
}

// NewManager returns a manager that marks directories through mark,
// removes marks from directories moved out through unmark (FAN_MARK_REMOVE),
// and tells every source which directories to track. log may be nil.
func NewManager(mark, unmark Marker, sources []Source, log hclog.Logger) *Manager {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Manager{
		log:     log.Named("watch"),
		unmark:  unmark,
		sources: sources,
		pending: make(map[string]bool),
	}
	m.walker = NewWalker(trackingMarker{m: m, mark: mark}, log)
	return m
}

// trackingMarker marks a directory, then has every source track it before
// the walk lists it: a subdirectory made after the listing is reported by
// a source, one made before is found by the listing.
type trackingMarker struct {
	m    *Manager
	mark Marker
}

func (t trackingMarker) MarkDir(fd int, path string, ev policy.Events) error {
	if err := t.mark.MarkDir(fd, path, ev); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		t.m.marked.set(path, devIno{uint64(st.Dev), st.Ino})
	}
	t.m.track(fd, path)
	return nil
}

func (m *Manager) track(fd int, dir string) {
	for _, s := range m.sources {
		if err := s.Track(fd, dir); err != nil {
			// Sources log their own limits once; this only counts.
			m.trackErrs.Add(1)
		}
	}
}

// Place marks every root's tree and tracks the ancestors of roots that do
// not exist yet, so that they are placed when they appear.
func (m *Manager) Place(ctx context.Context, roots []Root) (Stats, error) {
	m.mu.Lock()
	m.roots = roots
	m.mu.Unlock()
	st, err := m.walker.Place(ctx, roots)
	m.trackPending()
	return st, err
}

// Dirs is the number of directories marked now.
func (m *Manager) Dirs() int { return m.marked.len() }

// ManagerStats counts what the manager did since it started.
type ManagerStats struct {
	Events, Resyncs, TrackErrors uint64
	Busy                         bool // handling an event now
}

// Stats returns the manager's counters.
func (m *Manager) Stats() ManagerStats {
	return ManagerStats{Events: m.events.Load(), Resyncs: m.resyncs.Load(), TrackErrors: m.trackErrs.Load(), Busy: m.busy.Load()}
}

// Run handles the sources' events until ctx is done or every source has
// closed its channel.
func (m *Manager) Run(ctx context.Context) error {
	in := make(chan DirEvent, 256)
	var wg sync.WaitGroup
	for _, s := range m.sources {
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-in:
			if !ok {
				return nil
			}
			m.Handle(ctx, ev)
		}
	}
}

// Handle applies one directory event.
func (m *Manager) Handle(ctx context.Context, ev DirEvent) {
	m.events.Add(1)
	m.busy.Store(true)
	defer m.busy.Store(false)
	m.log.Trace("directory event", "op", ev.Op, "dir", ev.Path, "from", ev.From, "source", ev.Source)
	switch ev.Op {
	case Created:
		m.created(ctx, ev.Path)
	case Moved:
		// The marks moved with the inodes; walking the new place updates
		// every path and picks up what the move brought along.
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
		if _, err := m.walker.Place(ctx, roots); err != nil {
			m.log.Error("resync", "error", err)
		}
	}
	m.trackPending()
}

func (m *Manager) created(ctx context.Context, dir string) {
	if !m.covered(dir) && !m.aboveRoot(dir) {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return // gone again, or not a directory (a symlink is not followed)
	}
	// Reported by several sources: marked already, and its new entries
	// are reported because it is tracked.
	if m.marked.marked(dir, devIno{uint64(st.Dev), st.Ino}) {
		return
	}
	if _, err := m.walker.Subtree(ctx, dir); err != nil {
		m.log.Error("walk new directory", "dir", dir, "error", err)
	}
}

// forget stops tracking dir and what is below it. Deleted directories
// lose their marks with their inodes.
func (m *Manager) forget(dir string) {
	if m.marked.remove(dir) == 0 {
		return
	}
	for _, s := range m.sources {
		s.Untrack(dir)
	}
}

// unmarkTree removes the marks of a tree moved out of every watch.
func (m *Manager) unmarkTree(ctx context.Context, dir string) {
	if m.unmark == nil {
		return
	}
	all := policy.EventOpen | policy.EventExec | policy.EventAccess
	if _, err := NewWalker(m.unmark, m.log).Place(ctx, []Root{{Path: dir, Recursive: true, Events: all}}); err != nil {
		m.log.Debug("unmark moved-out tree", "dir", dir, "error", err)
	}
}

// covered reports whether files in dir are watched by some root.
func (m *Manager) covered(dir string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.roots {
		if under(dir, r.Path) && (r.Recursive || dir == r.Path) {
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
		if r.Path != dir && under(r.Path, dir) {
			return true
		}
	}
	return false
}

// trackPending has the sources track the deepest existing ancestor of
// each root that does not exist (yet), without marking it, so that its
// creation is seen.
func (m *Manager) trackPending() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.roots {
		if _, err := os.Lstat(r.Path); err == nil {
			continue
		}
		dir := r.Path
		for {
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
			fd, err := openDir(unix.AT_FDCWD, dir, unix.O_NOFOLLOW)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				break
			}
			if !m.pending[dir] {
				m.pending[dir] = true
				for _, s := range m.sources {
					if err := s.Track(fd, dir); err != nil {
						m.trackErrs.Add(1)
					}
				}
			}
			unix.Close(fd)
			break
		}
	}
}
