package onaccess

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/verdict"
)

// fakeIgnorer records ignore marks by inode, as the kernel holds them;
// during runs before IgnoreDir returns, as a rename racing the mark would.
type fakeIgnorer struct {
	mu      sync.Mutex
	marked  map[DirKey]bool
	ignores int
	during  func()
}

func (f *fakeIgnorer) IgnoreDir(fd int, mask uint64) error {
	if mask != unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD {
		return fmt.Errorf("got mask %#x", mask)
	}
	k, _ := dirKey(fd)
	f.mu.Lock()
	f.marked[k] = true
	f.ignores++
	f.mu.Unlock()
	if f.during != nil {
		f.during()
	}
	return nil
}

func (f *fakeIgnorer) UnignoreDir(fd int, mask uint64) error {
	k, _ := dirKey(fd)
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.marked, k)
	return nil
}

// list returns the marked directories under root by their paths now.
func (f *fakeIgnorer) list(t *testing.T, root string) []string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			var sb unix.Stat_t
			if unix.Stat(p, &sb) == nil && f.marked[DirKey{uint64(sb.Dev), uint64(sb.Ino)}] {
				s = append(s, p)
			}
		}
		return nil
	})
	slices.Sort(s)
	return s
}

// quietFixture: <root>/w is watched in filesystem mode, <root>/t in tree
// mode, <root>/out and its subdirectories are outside every watch.
func quietFixture(t *testing.T) (root string, pol *policy.Policy) {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"w/sub", "t", "out/a/b", "out/c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src := fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n  on = [\"open\"]\n}\nwatch %q {}\n",
		filepath.Join(root, "w"), filepath.Join(root, "t"))
	pol, diags := policy.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return root, pol
}

const quietMask = unix.FAN_OPEN_PERM | unix.FAN_EVENT_ON_CHILD

func TestQuietPlace(t *testing.T) {
	root, pol := quietFixture(t)
	tests := []struct {
		name      string
		dirs      []string // offered, relative to root
		wantMarks []string
	}{
		{"outside", []string{"out/a"}, []string{"out/a"}},
		{"twice is one mark", []string{"out/a", "out/a"}, []string{"out/a"}},
		{"root of the tree holding watches is outside", []string{"."}, []string{"."}},
		{"filesystem watch and below", []string{"w", "w/sub"}, nil},
		{"tree watch", []string{"t"}, nil},
		{"gone", []string{"out/nothing"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ig := &fakeIgnorer{marked: map[DirKey]bool{}}
			var c Counters
			q := NewQuiet(ig, pol, quietMask, followAll, &c, nil)
			for _, d := range tt.dirs {
				q.place(filepath.Join(root, d))
			}
			var want []string
			for _, d := range tt.wantMarks {
				want = append(want, filepath.Join(root, d))
			}
			if got := ig.list(t, root); !slices.Equal(got, want) {
				t.Errorf("marks: got %v want %v", got, want)
			}
			if got := c.Quieted.Load(); got != uint64(len(want)) || q.Len() != len(want) {
				t.Errorf("Quieted: got %d (set %d) want %d", got, q.Len(), len(want))
			}
		})
	}
}

// followAll is the owner of a Quiet that sees moves everywhere.
func followAll(int) bool { return true }

// A directory on a filesystem whose moves the owner does not see gets no
// mark: moved into a watch from there, it would keep it.
func TestQuietPlaceUnfollowed(t *testing.T) {
	root, pol := quietFixture(t)
	ig := &fakeIgnorer{marked: map[DirKey]bool{}}
	var c Counters
	var asked int
	q := NewQuiet(ig, pol, quietMask, func(int) bool { asked++; return false }, &c, nil)
	q.place(filepath.Join(root, "out/a"))
	if got := ig.list(t, root); len(got) != 0 || asked != 1 || q.Len() != 0 {
		t.Errorf("got marks %v, %d questions, set %d; want none, 1, 0", got, asked, q.Len())
	}
}

// A directory renamed into a watch between the check and the mark loses
// the mark at once.
func TestQuietPlaceRace(t *testing.T) {
	root, pol := quietFixture(t)
	ig := &fakeIgnorer{marked: map[DirKey]bool{}}
	ig.during = func() {
		if err := os.Rename(filepath.Join(root, "out/c"), filepath.Join(root, "w/c")); err != nil {
			t.Error(err)
		}
	}
	var c Counters
	q := NewQuiet(ig, pol, quietMask, followAll, &c, nil)
	q.place(filepath.Join(root, "out/c"))
	if got := ig.list(t, root); len(got) != 0 || ig.ignores != 1 {
		t.Errorf("got marks %v after %d placed, want none after 1", got, ig.ignores)
	}
	if c.QuietRaces.Load() != 1 || c.Quieted.Load() != 0 || !q.Empty() {
		t.Errorf("got races %d quieted %d set %d, want 1, 0, 0", c.QuietRaces.Load(), c.Quieted.Load(), q.Len())
	}
}

func TestQuietUnignore(t *testing.T) {
	root, pol := quietFixture(t)
	ig := &fakeIgnorer{marked: map[DirKey]bool{}}
	var c Counters
	q := NewQuiet(ig, pol, quietMask, followAll, &c, nil)
	for _, d := range []string{"out/a", "out/a/b", "out/c"} {
		q.place(filepath.Join(root, d))
	}
	// out/a moves in: its own mark is removed by descriptor.
	if err := os.Rename(filepath.Join(root, "out/a"), filepath.Join(root, "w/a")); err != nil {
		t.Fatal(err)
	}
	fd, err := OpenDir(unix.AT_FDCWD, filepath.Join(root, "w/a"))
	if err != nil {
		t.Fatal(err)
	}
	had, err := q.Unignore(fd)
	unix.Close(fd)
	if !had || err != nil {
		t.Errorf("Unignore(w/a): got %v, %v want true, nil", had, err)
	}
	// Everything else: out/c by its path; w/a/b moved away from it.
	if got := q.UnignoreAll(); got != 1 {
		t.Errorf("UnignoreAll: got %d unreached want 1 (out/a/b, now w/a/b)", got)
	}
	if got, want := ig.list(t, root), []string{filepath.Join(root, "w/a/b")}; !slices.Equal(got, want) {
		t.Errorf("marks left: got %v want %v", got, want)
	}
	if c.Unquieted.Load() != 2 || q.Len() != 1 {
		t.Errorf("got unquieted %d set %d, want 2 and 1", c.Unquieted.Load(), q.Len())
	}
}

// The loop answers an out-of-scope open first, then offers its directory;
// an open in a watch, even excluded, offers nothing.
func TestLoopOffersOutOfScope(t *testing.T) {
	root, pol := quietFixture(t)
	offered := make(chan string, 4)
	resp := &fakeResponder{done: make(chan struct{}, 16)}
	src := make(fakeSource)
	l := New(Config{
		Source: src, Responder: resp, Alerts: &fakeAlerts{}, Cache: verdict.NewCache(16),
		Quiet: offerFunc(func(dir string) {
			resp.mu.Lock()
			answered := len(resp.got)
			resp.mu.Unlock()
			if answered == 0 {
				t.Errorf("offered %s before the event was answered", dir)
			}
			offered <- dir
		}),
	}, &State{Policy: pol, Engine: &fakeEngine{}})
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	defer func() { close(src); <-done }()

	for _, tt := range []struct{ file, wantOffer string }{
		{"out/a/f", filepath.Join(root, "out/a")},
		{"w/sub/f", ""},
		{"t/f", ""},
	} {
		p := filepath.Join(root, tt.file)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		resp.mu.Lock()
		resp.got = nil
		resp.mu.Unlock()
		src <- []fanotify.Event{{Mask: unix.FAN_OPEN_PERM, Fd: fd, Pid: 1}}
		select {
		case <-resp.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no response", tt.file)
		}
		var got string
		select {
		case got = <-offered:
		case <-time.After(50 * time.Millisecond):
		}
		if got != tt.wantOffer {
			t.Errorf("%s: offered %q want %q", tt.file, got, tt.wantOffer)
		}
	}
}

type offerFunc func(string)

func (f offerFunc) Offer(dir string) { f(dir) }

// An offer for a directory marked already means the kernel dropped the
// mark with the evicted inode: it is marked again, and still counted once.
func TestQuietRemarkAfterEviction(t *testing.T) {
	root, pol := quietFixture(t)
	ig := &fakeIgnorer{marked: map[DirKey]bool{}}
	var c Counters
	q := NewQuiet(ig, pol, quietMask, followAll, &c, nil)
	dir := filepath.Join(root, "out/a")
	q.place(dir)
	ig.mu.Lock()
	clear(ig.marked) // evicted
	ig.mu.Unlock()
	q.place(dir)
	if got := ig.list(t, root); !slices.Equal(got, []string{dir}) {
		t.Errorf("marks after the second offer: got %v want [%s]", got, dir)
	}
	if ig.ignores != 2 || c.Quieted.Load() != 1 || q.Len() != 1 {
		t.Errorf("got %d ignore calls, Quieted %d, set %d; want 2, 1, 1", ig.ignores, c.Quieted.Load(), q.Len())
	}
}

// A full set lets go of the directories no longer where they were marked,
// and quiets the next one: directories made, opened and removed outside
// the watches (a soak, 290 a second) filled it within two minutes, and
// no directory was quieted again. One that moved away with its mark, let
// go of too, still loses the mark when it moves into a watch.
func TestQuietSweepsWhenFull(t *testing.T) {
	root, pol := quietFixture(t)
	ig := &fakeIgnorer{marked: map[DirKey]bool{}}
	var c Counters
	q := NewQuiet(ig, pol, quietMask, followAll, &c, nil)
	q.max = 3
	path := func(rel string) string { return filepath.Join(root, rel) }
	for _, d := range []string{"out/g1", "out/g2"} {
		if err := os.Mkdir(path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"out/a", "out/g1", "out/g2"} {
		q.place(path(d))
	}
	for _, d := range []string{"out/g1", "out/g2"} {
		if err := os.Remove(path(d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(path("out/a"), path("out/c/a")); err != nil { // moved away, marked
		t.Fatal(err)
	}

	q.place(path("out/c")) // the set is full
	if got := ig.list(t, root); !slices.Contains(got, path("out/c")) {
		t.Errorf("marks with a full set of gone directories: got %v, want out/c among them", got)
	}
	if q.Len() != 1 || q.Empty() {
		t.Errorf("set after the sweep: got %d (empty %v), want 1 (out/c), not empty", q.Len(), q.Empty())
	}

	// The directory let go of moves into a watch: its mark goes all the same.
	if err := os.Rename(path("out/c/a"), path("w/a")); err != nil {
		t.Fatal(err)
	}
	fd, err := OpenDir(unix.AT_FDCWD, path("w/a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Unignore(fd)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got := ig.list(t, path("w")); len(got) != 0 {
		t.Errorf("marks in the watch after Unignore: got %v, want none", got)
	}
	// And after lost events, the caller is told to look in the watches.
	if got := q.UnignoreAll(); got == 0 {
		t.Errorf("UnignoreAll after a sweep: got %d unreached, want some", got)
	}
	// A set full of directories still there is not swept again at once.
	for _, d := range []string{"out/c", "out/a2", "out/a3"} {
		os.MkdirAll(path(d), 0o755)
		q.place(path(d))
	}
	q.place(path("."))
	if q.Len() != 3 || slices.Contains(ig.list(t, root), root) {
		t.Errorf("a full set of live directories: got %d, %v; want 3, the root not marked", q.Len(), ig.list(t, root))
	}
}
