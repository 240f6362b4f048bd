package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/testutil"
)

// fakeSource records what it is told to track; tests feed Handle directly.
type fakeSource struct {
	mu      sync.Mutex
	tracked map[string]devIno
	batches []int           // the number of directories of each Track call
	onTrack func(Dir)       // if set, called for each directory as it is tracked
	refuse  func(Dir) error // if set, a directory it fails is not tracked
	events  chan DirEvent
}

func newFakeSource() *fakeSource {
	return &fakeSource{tracked: map[string]devIno{}, events: make(chan DirEvent)}
}

func (s *fakeSource) Name() string            { return "fake" }
func (s *fakeSource) Events() <-chan DirEvent { return s.events }
func (s *fakeSource) Close() error            { close(s.events); return nil }

func (s *fakeSource) Track(ds ...Dir) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, d := range ds {
		if s.refuse != nil {
			if err := s.refuse(d); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		s.tracked[d.Path] = d.key()
		if s.onTrack != nil {
			s.onTrack(d)
		}
	}
	s.batches = append(s.batches, len(ds))
	return errors.Join(errs...)
}

// key returns the directory tracked at path.
func (s *fakeSource) key(path string) (devIno, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.tracked[path]
	return k, ok
}

func (s *fakeSource) Untrack(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.tracked {
		if mountinfo.Under(p, dir) {
			delete(s.tracked, p)
		}
	}
}

func (s *fakeSource) list(root string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for p := range s.tracked {
		if rel, err := filepath.Rel(root, p); err == nil {
			out = append(out, rel)
		}
	}
	slices.Sort(out)
	return out
}

type managerHarness struct {
	dir    string
	mark   *recorder
	unmark *recorder
	src    *fakeSource
	m      *Manager
}

func newManagerHarness(t *testing.T, roots ...Root) *managerHarness {
	t.Helper()
	return newManagerHarnessIn(t, t.TempDir(), roots...)
}

// newManagerHarnessIn is newManagerHarness in dir, which may hold a tree
// already.
func newManagerHarnessIn(t *testing.T, dir string, roots ...Root) *managerHarness {
	t.Helper()
	return newManagerHarnessLog(t, dir, nil, roots...)
}

// newManagerHarnessLog is newManagerHarnessIn with the manager logging to
// log.
func newManagerHarnessLog(t *testing.T, dir string, log hclog.Logger, roots ...Root) *managerHarness {
	t.Helper()
	h := &managerHarness{dir: dir, mark: newRecorder(), unmark: newRecorder(), src: newFakeSource()}
	h.m = NewManager(h.mark, h.unmark, Sources{Primary: []Source{h.src}}, log)
	for i := range roots {
		roots[i].Path = filepath.Join(h.dir, roots[i].Path)
	}
	if _, err := h.m.Place(context.Background(), roots); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *managerHarness) path(rel string) string { return filepath.Join(h.dir, rel) }

func (h *managerHarness) handle(op Op, rel, from, to string) {
	ev := DirEvent{Op: op, Path: h.path(rel), Source: "fake"}
	if from != "" {
		ev.From = h.path(from)
	}
	if to != "" {
		ev.To = h.path(to)
	}
	h.m.Handle(context.Background(), ev)
}

func (h *managerHarness) marks(t *testing.T, r *recorder) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for p := range r.marks {
		rel, _ := filepath.Rel(h.dir, p)
		out = append(out, rel)
	}
	slices.Sort(out)
	return out
}

func wantList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

func TestManagerCreated(t *testing.T) {
	h := newManagerHarness(t, Root{Path: "w", Recursive: true, Events: open})
	mkdirs(t, h.dir, "w", "outside")
	// Place ran before w existed: its parent is tracked to see it appear.
	wantList(t, "tracked before w exists", h.src.list(h.dir), []string{"."})

	h.handle(Created, "w", "", "")
	mkdirs(t, h.dir, "w/a/b/c", "outside/x")
	h.handle(Created, "w/a", "", "") // arrives with b/c already inside
	h.handle(Created, "outside/x", "", "")
	wantList(t, "marked", h.marks(t, h.mark), []string{"w", "w/a", "w/a/b", "w/a/b/c"})
	wantList(t, "tracked", h.src.list(h.dir), []string{".", "w", "w/a", "w/a/b", "w/a/b/c"})
	if n := h.m.Dirs(); n != 4 {
		t.Errorf("Dirs: got %d, want 4", n)
	}

	// A second source reporting the same directory costs no second walk.
	h.handle(Created, "w/a", "", "")
	h.mark.mu.Lock()
	calls := h.mark.calls[h.path("w/a/b")]
	h.mark.mu.Unlock()
	if calls != 1 {
		t.Errorf("w/a/b marked %d times after a duplicate event, want 1", calls)
	}
}

func TestManagerMovedAndRemoved(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a/b", "w/c", "out")
	h := newManagerHarnessIn(t, dir, Root{Path: "w", Recursive: true, Events: open})
	if n := h.m.Dirs(); n != 4 {
		t.Fatalf("Dirs after Place: got %d, want 4", n)
	}

	// Renamed within the tree: still marked, tracked under the new path.
	if err := os.Rename(h.path("w/a"), h.path("w/c/a2")); err != nil {
		t.Fatal(err)
	}
	h.handle(Moved, "w/c/a2", "w/a", "")
	wantList(t, "tracked after rename", h.src.list(dir), []string{"w", "w/c", "w/c/a2", "w/c/a2/b"})
	if n := h.m.Dirs(); n != 4 {
		t.Errorf("Dirs after rename within: got %d, want 4", n)
	}

	// Moved out, destination known: unmarked and untracked.
	if err := os.Rename(h.path("w/c/a2"), h.path("out/a3")); err != nil {
		t.Fatal(err)
	}
	h.handle(Removed, "w/c/a2", "", "out/a3")
	wantList(t, "tracked after move out", h.src.list(dir), []string{"w", "w/c"})
	wantList(t, "unmarked", h.marks(t, h.unmark), []string{"out/a3", "out/a3/b"})
	if n := h.m.Dirs(); n != 2 {
		t.Errorf("Dirs after move out: got %d, want 2", n)
	}

	// Deleted.
	if err := os.Remove(h.path("w/c")); err != nil {
		t.Fatal(err)
	}
	h.handle(Removed, "w/c", "", "")
	wantList(t, "tracked after rmdir", h.src.list(dir), []string{"w"})
	if n := h.m.Dirs(); n != 1 {
		t.Errorf("Dirs after rmdir: got %d, want 1", n)
	}
}

// A tree moved out and gone from where it went before its event is
// handled (moved on, back in, or removed, as under churn) has no marks
// left to remove there, and nothing to warn about: a soak of mv in and
// out of a watch logged "watch root missing" for the moved-out tree,
// seven lines a second, about a path that is no watch.
func TestManagerMovedOutAndOnIsQuiet(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a/b", "out")
	var buf testutil.SyncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	h := newManagerHarnessLog(t, dir, log, Root{Path: "w", Recursive: true, Events: open})
	for _, mv := range [][2]string{{"w/a", "out/a"}, {"out/a", "out/gone"}} {
		if err := os.Rename(h.path(mv[0]), h.path(mv[1])); err != nil {
			t.Fatal(err)
		}
	}
	h.handle(Removed, "w/a", "", "out/a")
	if n := h.m.Dirs(); n != 1 {
		t.Errorf("Dirs after move out: got %d, want 1", n)
	}
	if got := buf.String(); got != "" {
		t.Errorf("log after a tree moved out and on: got %q, want nothing", got)
	}
	// A watch's own root missing is still a warning.
	if err := os.Rename(h.path("w"), h.path("w2")); err != nil {
		t.Fatal(err)
	}
	h.handle(Resync, "", "", "")
	if got := buf.String(); !strings.Contains(got, "watch root missing") {
		t.Errorf("log after a watch's root went: got %q, want a warning that it is missing", got)
	}
}

// A walk cut short by a stop or a reload (the manager's context done) is
// no error: a soak reloading every 1.5 s under churn logged "walk new
// directory ... context canceled" at error level for one reload in
// fifteen.
func TestManagerCanceledWalkIsQuiet(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w")
	var buf testutil.SyncBuffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	h := newManagerHarnessLog(t, dir, log, Root{Path: "w", Recursive: true, Events: open})
	mkdirs(t, dir, "w/a/b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.m.Handle(ctx, DirEvent{Op: Created, Path: h.path("w/a"), Source: "fake"})
	h.m.Handle(ctx, DirEvent{Op: Resync, Source: "fake"})
	if got := buf.String(); strings.Contains(got, "[ERROR]") {
		t.Errorf("log after walks cut short by their context: got %q, want no error", got)
	}
}

// A missing root's ancestor that is removed and made again is tracked
// again: the sources track inodes, and the new one is not the old. A root
// made before that tracking took, which no source reports, is placed all
// the same.
func TestManagerPendingAncestorRemade(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "a")
	h := newManagerHarnessIn(t, dir, Root{Path: "a/b", Recursive: true, Events: open})
	wantKey := func(rel string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(h.path(rel), &st); err != nil {
			t.Fatal(err)
		}
		want := devIno{uint64(st.Dev), st.Ino}
		if got, ok := h.src.key(h.path(rel)); !ok || got != want {
			t.Errorf("%s: tracked %v (%v), want %v", rel, got, ok, want)
		}
	}
	wantKey("a")

	if err := os.Remove(h.path("a")); err != nil {
		t.Fatal(err)
	}
	h.handle(Removed, "a", "", "")
	wantKey(".")

	mkdirs(t, dir, "a")
	h.src.mu.Lock()
	h.src.onTrack = func(d Dir) {
		if d.Path == h.path("a") {
			mkdirs(t, dir, "a/b/c") // as the tracking takes: no event
		}
	}
	h.src.mu.Unlock()
	h.handle(Created, "a", "", "")
	wantKey("a")
	wantList(t, "marked", h.marks(t, h.mark), []string{"a/b", "a/b/c"})
}

// A directory deleted and made again at once often takes its inode number
// back. The manager walks it all the same: a leaf marked from its parent's
// listing, whose birth time it does not know, and a directory made later,
// whose birth time it knows.
func TestManagerDirMadeAgain(t *testing.T) {
	dir := testutil.MountExt4(t) // gives the number of a deleted inode to the next one
	mkdirs(t, dir, "w/leaf")
	h := newManagerHarnessIn(t, dir, Root{Path: "w", Recursive: true, Events: open})
	mkdirs(t, dir, "w/later/sub")
	h.handle(Created, "w/later", "", "")
	calls := func(rel string) int {
		h.mark.mu.Lock()
		defer h.mark.mu.Unlock()
		return h.mark.calls[h.path(rel)]
	}
	for _, rel := range []string{"w/leaf", "w/later"} {
		ino := func() uint64 {
			var st unix.Stat_t
			if err := unix.Stat(h.path(rel), &st); err != nil {
				t.Fatal(err)
			}
			return st.Ino
		}
		before, n := ino(), calls(rel)
		for range 5 {
			if err := os.RemoveAll(h.path(rel)); err != nil {
				t.Fatal(err)
			}
			mkdirs(t, dir, rel+"/new")
			if ino() == before {
				break
			}
		}
		if ino() != before {
			t.Skipf("%s: ext4 did not give the inode number back in 5 tries: nothing to tell apart", rel)
		}
		h.handle(Created, rel, "", "")
		if got := calls(rel); got != n+1 {
			t.Errorf("%s made again: marked %d times, want %d", rel, got, n+1)
		}
		if got := calls(rel + "/new"); got != 1 {
			t.Errorf("%s/new: marked %d times, want 1", rel, got)
		}
	}
}

func TestManagerResync(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a")
	h := newManagerHarnessIn(t, dir, Root{Path: "w", Recursive: true, Events: open})
	// Made while events were lost: only a resync finds it.
	mkdirs(t, dir, "w/a/lost/deeper")
	h.m.Handle(context.Background(), DirEvent{Op: Resync, Source: "fake"})
	wantList(t, "marked after resync", h.marks(t, h.mark), []string{"w", "w/a", "w/a/lost", "w/a/lost/deeper"})
	if s := h.m.Stats(); s.Resyncs != 1 {
		t.Errorf("resyncs: got %d, want 1", s.Resyncs)
	}
}

func TestManagerRun(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w")
	src := newFakeSource()
	mark := newRecorder()
	m := NewManager(mark, nil, Sources{Primary: []Source{src}}, nil)
	if _, err := m.Place(context.Background(), []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	mkdirs(t, dir, "w/new")
	src.events <- DirEvent{Op: Created, Path: filepath.Join(dir, "w/new"), Source: "fake"}
	src.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := m.Dirs(); n != 2 {
		t.Errorf("Dirs: got %d, want 2", n)
	}
}

// TestManagerCrossCheck: the cross-check source tracks only the roots
// during the first placement (the eBPF tracer, primary, does not see a
// root removed and made again), every directory still in place once Run
// has worked through the backlog, and a directory made later at once.
func TestManagerCrossCheck(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a/b", "w/c", "w/gone", "w/moved")
	primary, cross := newFakeSource(), newFakeSource()
	m := NewManager(newRecorder(), nil, Sources{Primary: []Source{primary}, CrossCheck: []Source{cross}}, nil)
	w := filepath.Join(dir, "w")
	if _, err := m.Place(context.Background(), []Root{{Path: w, Recursive: true, Events: open}}); err != nil {
		t.Fatal(err)
	}
	all := []string{".", "a", "a/b", "c", "gone", "moved"}
	wantList(t, "primary after Place", primary.list(w), all)
	wantList(t, "cross-check after Place", cross.list(w), []string{"."})

	// Between the placement and the backlog: removed, and replaced by
	// another directory. Neither old inode is tracked by its path.
	if err := os.Remove(filepath.Join(w, "gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(w, "moved"), filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	mkdirs(t, dir, "w/moved")

	if got := m.Stats().Backlog; got != len(all)-1 {
		t.Errorf("backlog before Run: got %d, want %d (all but the root)", got, len(all)-1)
	}
	select {
	case <-m.Settled():
		t.Error("Settled before the backlog was worked through")
	default:
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for m.Stats().Backlog > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("backlog still %d after 10s", m.Stats().Backlog)
		}
		time.Sleep(time.Millisecond)
	}
	mkdirs(t, dir, "w/new")
	primary.events <- DirEvent{Op: Created, Path: filepath.Join(w, "new"), Source: "fake"}
	primary.Close()
	cross.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantList(t, "cross-check after Run", cross.list(w), []string{".", "a", "a/b", "c", "new"})
	select {
	case <-m.Settled():
	default:
		t.Error("not Settled after the backlog")
	}
}

// The leaves of a directory are tracked in one call, the directory itself
// (opened and listed) in one of its own.
func TestManagerTracksLeavesInBatches(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a", "w/b", "w/c")
	src := newFakeSource()
	m := NewManager(newRecorder(), nil, Sources{Primary: []Source{src}}, nil)
	if _, err := m.Place(context.Background(), []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}}); err != nil {
		t.Fatal(err)
	}
	// After the batches: trackPending's calls, if any (none here: w exists).
	if !slices.Equal(src.batches, []int{1, 3}) {
		t.Errorf("Track calls by size: got %v, want [1 3]", src.batches)
	}
	select {
	case <-m.Settled(): // no cross-check source: nothing left after Place
	default:
		t.Error("not Settled after Place, with no cross-check source")
	}
}

// track_errors counts directories, not the batches a walk tracks them in.
func TestManagerCountsEachDirNotTracked(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a", "w/b", "w/c")
	src := newFakeSource()
	src.refuse = func(d Dir) error {
		if filepath.Base(d.Path) == "w" {
			return nil
		}
		return fmt.Errorf("track %s: %w", d.Path, unix.ENOSPC)
	}
	m := NewManager(newRecorder(), nil, Sources{Primary: []Source{src}}, nil)
	if _, err := m.Place(context.Background(), []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.batches, []int{1, 3}) {
		t.Fatalf("Track calls by size: got %v, want [1 3]", src.batches)
	}
	if got := m.Stats().TrackErrors; got != 3 {
		t.Errorf("TrackErrors = %d, want 3 (a, b and c)", got)
	}
}

// A directory gone before a source could track it (removed or renamed
// since it was marked) is no track error: a soak making and removing
// trees counted 16 in 40 s, every one ENOENT.
func TestManagerGoneIsNoTrackError(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a", "w/b", "w/c")
	src := newFakeSource()
	src.refuse = func(d Dir) error {
		switch filepath.Base(d.Path) {
		case "a":
			return fmt.Errorf("track %s: %w", d.Path, unix.ENOSPC)
		case "b", "c":
			return fmt.Errorf("inotify_add_watch %s: %w", d.Path, unix.ENOENT)
		}
		return nil
	}
	m := NewManager(newRecorder(), nil, Sources{Primary: []Source{src}}, nil)
	if _, err := m.Place(context.Background(), []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}}); err != nil {
		t.Fatal(err)
	}
	if got := m.Stats().TrackErrors; got != 1 {
		t.Errorf("TrackErrors = %d, want 1 (a; b and c were gone)", got)
	}
}

// batchRecorder is a BatchMarker: the manager hands it a walk's leaves in
// one call, and tracks only those it marked.
type batchRecorder struct {
	*recorder
	batches []int
}

func (b *batchRecorder) MarkDirs(ds []Dir, ev policy.Events, errs []error) {
	b.mu.Lock()
	b.batches = append(b.batches, len(ds))
	b.mu.Unlock()
	for i, d := range ds {
		errs[i] = b.MarkDir(d, ev)
	}
}

func TestManagerBatchMarker(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/a", "w/b", "w/c")
	mark := &batchRecorder{recorder: newRecorder()}
	mark.before = func(path string) error {
		if filepath.Base(path) == "b" {
			return errors.New("refused")
		}
		return nil
	}
	src := newFakeSource()
	m := NewManager(mark, nil, Sources{Primary: []Source{src}}, nil)
	st, err := m.Place(context.Background(), []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}})
	if err != nil {
		t.Fatal(err)
	}
	// w, then its leaves, then b again the ordinary way.
	if !slices.Equal(mark.batches, []int{1, 3, 1}) {
		t.Errorf("MarkDirs calls by size: got %v, want [1 3 1]", mark.batches)
	}
	if got, want := src.list(dir), []string{"w", "w/a", "w/c"}; !slices.Equal(got, want) {
		t.Errorf("tracked %v, want %v", got, want)
	}
	if st.Errors == 0 {
		t.Error("the refused mark was not counted")
	}
}

// TestManagerHungFilesystem: a walk stuck on a filesystem that does not
// answer is left behind, the manager marks new directories elsewhere
// meanwhile, and a directory reported below the stuck one is walked once
// the filesystem answers again.
func TestManagerHungFilesystem(t *testing.T) {
	fs := testutil.MountFUSE(t)
	dir := t.TempDir()
	mkdirs(t, dir, "w")
	h := &managerHarness{dir: dir, mark: newRecorder(), unmark: newRecorder(), src: newFakeSource()}
	h.m = NewManager(h.mark, h.unmark, Sources{Primary: []Source{h.src}}, nil)
	h.m.stallAfter = time.Second // a slow VM (vmtest under TCG) still walks a directory in that
	roots := []Root{{Path: h.path("w"), Recursive: true, Events: open}, {Path: fs.Dir, Recursive: true, Events: open}}
	if _, err := h.m.Place(context.Background(), roots); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { fs.Release(t) }) // first: a failing test may leave Run stuck
	send := func(ev DirEvent) {
		t.Helper()
		select {
		case h.src.events <- ev:
		case <-time.After(10 * time.Second):
			t.Fatalf("manager takes no event: stuck before %s %s", ev.Op, ev.Path)
		}
	}
	marked := func(path string) bool {
		h.mark.mu.Lock()
		defer h.mark.mu.Unlock()
		return h.mark.marks[path] != 0
	}
	waitMarked := func(what, path string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); !marked(path); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: %s not marked", what, path)
			}
		}
	}

	// Lost events: walking every watch again reaches the hung mount.
	fs.Hang(t, os.Getpid())
	send(DirEvent{Op: Resync, Source: "fake"})
	select {
	case <-fs.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("the walk never reached the hung filesystem")
	}

	mkdirs(t, dir, "w/new")
	send(DirEvent{Op: Created, Path: h.path("w/new"), Source: "fake"})
	waitMarked("made elsewhere while a walk is stuck", h.path("w/new"))
	if s := h.m.Stats(); s.Stalls != 1 || s.Stalled != 1 {
		t.Errorf("stats while stuck: stalls %d, stalled %d; want 1, 1", s.Stalls, s.Stalled)
	}

	// Made by another process, which the filesystem still serves, and
	// reported while the walk is stuck: deferred. The server lists no
	// directory, so only the deferral marks it once the filesystem
	// answers again.
	late := filepath.Join(fs.Dir, "late")
	if out, err := osexec.Command("mkdir", late).CombinedOutput(); err != nil {
		t.Fatalf("mkdir %s: %v: %s", late, err, out)
	}
	send(DirEvent{Op: Created, Path: late, Source: "fake"})
	if marked(late) {
		t.Fatalf("%s marked while its filesystem does not answer", late)
	}
	fs.Release(t)
	waitMarked("deferred below the stuck walk", late)
	for end := time.Now().Add(10 * time.Second); h.m.Stats().Stalled != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the stalled walk never ended")
		}
	}
}
