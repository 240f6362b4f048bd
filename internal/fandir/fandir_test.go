package fandir

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/pathtree"
	"github.com/vigilsec/vigil/internal/testutil"
	"github.com/vigilsec/vigil/internal/watch"
)

// quiet is how long a test waits for events that must not come.
const quiet = 50 * time.Millisecond

// newTest starts a source, skipping where the kernel has no fanotify
// directory events (and failing where the probe says it has).
func newTest(t *testing.T) *Source {
	t.Helper()
	testutil.SkipUnlessRoot(t)
	if err := features.FanotifyDirEvents(); errors.Is(err, features.ErrNotSupported) {
		t.Skipf("no fanotify directory events: %v", err)
	}
	s, err := New(nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func track(t *testing.T, s *Source, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open %s: %v", dir, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		err = s.Track(watch.Dir{Fd: fd, Path: dir, Dev: st.Dev, Ino: st.Ino})
		unix.Close(fd)
		if err != nil {
			t.Fatalf("Track %s: %v", dir, err)
		}
	}
}

// collect reads n events, then waits quiet for any extra one.
func collect(t *testing.T, s *Source, n int) []watch.DirEvent {
	t.Helper()
	return testutil.Collect(t, s.Events(), n, quiet)
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func ev(op watch.Op, path string) watch.DirEvent {
	return watch.DirEvent{Op: op, Path: path, Source: name}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name  string
		setup []string // directories made before tracking, relative
		track []string // tracked, relative ("" is the top)
		do    func(t *testing.T, top, out string)
		want  func(top, out string) []watch.DirEvent
	}{
		{
			name:  "mkdir",
			track: []string{""},
			do: func(t *testing.T, top, _ string) {
				mkdirs(t, top+"/new")
				if err := os.WriteFile(top+"/file", nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: func(top, _ string) []watch.DirEvent { return []watch.DirEvent{ev(watch.Created, top+"/new")} },
		},
		{
			name:  "mkdir -p reports the top, in a tracked subdirectory",
			setup: []string{"a"},
			track: []string{"", "a"},
			do:    func(t *testing.T, top, _ string) { mkdirs(t, top+"/a/b/c/d") },
			want:  func(top, _ string) []watch.DirEvent { return []watch.DirEvent{ev(watch.Created, top+"/a/b")} },
		},
		{
			name:  "moved in",
			setup: []string{"a"},
			track: []string{"", "a"},
			do: func(t *testing.T, top, out string) {
				mkdirs(t, out+"/x/y")
				if err := os.Rename(out+"/x", top+"/a/x"); err != nil {
					t.Fatal(err)
				}
			},
			want: func(top, _ string) []watch.DirEvent { return []watch.DirEvent{ev(watch.Created, top+"/a/x")} },
		},
		{
			name:  "moved within, and followed there",
			setup: []string{"a/sub", "b"},
			track: []string{"", "a", "b", "a/sub"},
			do: func(t *testing.T, top, _ string) {
				if err := os.Rename(top+"/a/sub", top+"/b/sub2"); err != nil {
					t.Fatal(err)
				}
				mkdirs(t, top+"/b/sub2/new")
			},
			want: func(top, _ string) []watch.DirEvent {
				return []watch.DirEvent{
					{Op: watch.Moved, Path: top + "/b/sub2", From: top + "/a/sub", Source: name},
					ev(watch.Created, top+"/b/sub2/new"),
				}
			},
		},
		{
			name:  "moved out, and not followed there",
			setup: []string{"a/sub"},
			track: []string{"", "a", "a/sub"},
			do: func(t *testing.T, top, out string) {
				if err := os.Rename(top+"/a/sub", out+"/sub"); err != nil {
					t.Fatal(err)
				}
				mkdirs(t, out+"/sub/new")
			},
			want: func(top, _ string) []watch.DirEvent { return []watch.DirEvent{ev(watch.Removed, top+"/a/sub")} },
		},
		{
			name:  "rmdir",
			setup: []string{"a"},
			track: []string{"", "a"},
			do: func(t *testing.T, top, _ string) {
				if err := os.Remove(top + "/a"); err != nil {
					t.Fatal(err)
				}
			},
			want: func(top, _ string) []watch.DirEvent { return []watch.DirEvent{ev(watch.Removed, top+"/a")} },
		},
		{
			name:  "exchanged, and each followed where it went",
			setup: []string{"a/x", "b/y"},
			track: []string{"", "a", "b", "a/x", "b/y"},
			do: func(t *testing.T, top, _ string) {
				if err := unix.Renameat2(unix.AT_FDCWD, top+"/a/x", unix.AT_FDCWD, top+"/b/y", unix.RENAME_EXCHANGE); err != nil {
					t.Skipf("renameat2(RENAME_EXCHANGE): %v", err)
				}
				mkdirs(t, top+"/b/y/from-x", top+"/a/x/from-y")
			},
			want: func(top, _ string) []watch.DirEvent {
				return []watch.DirEvent{
					{Op: watch.Moved, Path: top + "/b/y", From: top + "/a/x", Source: name},
					{Op: watch.Moved, Path: top + "/a/x", From: top + "/b/y", Source: name},
					ev(watch.Created, top+"/b/y/from-x"),
					ev(watch.Created, top+"/a/x/from-y"),
				}
			},
		},
		{
			name:  "moved over an empty directory",
			setup: []string{"a/x", "b/y"},
			track: []string{"", "a", "b", "a/x", "b/y"},
			do: func(t *testing.T, top, _ string) {
				// rename(2) itself: os.Rename refuses to replace a directory.
				if err := unix.Rename(top+"/a/x", top+"/b/y"); err != nil {
					t.Fatal(err)
				}
				mkdirs(t, top+"/b/y/new")
			},
			want: func(top, _ string) []watch.DirEvent {
				return []watch.DirEvent{
					{Op: watch.Moved, Path: top + "/b/y", From: top + "/a/x", Source: name},
					ev(watch.Created, top+"/b/y/new"),
				}
			},
		},
		{
			name:  "a root renamed from a directory not tracked",
			setup: []string{"root"},
			track: []string{"root"},
			do: func(t *testing.T, top, _ string) {
				if err := os.Rename(top+"/root", top+"/gone"); err != nil {
					t.Fatal(err)
				}
			},
			want: func(top, _ string) []watch.DirEvent { return []watch.DirEvent{ev(watch.Removed, top+"/root")} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t)
			top, out := testutil.TempDir(t), testutil.TempDir(t)
			for _, d := range tt.setup {
				mkdirs(t, filepath.Join(top, d))
			}
			for _, d := range tt.track {
				track(t, s, filepath.Join(top, d))
			}
			tt.do(t, top, out)
			want := tt.want(top, out)
			got := collect(t, s, len(want))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestTrackLeaf tracks a directory by its parent's descriptor and its
// name, as the walk tracks the leaves it did not open.
func TestTrackLeaf(t *testing.T) {
	s := newTest(t)
	top := testutil.TempDir(t)
	mkdirs(t, top+"/leaf")
	fd, err := unix.Open(top, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Stat(top+"/leaf", &st); err != nil {
		t.Fatal(err)
	}
	if err := s.Track(watch.Dir{Fd: fd, Name: "leaf", Path: top + "/leaf", Dev: st.Dev, Ino: st.Ino}); err != nil {
		t.Fatalf("Track: %v", err)
	}
	mkdirs(t, top+"/leaf/new")
	want := []watch.DirEvent{ev(watch.Created, top+"/leaf/new")}
	if got := collect(t, s, 1); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestTrackAgain: the same directory tracked under a new path (the
// manager's walk after a rename no source paired) moves there.
func TestTrackAgain(t *testing.T) {
	s := newTest(t)
	top := testutil.TempDir(t)
	mkdirs(t, top+"/a")
	track(t, s, top+"/a")
	if err := os.Rename(top+"/a", top+"/b"); err != nil {
		t.Fatal(err)
	}
	collect(t, s, 1) // the root's move: removed
	track(t, s, top+"/b")
	mkdirs(t, top+"/b/new")
	want := []watch.DirEvent{ev(watch.Created, top+"/b/new")}
	if got := collect(t, s, 1); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := s.Tracked(); n != 1 {
		t.Errorf("Tracked: got %d, want 1", n)
	}
}

// TestUntrack: events of an untracked directory are not reported.
func TestUntrack(t *testing.T) {
	s := newTest(t)
	top := testutil.TempDir(t)
	mkdirs(t, top+"/a/b")
	track(t, s, top, top+"/a", top+"/a/b")
	s.Untrack(top + "/a")
	mkdirs(t, top+"/a/new", top+"/a/b/new", top+"/c")
	want := []watch.DirEvent{ev(watch.Created, top+"/c")}
	if got := collect(t, s, 1); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestHandle feeds events the kernel gives rarely or only on older
// kernels: an overflow, FAN_MOVED_FROM and FAN_MOVED_TO without
// FAN_RENAME, and merged masks.
func TestHandle(t *testing.T) {
	fsid := [2]int32{1, 2}
	h := func(b byte) unix.FileHandle { return unix.NewFileHandle(1, []byte{b, 0, 0, 0}) }
	in := func(mask uint64, dir byte, entry string) fanotify.DirEvent {
		return fanotify.DirEvent{Mask: mask, Fsid: fsid, Handle: h(dir), Name: entry, HasDir: true}
	}
	tests := []struct {
		name string
		evs  []fanotify.DirEvent
		want []watch.DirEvent
	}{
		{"overflow", []fanotify.DirEvent{{Mask: unix.FAN_Q_OVERFLOW}}, []watch.DirEvent{ev(watch.Resync, "")}},
		{"file", []fanotify.DirEvent{in(unix.FAN_CREATE, 1, "f")}, nil},
		{"unknown directory", []fanotify.DirEvent{in(unix.FAN_CREATE|unix.FAN_ONDIR, 9, "d")}, nil},
		{"moved from, then to", []fanotify.DirEvent{
			in(unix.FAN_MOVED_FROM|unix.FAN_ONDIR, 1, "sub"),
			in(unix.FAN_MOVED_TO|unix.FAN_ONDIR, 2, "sub"),
		}, []watch.DirEvent{ev(watch.Removed, "/w/a/sub"), ev(watch.Created, "/w/b/sub")}},
		{"merged moved from and create", []fanotify.DirEvent{
			in(unix.FAN_MOVED_FROM|unix.FAN_CREATE|unix.FAN_ONDIR, 1, "x"),
		}, []watch.DirEvent{ev(watch.Removed, "/w/a/x"), ev(watch.Created, "/w/a/x")}},
		{"rename with neither end tracked", []fanotify.DirEvent{{Mask: unix.FAN_RENAME | unix.FAN_ONDIR}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Source{tree: pathtree.New[string](), fsids: map[mount][2]int32{}}
			s.tree.SetKey(s.tree.Ensure("/w/a"), key(fsid, h(1)))
			s.tree.SetKey(s.tree.Ensure("/w/b"), key(fsid, h(2)))
			s.tree.SetKey(s.tree.Ensure("/w/a/sub"), key(fsid, h(3)))
			got := s.handle(tt.evs, nil)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// BenchmarkTrack tracks leaves by name in batches of 1,000, as the walk
// tracks a listed directory's leaves.
func BenchmarkTrack(b *testing.B) {
	testutil.SkipUnlessRoot(b)
	top := testutil.TempDir(b)
	const batch = 1000
	names := make([]string, batch)
	for i := range names {
		names[i] = "d" + strconv.Itoa(i)
		if err := os.Mkdir(filepath.Join(top, names[i]), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	fd, err := unix.Open(top, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		b.Fatal(err)
	}
	ds := make([]watch.Dir, batch)
	for i, n := range names {
		ds[i] = watch.Dir{Fd: fd, Name: n, Path: filepath.Join(top, n), Dev: st.Dev}
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		s, err := New(nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Track(ds...); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "dirs/s")
}

// TestFilesystems follows a new directory on each kind of filesystem
// vigil meets: overlayfs cannot export file handles, and is followed
// through the handles fanotify encodes for it (AT_HANDLE_FID, 6.5).
func TestFilesystems(t *testing.T) {
	tests := []struct {
		name  string
		mount func(t testing.TB) string
	}{
		{"tmpfs", testutil.MountTmpfs},
		{"ext4", testutil.MountExt4},
		{"overlayfs", testutil.MountOverlay},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTest(t)
			top := tt.mount(t)
			if tt.name == "overlayfs" && !handleFIDs(t, top) {
				t.Skip("overlayfs exports no file handles and this kernel has no AT_HANDLE_FID (6.5): its directories are left to inotify")
			}
			track(t, s, top)
			mkdirs(t, top+"/new")
			want := []watch.DirEvent{ev(watch.Created, top+"/new")}
			if got := collect(t, s, 1); !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

// handleFIDs reports whether the kernel takes AT_HANDLE_FID, and so
// encodes handles for dir's filesystem whether it exports them or not.
func handleFIDs(t *testing.T, dir string) bool {
	t.Helper()
	_, err := nameToHandleAt(unix.AT_FDCWD, dir, atHandleFID)
	if err != nil && err != unix.EINVAL {
		t.Fatalf("name_to_handle_at %s: %v", dir, err)
	}
	return err == nil
}

// TestUnsupported: a filesystem fanotify cannot report (the test's FUSE
// server answers no statfs, so it has no fsid) is not tracked, and the
// log says so once, naming inotify.
func TestUnsupported(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	var buf bytes.Buffer
	s, err := New(hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	fs := testutil.MountFUSE(t)
	mkdirs(t, fs.Dir+"/a", fs.Dir+"/b")
	fd, err := unix.Open(fs.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	for _, d := range []watch.Dir{{Fd: fd, Path: fs.Dir}, {Fd: fd, Name: "a", Path: fs.Dir + "/a"}, {Fd: fd, Name: "b", Path: fs.Dir + "/b"}} {
		d.Dev = st.Dev
		if err := s.Track(d); err == nil {
			t.Errorf("Track %s: got no error, want one", d.Path)
		}
	}
	if n := s.Tracked(); n != 0 {
		t.Errorf("Tracked: got %d, want 0", n)
	}
	if got := strings.Count(buf.String(), "inotify alone does there"); got != 1 {
		t.Errorf("warnings: got %d, want 1:\n%s", got, buf.String())
	}
}

// A filesystem mounted where another was, after it was unmounted, is
// followed like the first: a tmpfs mounted again at the same point had
// the same device number and mount ID but another fsid, and the fsid
// cached for the first had the second's events match no directory.
func TestRemounted(t *testing.T) {
	s := newTest(t)
	dir := filepath.Join(testutil.TempDir(t), "m")
	mkdirs(t, dir)
	var was [2]uint64
	for i := range 3 {
		if err := unix.Mount("vigil-test", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
			t.Fatal(err)
		}
		is := [2]uint64{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Mnt_id}
		if i > 0 && is != was {
			t.Logf("mount %d: device and mount ID %v, not %v as before: the kernel gave new ones", i, is, was)
		}
		was = is
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Track(watch.Dir{Fd: fd, Path: dir, Dev: is[0], Ino: stx.Ino, MntID: is[1]})
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		mkdirs(t, dir+"/new")
		want := []watch.DirEvent{ev(watch.Created, dir+"/new")}
		if got := collect(t, s, 1); !reflect.DeepEqual(got, want) {
			t.Errorf("mount %d: got %+v, want %+v", i, got, want)
		}
		// As the manager does on the unmount, which inotify reports.
		if err := unix.Unmount(dir, 0); err != nil {
			t.Fatal(err)
		}
		s.Untrack(dir)
	}
}
