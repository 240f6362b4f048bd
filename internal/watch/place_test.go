package watch

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/testutil"
)

const (
	open   = policy.EventOpen
	exec   = policy.EventExec
	access = policy.EventAccess
)

// recorder is an in-memory Marker.
type recorder struct {
	mu    sync.Mutex
	marks map[string]policy.Events
	calls map[string]int
	// before, if set, runs at each call and may fail it.
	before func(path string) error
}

func newRecorder() *recorder {
	return &recorder{marks: map[string]policy.Events{}, calls: map[string]int{}}
}

func (r *recorder) MarkDir(d Dir, events policy.Events) error {
	path := d.Path
	var st unix.Stat_t
	if err := unix.Fstatat(d.Fd, d.Name, &st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("mark %s: fd %d name %q is not a directory (%v)", path, d.Fd, d.Name, err)
	}
	if d.Dev != uint64(st.Dev) || d.Ino != st.Ino {
		return fmt.Errorf("mark %s: Dir says dev %d ino %d, fstat %d %d", path, d.Dev, d.Ino, st.Dev, st.Ino)
	}
	if r.before != nil {
		if err := r.before(path); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marks[path] |= events
	r.calls[path]++
	return nil
}

// relative returns the marks with paths relative to dir ("." for dir).
func (r *recorder) relative(t *testing.T, dir string) map[string]policy.Events {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	got := map[string]policy.Events{}
	for p, ev := range r.marks {
		rel, err := filepath.Rel(dir, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("marked %q outside the test tree %s", p, dir)
			continue
		}
		if n := r.calls[p]; n != 1 {
			t.Errorf("%s marked %d times, want once", rel, n)
		}
		got[rel] = ev
	}
	return got
}

func mkdirs(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func diffMarks(got, want map[string]policy.Events) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok {
			fmt.Fprintf(&b, "\n  %q: got no mark want %03b", k, want[k])
		} else if g != want[k] {
			fmt.Fprintf(&b, "\n  %q: got %03b want %03b", k, g, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "\n  %q: got %03b want no mark", k, got[k])
		}
	}
	return b.String()
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name string
		// setup builds the tree in dir and returns the roots.
		setup     func(t *testing.T, dir string) []Root
		want      map[string]policy.Events
		wantStats Stats // Elapsed ignored
	}{
		{
			name: "recursive tree",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "a/b/c", "a/d", "e")
				if err := os.WriteFile(filepath.Join(dir, "a/file"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return []Root{{Path: dir, Recursive: true, Events: open}}
			},
			want:      map[string]policy.Events{".": open, "a": open, "a/b": open, "a/b/c": open, "a/d": open, "e": open},
			wantStats: Stats{Dirs: 6},
		},
		{
			name: "symlinks not followed",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "tree/x", "outside/y")
				symlink(t, "../outside", filepath.Join(dir, "tree/out"))
				symlink(t, ".", filepath.Join(dir, "tree/x/self"))
				symlink(t, "/nonexistent", filepath.Join(dir, "tree/dangling"))
				return []Root{{Path: filepath.Join(dir, "tree"), Recursive: true, Events: open}}
			},
			want:      map[string]policy.Events{"tree": open, "tree/x": open},
			wantStats: Stats{Dirs: 2},
		},
		{
			name: "non-recursive root",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "a/b", "c")
				return []Root{{Path: dir, Events: exec}}
			},
			want:      map[string]policy.Events{".": exec},
			wantStats: Stats{Dirs: 1},
		},
		{
			name: "nested roots take the union",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "top/side", "top/mid/deep", "top/mid/leaf/under",
					"other/plain", "other/r/s")
				return []Root{
					// Out of order on purpose: Place must not depend on it.
					{Path: filepath.Join(dir, "top/mid/leaf"), Events: access},
					{Path: filepath.Join(dir, "top/mid"), Recursive: true, Events: exec},
					{Path: filepath.Join(dir, "top"), Recursive: true, Events: open},
					{Path: filepath.Join(dir, "other/r"), Recursive: true, Events: open},
					{Path: filepath.Join(dir, "other"), Events: access},
				}
			},
			want: map[string]policy.Events{
				"top":                open,
				"top/side":           open,
				"top/mid":            open | exec,
				"top/mid/deep":       open | exec,
				"top/mid/leaf":       open | exec | access,
				"top/mid/leaf/under": open | exec,
				"other":              access,
				"other/r":            open,
				"other/r/s":          open,
			},
			wantStats: Stats{Dirs: 9},
		},
		{
			name: "same directory by two paths",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "real/sub")
				symlink(t, "real", filepath.Join(dir, "link"))
				return []Root{
					{Path: filepath.Join(dir, "real"), Recursive: true, Events: open},
					{Path: filepath.Join(dir, "link"), Recursive: true, Events: exec},
				}
			},
			want:      map[string]policy.Events{"real": open | exec, "real/sub": open | exec},
			wantStats: Stats{Dirs: 2},
		},
		{
			name: "missing root and file root",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "here/a")
				if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return []Root{
					{Path: filepath.Join(dir, "nope"), Recursive: true, Events: open},
					{Path: filepath.Join(dir, "here/a/nope"), Recursive: true, Events: open},
					{Path: filepath.Join(dir, "file"), Recursive: true, Events: open},
					{Path: filepath.Join(dir, "here"), Recursive: true, Events: open},
				}
			},
			want:      map[string]policy.Events{"here": open, "here/a": open},
			wantStats: Stats{Dirs: 2, Missing: 3},
		},
		{
			name: "odd names",
			setup: func(t *testing.T, dir string) []Root {
				mkdirs(t, dir, "a b/c  d", "new\nline", "\xff\xfe", "ü", " ", "-x", "tab\tx")
				return []Root{{Path: dir, Recursive: true, Events: open}}
			},
			want: map[string]policy.Events{
				".": open, "a b": open, "a b/c  d": open, "new\nline": open,
				"\xff\xfe": open, "ü": open, " ": open, "-x": open, "tab\tx": open,
			},
			wantStats: Stats{Dirs: 9},
		},
		{
			name: "no roots",
			setup: func(t *testing.T, dir string) []Root {
				return nil
			},
			want: map[string]policy.Events{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testutil.TempDir(t)
			roots := tt.setup(t, dir)
			fds := openFDs(t)
			rec := newRecorder()
			st, err := Place(context.Background(), rec, roots, hclog.NewNullLogger())
			if err != nil {
				t.Fatalf("got error %v want none", err)
			}
			if d := diffMarks(rec.relative(t, dir), tt.want); d != "" {
				t.Errorf("marks:%s", d)
			}
			st.Elapsed = 0
			if st != tt.wantStats {
				t.Errorf("stats: got %+v want %+v", st, tt.wantStats)
			}
			if got := openFDs(t); got != fds {
				t.Errorf("open fds: got %d want %d (leak)", got, fds)
			}
		})
	}
}

func TestPlaceVanished(t *testing.T) {
	dir := testutil.TempDir(t)
	mkdirs(t, dir, "p/c1/x", "p/c2/x", "p/c3/x")
	rec := newRecorder()
	var once sync.Once
	// The first child of p to be marked removes its siblings, which p's
	// listing has already queued.
	rec.before = func(path string) error {
		if filepath.Dir(path) == filepath.Join(dir, "p") {
			once.Do(func() {
				for _, c := range []string{"c1", "c2", "c3"} {
					if p := filepath.Join(dir, "p", c); p != path {
						os.RemoveAll(p)
					}
				}
			})
		}
		return nil
	}
	w := NewWalker(rec, nil)
	w.workers = 1 // deterministic order
	fds := openFDs(t)
	st, err := w.Place(context.Background(), []Root{{Path: dir, Recursive: true, Events: open}})
	if err != nil {
		t.Fatalf("got error %v want none", err)
	}
	// dir, p, the surviving child and its x; the two others fail to open.
	if st.Dirs != 4 || st.Errors != 2 {
		t.Errorf("got dirs=%d errors=%d want dirs=4 errors=2", st.Dirs, st.Errors)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open fds: got %d want %d (leak)", got, fds)
	}
}

func TestPlaceMarkErrors(t *testing.T) {
	dir := testutil.TempDir(t)
	var names []string
	for i := range 20 {
		names = append(names, fmt.Sprintf("bad%02d/ok", i))
	}
	mkdirs(t, dir, names...)
	rec := newRecorder()
	rec.before = func(path string) error {
		if strings.HasPrefix(filepath.Base(path), "bad") {
			return fmt.Errorf("fanotify_mark: %w", unix.EIO)
		}
		return nil
	}
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})
	st, err := Place(context.Background(), rec, []Root{{Path: dir, Recursive: true, Events: open}}, log)
	if err != nil {
		t.Fatalf("got error %v want none", err)
	}
	// The children of a directory that failed are still marked.
	if st.Dirs != 21 || st.Errors != 20 {
		t.Errorf("got dirs=%d errors=%d want dirs=21 errors=20", st.Dirs, st.Errors)
	}
	if got := strings.Count(logs.String(), "mark directory"); got != maxMarkErrLogs {
		t.Errorf("mark errors logged: got %d want %d\n%s", got, maxMarkErrLogs, logs.String())
	}
	if !strings.Contains(logs.String(), "mark errors not logged") {
		t.Errorf("got no summary of the errors not logged:\n%s", logs.String())
	}
}

func TestPlaceMarkLimit(t *testing.T) {
	dir := testutil.TempDir(t)
	mkdirs(t, dir, "a/b/c", "d/e/f")
	rec := newRecorder()
	n := 0
	rec.before = func(path string) error {
		if n++; n > 3 {
			return fmt.Errorf("fanotify_mark: %w", unix.ENOSPC)
		}
		return nil
	}
	w := NewWalker(rec, nil)
	w.workers = 1
	fds := openFDs(t)
	st, err := w.Place(context.Background(), []Root{
		{Path: dir, Recursive: true, Events: open},
		{Path: filepath.Join(dir, "z"), Recursive: true, Events: open},
	})
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("got error %v want ENOSPC", err)
	}
	for _, want := range []string{"after 3 directories", "fs.fanotify.max_user_marks"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error %q want it to contain %q", err, want)
		}
	}
	if st.Dirs != 3 {
		t.Errorf("got dirs=%d want 3", st.Dirs)
	}
	if st.Missing != 0 {
		t.Errorf("got missing=%d want 0: roots after the limit are not tried", st.Missing)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open fds: got %d want %d (leak)", got, fds)
	}
}

// Running out of descriptors ends the walk with an error naming the limit,
// rather than leaving what it could not open unmarked, counted as errors.
func TestPlaceOutOfDescriptors(t *testing.T) {
	dir := testutil.TempDir(t)
	var paths []string
	var grow func(p string, depth int)
	grow = func(p string, depth int) {
		if depth == 0 {
			paths = append(paths, p)
			return
		}
		grow(p+"/a", depth-1)
		grow(p+"/b", depth-1)
	}
	grow("t", 6) // a walk holds a parent open until its children are
	mkdirs(t, dir, paths...)

	w := NewWalker(newRecorder(), nil)
	w.workers = 1
	release := testutil.FillDescriptors(t, 4) // room for the root and a few more
	_, err := w.Place(context.Background(), []Root{{Path: dir, Recursive: true, Events: open}})
	release()
	if !errors.Is(err, unix.EMFILE) {
		t.Fatalf("got error %v, want EMFILE", err)
	}
	for _, want := range []string{"out of file descriptors after", "RLIMIT_NOFILE", "LimitNOFILE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error %q, want it to contain %q", err, want)
		}
	}
}

func TestPlaceCanceled(t *testing.T) {
	dir := testutil.TempDir(t)
	mkdirs(t, dir, "a/b/c", "d/e/f", "g/h/i")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	n := 0
	rec.before = func(string) error {
		if n++; n == 2 {
			cancel()
		}
		return nil
	}
	w := NewWalker(rec, nil)
	w.workers = 1
	fds := openFDs(t)
	st, err := w.Place(ctx, []Root{{Path: dir, Recursive: true, Events: open}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got error %v want context.Canceled", err)
	}
	// The root, then the batch of its subdirectories the cancel came in.
	if st.Dirs != 4 {
		t.Errorf("got dirs=%d want 4 of 10", st.Dirs)
	}
	if got := openFDs(t); got != fds {
		t.Errorf("open fds: got %d want %d (leak)", got, fds)
	}
}

func TestSubtree(t *testing.T) {
	dir := testutil.TempDir(t)
	mkdirs(t, dir, "rec", "flat", "rec/inner")
	rec := newRecorder()
	w := NewWalker(rec, nil)
	roots := []Root{
		{Path: filepath.Join(dir, "rec"), Recursive: true, Events: open},
		{Path: filepath.Join(dir, "rec/inner"), Recursive: true, Events: exec},
		{Path: filepath.Join(dir, "flat"), Events: open},
		{Path: filepath.Join(dir, "later/r"), Recursive: true, Events: access},
	}
	if _, err := w.Place(context.Background(), roots); err != nil {
		t.Fatal(err)
	}
	// Directories appear after Place.
	mkdirs(t, dir, "rec/new/a/b", "rec/inner/n/m", "flat/sub/x", "later/r/s", "elsewhere/q")

	tests := []struct {
		name     string
		dir      string
		want     map[string]policy.Events
		wantDirs int
	}{
		{name: "under recursive root", dir: "rec/new", wantDirs: 3,
			want: map[string]policy.Events{"rec/new": open, "rec/new/a": open, "rec/new/a/b": open}},
		{name: "under nested roots", dir: "rec/inner/n", wantDirs: 2,
			want: map[string]policy.Events{"rec/inner/n": open | exec, "rec/inner/n/m": open | exec}},
		{name: "under non-recursive root", dir: "flat/sub", want: map[string]policy.Events{}},
		{name: "root appears", dir: "later", wantDirs: 2,
			want: map[string]policy.Events{"later/r": access, "later/r/s": access}},
		{name: "outside every root", dir: "elsewhere", want: map[string]policy.Events{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec.mu.Lock()
			clear(rec.marks)
			clear(rec.calls)
			rec.mu.Unlock()
			st, err := w.Subtree(context.Background(), filepath.Join(dir, tt.dir))
			if err != nil {
				t.Fatalf("got error %v want none", err)
			}
			if d := diffMarks(rec.relative(t, dir), tt.want); d != "" {
				t.Errorf("marks:%s", d)
			}
			if st.Dirs != tt.wantDirs || st.Errors != 0 {
				t.Errorf("got dirs=%d errors=%d want dirs=%d errors=0", st.Dirs, st.Errors, tt.wantDirs)
			}
		})
	}
}

// dirent encodes one linux_dirent64 record.
func dirent(ino uint64, typ uint8, name string) []byte {
	reclen := (direntName + len(name) + 1 + 7) &^ 7
	b := make([]byte, reclen)
	binary.NativeEndian.PutUint64(b[direntIno:], ino)
	binary.NativeEndian.PutUint16(b[direntReclen:], uint16(reclen))
	b[direntType] = typ
	copy(b[direntName:], name)
	return b
}

func TestParseDirents(t *testing.T) {
	type ent struct {
		name string
		typ  uint8
	}
	tests := []struct {
		name    string
		buf     []byte
		want    []ent
		wantErr bool
	}{
		{
			name: "entries",
			buf: slices.Concat(
				dirent(1, unix.DT_DIR, "."), dirent(2, unix.DT_DIR, ".."),
				dirent(3, unix.DT_DIR, "d"), dirent(4, unix.DT_REG, "f"),
				dirent(0, unix.DT_DIR, "gone"), dirent(5, unix.DT_UNKNOWN, "u\n\xff"),
				dirent(6, unix.DT_LNK, "a-rather-long-name-to-cross-an-alignment-boundary"),
			),
			want: []ent{{"d", unix.DT_DIR}, {"f", unix.DT_REG}, {"u\n\xff", unix.DT_UNKNOWN},
				{"a-rather-long-name-to-cross-an-alignment-boundary", unix.DT_LNK}},
		},
		{name: "empty", buf: nil},
		{name: "truncated", buf: dirent(3, unix.DT_DIR, "d")[:direntName-1], wantErr: true},
		{name: "bad reclen", buf: func() []byte {
			b := dirent(3, unix.DT_DIR, "d")
			binary.NativeEndian.PutUint16(b[direntReclen:], uint16(len(b)+8))
			return b
		}(), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ent
			err := parseDirents(tt.buf, func(name []byte, typ uint8, _ uint64) {
				got = append(got, ent{string(name), typ})
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestIsDir(t *testing.T) {
	dir := testutil.TempDir(t)
	mkdirs(t, dir, "d")
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	symlink(t, "d", filepath.Join(dir, "l"))
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tests := []struct {
		name    string
		entry   string
		typ     uint8
		want    bool
		wantErr bool
	}{
		{name: "dir by type", entry: "d", typ: unix.DT_DIR, want: true},
		{name: "file by type", entry: "f", typ: unix.DT_REG},
		{name: "symlink by type", entry: "l", typ: unix.DT_LNK},
		{name: "unknown dir", entry: "d", typ: unix.DT_UNKNOWN, want: true},
		{name: "unknown file", entry: "f", typ: unix.DT_UNKNOWN},
		{name: "unknown symlink to dir", entry: "l", typ: unix.DT_UNKNOWN},
		{name: "unknown vanished", entry: "gone", typ: unix.DT_UNKNOWN, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := isDir(fd, tt.entry, tt.typ)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %v want %v", got, tt.want)
			}
		})
	}
}

func TestStatsRate(t *testing.T) {
	tests := []struct {
		name string
		st   Stats
		want float64
	}{
		{name: "half second", st: Stats{Dirs: 1000, Elapsed: 500_000_000}, want: 2000},
		{name: "no time", st: Stats{Dirs: 1000}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.st.Rate(); got != tt.want {
				t.Errorf("got %v want %v", got, tt.want)
			}
		})
	}
}

// A subdirectory made between the walk's stat of a directory and its mark
// is reported by no source (not tracked yet when it was made): the walk
// must still find it, though the directory looked like a leaf.
func TestPlaceSubdirMadeDuringMark(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/leaf")
	rec := newRecorder()
	made := false
	rec.before = func(path string) error {
		if path == filepath.Join(dir, "w", "leaf") && !made {
			made = true
			return os.Mkdir(filepath.Join(path, "late"), 0o755)
		}
		return nil
	}
	if _, err := Place(context.Background(), rec, []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}}, nil); err != nil {
		t.Fatal(err)
	}
	got := rec.relative(t, dir)
	if _, ok := got["w/leaf/late"]; !ok {
		t.Errorf("marks: got %v, want w/leaf/late among them", got)
	}
}

// A leaf the batch marked by name but found swapped for another directory
// when it checked is walked the ordinary way: the directory now at that
// name is marked, and so is what it holds.
func TestPlaceLeafSwapped(t *testing.T) {
	dir := t.TempDir()
	mkdirs(t, dir, "w/leaf", "elsewhere/sub")
	rec := newRecorder()
	swapped := false
	rec.before = func(path string) error {
		if path == filepath.Join(dir, "w", "leaf") && !swapped {
			swapped = true
			if err := os.Rename(path, filepath.Join(dir, "gone")); err != nil {
				return err
			}
			return os.Rename(filepath.Join(dir, "elsewhere"), path)
		}
		return nil
	}
	st, err := Place(context.Background(), rec, []Root{{Path: filepath.Join(dir, "w"), Recursive: true, Events: open}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// w/leaf is marked twice, by name before the check and the ordinary
	// way after it: the first mark was on whatever stood there then.
	rec.mu.Lock()
	calls := maps.Clone(rec.calls)
	rec.mu.Unlock()
	want := map[string]int{"w": 1, "w/leaf": 2, "w/leaf/sub": 1}
	for rel, n := range want {
		if got := calls[filepath.Join(dir, rel)]; got != n {
			t.Errorf("%s marked %d times, want %d", rel, got, n)
		}
	}
	if st.Dirs != 3 {
		t.Errorf("dirs: got %d, want 3 (w, w/leaf, w/leaf/sub)", st.Dirs)
	}
}

// TestPlaceBindMountListedAgain reaches one tree by two paths, a bind
// mount first with fewer events: its directories are walked again for the
// events the first walk lacked, leaves included, and counted once.
func TestPlaceBindMountListedAgain(t *testing.T) {
	dir := testutil.MountTmpfs(t) // exact link counts: leaves are batched
	mkdirs(t, dir, "real/sub/leaf1", "real/leaf2", "other")
	other := filepath.Join(dir, "other")
	testutil.BindMount(t, filepath.Join(dir, "real"), other)
	rec := newRecorder()
	st, err := Place(context.Background(), rec, []Root{
		{Path: other, Recursive: true, Events: exec}, // walked first: paths go in order
		{Path: filepath.Join(dir, "real"), Recursive: true, Events: open},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]policy.Events{
		"other": exec, "other/sub": exec, "other/sub/leaf1": exec, "other/leaf2": exec,
		"real": open | exec, "real/sub": open | exec, "real/sub/leaf1": open | exec, "real/leaf2": open | exec,
	}
	if d := diffMarks(rec.relative(t, dir), want); d != "" {
		t.Errorf("marks:%s", d)
	}
	if st.Dirs != 4 {
		t.Errorf("dirs: got %d, want 4 (real, sub, leaf1, leaf2, each once)", st.Dirs)
	}
}
