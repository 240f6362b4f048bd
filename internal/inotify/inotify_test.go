package inotify

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/testutil"
	"github.com/vigilsec/vigil/internal/watch"
)

// quiet is how long a test waits for events that must not come: longer
// than moveGrace, so that a late move out would show.
const quiet = 5 * moveGrace

func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func bufLogger(buf *bytes.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Debug})
}

func track(t *testing.T, w *Watcher, dir string) error {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer unix.Close(fd)
	return w.Track(watch.Dir{Fd: fd, Path: dir})
}

// paths lists the tracked paths, sorted.
func (w *Watcher) paths() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ps []string
	w.tree.Walk(w.tree.Root(), "/", func(n *node, p string) {
		if n.Key() != 0 {
			ps = append(ps, p)
		}
	})
	slices.Sort(ps)
	return ps
}

// collect reads n events, then waits quiet for any extra one.
func collect(t *testing.T, w *Watcher, n int) []watch.DirEvent {
	t.Helper()
	return testutil.Collect(t, w.Events(), n, quiet)
}

func TestEvents(t *testing.T) {
	type ev struct {
		op         watch.Op
		path, from string // R/ is the tracked tree, O/ an untracked one
	}
	tests := []struct {
		name   string
		dirs   []string // made under R before tracking; O/ prefix: under O
		track  []string // under R, "." for R itself
		act    func(r, o string) error
		want   []ev
		alt    []ev // also right: the kernel's events split over two reads
		exotic bool // the filesystem may refuse the action
	}{
		{
			name:  "mkdir",
			track: []string{"."},
			act:   func(r, o string) error { return os.Mkdir(r+"/a", 0o755) },
			want:  []ev{{watch.Created, "R/a", ""}},
		},
		{
			// b and c are made in a, which the manager has not tracked yet:
			// walking a is what finds them.
			name:  "mkdir -p reports the top only",
			track: []string{"."},
			act:   func(r, o string) error { return os.MkdirAll(r+"/a/b/c", 0o755) },
			want:  []ev{{watch.Created, "R/a", ""}},
		},
		{
			name:  "rename in a directory",
			dirs:  []string{"a"},
			track: []string{".", "a"},
			act:   func(r, o string) error { return os.Rename(r+"/a", r+"/b") },
			want:  []ev{{watch.Moved, "R/b", "R/a"}},
		},
		{
			name:  "rename across tracked directories",
			dirs:  []string{"p", "q", "p/x"},
			track: []string{".", "p", "q", "p/x"},
			act:   func(r, o string) error { return os.Rename(r+"/p/x", r+"/q/y") },
			want:  []ev{{watch.Moved, "R/q/y", "R/p/x"}},
		},
		{
			name:  "rename of an untracked child",
			dirs:  []string{"a"},
			track: []string{"."},
			act:   func(r, o string) error { return os.Rename(r+"/a", r+"/b") },
			want:  []ev{{watch.Moved, "R/b", "R/a"}},
		},
		{
			name:  "rename in from an untracked directory",
			dirs:  []string{"O/x", "O/x/deep"},
			track: []string{"."},
			act:   func(r, o string) error { return os.Rename(o+"/x", r+"/x") },
			want:  []ev{{watch.Created, "R/x", ""}},
		},
		{
			name:  "rename out of a tracked directory",
			dirs:  []string{"a"},
			track: []string{".", "a"},
			act:   func(r, o string) error { return os.Rename(r+"/a", o+"/a") },
			want:  []ev{{watch.Removed, "R/a", ""}},
		},
		{
			name:  "rename out of an untracked child",
			dirs:  []string{"a"},
			track: []string{"."},
			act:   func(r, o string) error { return os.Rename(r+"/a", o+"/a") },
			want:  []ev{{watch.Removed, "R/a", ""}},
		},
		{
			name:  "rename out then mkdir of the same name keeps order",
			dirs:  []string{"a"},
			track: []string{"."},
			act: func(r, o string) error {
				if err := os.Rename(r+"/a", o+"/a"); err != nil {
					return err
				}
				return os.Mkdir(r+"/a", 0o755)
			},
			want: []ev{{watch.Removed, "R/a", ""}, {watch.Created, "R/a", ""}},
		},
		{
			name:  "rmdir",
			dirs:  []string{"a"},
			track: []string{".", "a"},
			act:   func(r, o string) error { return os.Remove(r + "/a") },
			want:  []ev{{watch.Removed, "R/a", ""}},
		},
		{
			name:  "rmdir of an untracked child",
			dirs:  []string{"a"},
			track: []string{"."},
			act:   func(r, o string) error { return os.Remove(r + "/a") },
		},
		{
			name:  "files are not reported",
			track: []string{"."},
			act: func(r, o string) error {
				if err := os.WriteFile(r+"/f", nil, 0o644); err != nil {
					return err
				}
				if err := os.Rename(r+"/f", r+"/g"); err != nil {
					return err
				}
				return os.Remove(r + "/g")
			},
		},
		{
			name:  "name with a newline",
			track: []string{"."},
			act:   func(r, o string) error { return os.Mkdir(r+"/a\nb", 0o755) },
			want:  []ev{{watch.Created, "R/a\nb", ""}},
		},
		{
			name:  "name not UTF-8",
			track: []string{"."},
			act:   func(r, o string) error { return os.Mkdir(r+"/\xff\xfe", 0o755) },
			want:  []ev{{watch.Created, "R/\xff\xfe", ""}},
		},
		{
			name:  "events after a move use the new path",
			dirs:  []string{"a"},
			track: []string{".", "a"},
			act: func(r, o string) error {
				if err := os.Rename(r+"/a", r+"/b"); err != nil {
					return err
				}
				return os.Mkdir(r+"/b/c", 0o755)
			},
			want: []ev{{watch.Moved, "R/b", "R/a"}, {watch.Created, "R/b/c", ""}},
		},
		{
			// The replaced directory's deletion must not report b removed.
			name:  "rename over an empty tracked directory",
			dirs:  []string{"a", "b"},
			track: []string{".", "a", "b"},
			act: func(r, o string) error {
				// os.Rename refuses to replace a directory.
				if err := unix.Rename(r+"/a", r+"/b"); err != nil {
					return err
				}
				return os.Mkdir(r+"/b/c", 0o755)
			},
			want: []ev{{watch.Moved, "R/b", "R/a"}, {watch.Created, "R/b/c", ""}},
		},
		{
			name:   "rename exchange",
			dirs:   []string{"a", "b"},
			track:  []string{".", "a", "b"},
			exotic: true,
			act: func(r, o string) error {
				if err := unix.Renameat2(unix.AT_FDCWD, r+"/a", unix.AT_FDCWD, r+"/b", unix.RENAME_EXCHANGE); err != nil {
					return err
				}
				if err := os.Mkdir(r+"/a/x", 0o755); err != nil {
					return err
				}
				return os.Mkdir(r+"/b/y", 0o755)
			},
			want: []ev{
				{watch.Moved, "R/b", "R/a"}, {watch.Moved, "R/a", "R/b"},
				{watch.Created, "R/a/x", ""}, {watch.Created, "R/b/y", ""},
			},
		},
		{
			// Its parent untracked, nothing else tells that another
			// directory stands there now.
			name:  "a tracked directory deleted while open, made again before it dies",
			dirs:  []string{"a"},
			track: []string{"a"},
			act: func(r, o string) error {
				f, err := os.Open(r + "/a")
				if err != nil {
					return err
				}
				defer f.Close() // the deletion is reported now
				if err := os.Remove(r + "/a"); err != nil {
					return err
				}
				return os.Mkdir(r+"/a", 0o755)
			},
			want: []ev{{watch.Created, "R/a", ""}},
		},
		{
			name:  "a tracked directory with an untracked parent moved away",
			dirs:  []string{"top"},
			track: []string{"top"},
			act:   func(r, o string) error { return os.Rename(r+"/top", r+"/top2") },
			want:  []ev{{watch.Removed, "R/top", ""}},
		},
		{
			name:  "a tracked directory with an untracked parent moved into a tracked one",
			dirs:  []string{"top", "dst"},
			track: []string{"top", "dst"},
			act: func(r, o string) error {
				if err := os.Rename(r+"/top", r+"/dst/top"); err != nil {
					return err
				}
				return os.Mkdir(r+"/dst/top/x", 0o755)
			},
			want: []ev{{watch.Moved, "R/dst/top", "R/top"}, {watch.Created, "R/dst/top/x", ""}},
			alt: []ev{
				{watch.Created, "R/dst/top", ""}, {watch.Moved, "R/dst/top", "R/top"},
				{watch.Created, "R/dst/top/x", ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, o := tempDir(t), tempDir(t)
			expand := func(p string) string {
				switch {
				case strings.HasPrefix(p, "R/"):
					return r + p[1:]
				case strings.HasPrefix(p, "O/"):
					return o + p[1:]
				}
				return p
			}
			for _, d := range tt.dirs {
				if !strings.HasPrefix(d, "O/") {
					d = "R/" + d
				}
				if err := os.MkdirAll(expand(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			w, err := New(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			for _, d := range tt.track {
				if err := track(t, w, filepath.Join(r, d)); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.act(r, o); err != nil {
				if tt.exotic && errors.Is(err, unix.EINVAL) {
					t.Skipf("filesystem refuses: %v", err)
				}
				t.Fatal(err)
			}
			events := func(evs []ev) []watch.DirEvent {
				var des []watch.DirEvent
				for _, e := range evs {
					des = append(des, watch.DirEvent{Op: e.op, Path: expand(e.path), From: expand(e.from), Source: "inotify"})
				}
				return des
			}
			want, alt := events(tt.want), events(tt.alt)
			got := collect(t, w, len(want))
			if len(alt) > len(got) && len(got) > len(want) {
				got = append(got, collect(t, w, len(alt)-len(got))...)
			}
			if !slices.Equal(got, want) && (alt == nil || !slices.Equal(got, alt)) {
				t.Errorf("got %q\nwant %q", got, want)
			}
		})
	}
}

func TestCloseClosesEvents(t *testing.T) {
	w, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := track(t, w, tempDir(t)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for range w.Events() {
		}
		close(done)
	}()
	if err := w.Close(); err != nil {
		t.Fatalf("close: got %v want nil", err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Events not closed by Close")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second close: got %v want nil", err)
	}
}

func TestUntrack(t *testing.T) {
	tests := []struct {
		name    string
		untrack string
		want    []string
	}{
		{name: "a directory and those below it, not its siblings", untrack: "a", want: []string{"ab", "c"}},
		{name: "a leaf", untrack: "a/b", want: []string{"a", "ab", "c"}},
		{name: "an unknown directory", untrack: "zz", want: []string{"a", "a/b", "ab", "c"}},
		{name: "a prefix that is not a directory", untrack: "a/", want: []string{"ab", "c"}},
		{name: "the parent of all", untrack: ".", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tempDir(t)
			w, err := newWatcher(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			for _, d := range []string{"a", "a/b", "ab", "c"} {
				if err := os.MkdirAll(r+"/"+d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := track(t, w, r+"/"+d); err != nil {
					t.Fatal(err)
				}
			}
			w.Untrack(filepath.Join(r, tt.untrack))
			var want []string
			for _, p := range tt.want {
				want = append(want, r+"/"+p)
			}
			if got := w.paths(); !slices.Equal(got, want) {
				t.Errorf("got %q want %q", got, want)
			}
			if got := w.Tracked(); got != len(want) {
				t.Errorf("Tracked: got %d want %d", got, len(want))
			}
		})
	}
}

func TestRetrack(t *testing.T) {
	tests := []struct {
		name string
		act  func(t *testing.T, w *Watcher, r string)
		want []string
	}{
		{
			name: "the same directory under a new path moves with its subtree",
			act: func(t *testing.T, w *Watcher, r string) {
				if err := os.Rename(r+"/a", r+"/z"); err != nil {
					t.Fatal(err)
				}
				if err := track(t, w, r+"/z"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"z", "z/b"},
		},
		{
			name: "another directory at a tracked path replaces the stale watch",
			act: func(t *testing.T, w *Watcher, r string) {
				if err := os.Rename(r+"/a/b", r+"/old"); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(r+"/a/b", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := track(t, w, r+"/a/b"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"a", "a/b"},
		},
		{
			name: "tracking again changes nothing",
			act: func(t *testing.T, w *Watcher, r string) {
				if err := track(t, w, r+"/a/b"); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"a", "a/b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tempDir(t)
			w, err := newWatcher(nil) // no reader: only Track changes paths
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := os.MkdirAll(r+"/a/b", 0o755); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"a", "a/b"} {
				if err := track(t, w, r+"/"+d); err != nil {
					t.Fatal(err)
				}
			}
			tt.act(t, w, r)
			var want []string
			for _, p := range tt.want {
				want = append(want, r+"/"+p)
			}
			if got := w.paths(); !slices.Equal(got, want) {
				t.Errorf("got %q want %q", got, want)
			}
			if got := w.Tracked(); got != len(want) {
				t.Errorf("Tracked: got %d want %d (a stale watch left)", got, len(want))
			}
		})
	}
}

func TestTrackErrors(t *testing.T) {
	w, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := tempDir(t)
	if err := w.Track(watch.Dir{Fd: -1, Path: "relative/dir"}); err == nil {
		t.Error("relative path: got nil want an error")
	}
	if err := w.Track(watch.Dir{Fd: -1, Path: r}); !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBADF) {
		t.Errorf("bad fd: got %v want ENOENT or EBADF", err)
	}
	f := r + "/file"
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := w.Track(watch.Dir{Fd: fd, Path: f}); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("a file: got %v want ENOTDIR", err)
	}
	if got := w.Tracked(); got != 0 {
		t.Errorf("Tracked: got %d want 0", got)
	}
}

// userWatches counts the inotify watches of root's processes.
func userWatches(t *testing.T) int {
	t.Helper()
	infos, _ := filepath.Glob("/proc/[0-9]*/fdinfo/*")
	n := 0
	for _, info := range infos {
		var st unix.Stat_t
		if unix.Stat(filepath.Dir(filepath.Dir(info)), &st) != nil || st.Uid != 0 {
			continue
		}
		b, err := os.ReadFile(info)
		if err != nil {
			continue
		}
		n += bytes.Count(b, []byte("inotify wd:"))
	}
	return n
}

func TestWatchLimit(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	old, err := os.ReadFile(maxUserWatches)
	if err != nil {
		t.Skipf("no inotify limit to lower: %v", err)
	}
	restore := func() {
		if err := os.WriteFile(maxUserWatches, old, 0o644); err != nil {
			t.Errorf("restore %s: %v", maxUserWatches, err)
		}
	}
	t.Cleanup(restore)

	var buf bytes.Buffer
	w, err := New(bufLogger(&buf))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r := tempDir(t)
	const dirs = 50
	for i := range dirs {
		if err := os.Mkdir(r+"/"+strconv.Itoa(i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Other programs of root's hold watches too: leave room for two of ours.
	if err := os.WriteFile(maxUserWatches, []byte(strconv.Itoa(userWatches(t)+2)), 0o644); err != nil {
		t.Skipf("cannot lower %s: %v", maxUserWatches, err)
	}
	failed := 0
	for i := range dirs {
		err := track(t, w, r+"/"+strconv.Itoa(i))
		switch {
		case errors.Is(err, unix.ENOSPC):
			failed++
		case err != nil:
			t.Errorf("track: got %v want nil or ENOSPC", err)
		}
	}
	// A later walk that fails again must not log again.
	w.mu.Lock()
	w.flushLimitWarning()
	w.mu.Unlock()
	for i := range dirs {
		track(t, w, r+"/"+strconv.Itoa(i))
	}
	restore()

	if failed == 0 {
		t.Fatalf("got no ENOSPC with the limit lowered to the watches in use")
	}
	if got := w.Untracked(); got != failed {
		t.Errorf("Untracked: got %d want %d", got, failed)
	}
	if got := w.Tracked() + w.Untracked(); got != dirs {
		t.Errorf("Tracked+Untracked: got %d want %d", got, dirs)
	}
	w.Close()
	log := buf.String()
	if got := strings.Count(log, "[WARN]"); got != 1 {
		t.Errorf("warnings: got %d want 1:\n%s", got, log)
	}
	m := regexp.MustCompile(`untracked=(\d+) .*fix="sysctl fs.inotify.max_user_watches=(\d+)"`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("warning lacks the counts or the sysctl:\n%s", log)
	}
	if m[1] != strconv.Itoa(failed) {
		t.Errorf("untracked in the warning: got %s want %d", m[1], failed)
	}
	if n, _ := strconv.Atoi(m[2]); n <= userWatches(t) {
		t.Errorf("suggested limit %d is not above the watches in use", n)
	}

	// Tracking again once the limit allows it clears the count.
	w2, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	fd, err := unix.Open(r+"/0", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	w2.mu.Lock()
	w2.tree.Pin(w2.tree.Ensure(r + "/0"))
	w2.mu.Unlock()
	if err := w2.Track(watch.Dir{Fd: fd, Path: r + "/0"}); err != nil {
		t.Fatal(err)
	}
	if got := w2.Untracked(); got != 0 {
		t.Errorf("Untracked after a later success: got %d want 0", got)
	}
}

func TestSuggestLimit(t *testing.T) {
	tests := []struct {
		needed, limit, want int
	}{
		{needed: 9000, limit: 8192, want: 16384},
		{needed: 600000, limit: 524288, want: 1048576},
		{needed: 100, limit: 8192, want: 16384},
		{needed: 100, limit: 0, want: 8192},
	}
	for _, tt := range tests {
		if got := suggestLimit(tt.needed, tt.limit); got != tt.want {
			t.Errorf("suggestLimit(%d, %d): got %d want %d", tt.needed, tt.limit, got, tt.want)
		}
	}
}

// A leaf the walk did not open is tracked by its parent's fd and its name,
// in a batch with others: each gets a watch that reports what is made in
// it, and a symlink in a leaf's place is not followed.
func TestTrackByName(t *testing.T) {
	r := tempDir(t)
	for _, d := range []string{"p/a", "p/b", "elsewhere"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(r, "elsewhere"), filepath.Join(r, "p", "link")); err != nil {
		t.Fatal(err)
	}
	w, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pfd, err := unix.Open(filepath.Join(r, "p"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd)
	byName := func(name string) watch.Dir {
		return watch.Dir{Fd: pfd, Name: name, Path: filepath.Join(r, "p", name)}
	}
	err = w.Track(byName("a"), byName("link"), byName("b"))
	if !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
		t.Errorf("Track with a symlink among the leaves: got %v, want its ENOTDIR or ELOOP", err)
	}
	want := []string{filepath.Join(r, "p", "a"), filepath.Join(r, "p", "b")}
	if got := w.paths(); !slices.Equal(got, want) {
		t.Fatalf("tracked: got %q want %q", got, want)
	}
	made := filepath.Join(r, "p", "b", "new")
	if err := os.Mkdir(made, 0o755); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.Events():
		if ev.Op != watch.Created || ev.Path != made {
			t.Errorf("got %v %s, want created %s", ev.Op, ev.Path, made)
		}
	case <-time.After(2 * time.Second):
		t.Fatalf("no event for %s", made)
	}
}

// The limit warning says the directories it could not watch are still
// followed only where another source follows them; alone, it says they
// are not.
func TestWatchLimitWarningSole(t *testing.T) {
	for _, sole := range []bool{false, true} {
		var buf bytes.Buffer
		w, err := newWatcher(bufLogger(&buf))
		if err != nil {
			t.Fatal(err)
		}
		if sole {
			w.Sole()
		}
		w.mu.Lock()
		w.noteLimit()
		w.flushLimitWarning()
		w.mu.Unlock()
		w.Close()
		log := buf.String()
		if got := strings.Contains(log, "the other sources keep protecting them"); got == sole {
			t.Errorf("sole %v: the warning says other sources protect: %v\n%s", sole, got, log)
		}
		if got := strings.Contains(log, "are not marked"); got != sole {
			t.Errorf("sole %v: the warning says new directories are not marked: %v\n%s", sole, got, log)
		}
	}
}

// Tracking allocates nothing of its own: at start-up the cross-check
// tracks every directory of the tree one by one, and what each call
// allocated (a closure, the path to the descriptor, its C string) was
// the most of the daemon's peak memory. Tracking a directory tracked
// already under its path is what is left: the path built to compare.
func TestTrackAllocations(t *testing.T) {
	w, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dir := tempDir(t)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	one := []watch.Dir{{Fd: fd, Path: dir}}
	if err := w.Track(one...); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := w.Track(one...); err != nil {
			t.Fatal(err)
		}
	})
	// Path builds the tracked path to compare it: at most two, and two
	// the race detector makes.
	limit := 2.0
	if testutil.Race {
		limit = 4
	}
	if allocs > limit {
		t.Errorf("Track of a tracked directory: %.1f allocations, want at most %.0f", allocs, limit)
	}
}
