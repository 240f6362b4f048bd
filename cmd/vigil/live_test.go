package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/dirtrace"
	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/testutil"
)

// waitDirs waits up to 5s for the daemon to report want watched
// directories. Directory events are handled asynchronously: functional
// tests wait for them, the race figures measure how long that takes.
func waitDirs(t *testing.T, d *daemonProc, want int) {
	t.Helper()
	var got any
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		got = statusJSON(t, d)["watched_dirs"]
		if got == float64(want) {
			return
		}
	}
	t.Fatalf("watched_dirs: got %v, want %d after 5s", got, want)
}

// forEachHook runs test with the best eBPF rung here (inotify its
// cross-check) and with none (inotify the primary source), giving it the
// arguments of vigil run that choose the rung.
func forEachHook(t *testing.T, test func(t *testing.T, hook string, args []string)) {
	for _, hook := range []string{"", "none"} {
		t.Run("hook="+hook, func(t *testing.T) {
			var args []string
			if hook != "" {
				args = []string{"--hook", hook}
			}
			test(t, hook, args)
		})
	}
}

func TestLiveWatchpoints(t *testing.T) { forEachHook(t, testLiveWatchpoints) }

func testLiveWatchpoints(t *testing.T, hook string, args []string) {
	root := testutil.TempDir(t)
	outside := testutil.TempDir(t)
	flat := filepath.Join(root, "flat")
	tree := filepath.Join(root, "tree")
	if err := os.MkdirAll(flat, 0o755); err != nil {
		t.Fatal(err)
	}
	// Leaves at start: marked by name in a batch, and tracked so.
	for _, leaf := range []string{"pre/l1", "pre/l2", "pre/l3"} {
		if err := os.MkdirAll(filepath.Join(tree, leaf), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\nwatch %q {\n  recursive = false\n}\n", tree, flat), "", "", args...)
	dirs := 6
	waitDirs(t, d, dirs)
	// mkdirDenied makes dir, waits for it to be marked, and checks that
	// EICAR written in it is denied.
	mkdirDenied := func(t *testing.T, dir string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs++
		waitDirs(t, d, dirs)
		writeFile(t, filepath.Join(dir, "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(dir, "eicar"))
	}

	t.Run("leaf placed at start", func(t *testing.T) {
		writeFile(t, filepath.Join(tree, "pre", "l2", "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(tree, "pre", "l2", "eicar"))
		// Tracked as it was marked: a directory made in it is followed.
		mkdirDenied(t, filepath.Join(tree, "pre", "l3", "new"))
	})

	t.Run("mkdir", func(t *testing.T) {
		mkdirDenied(t, filepath.Join(tree, "new"))
	})
	t.Run("mkdir -p", func(t *testing.T) {
		dir := filepath.Join(tree, "p", "q", "r")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs += 3
		waitDirs(t, d, dirs)
		writeFile(t, filepath.Join(dir, "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(dir, "eicar"))
	})
	t.Run("tree moved in", func(t *testing.T) {
		// Built outside, files and all, then moved in at once.
		src := filepath.Join(outside, "built")
		writeFile(t, filepath.Join(src, "x", "y", "eicar"), clamav.EICAR)
		dst := filepath.Join(tree, "moved-in")
		if err := os.Rename(src, dst); err != nil {
			t.Fatal(err)
		}
		dirs += 3
		waitDirs(t, d, dirs)
		wantDenied(t, filepath.Join(dst, "x", "y", "eicar"))
	})
	t.Run("renamed within", func(t *testing.T) {
		from, to := filepath.Join(tree, "p"), filepath.Join(tree, "new", "p2")
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // let the rename be handled
		waitDirs(t, d, dirs)
		wantDenied(t, filepath.Join(to, "q", "r", "eicar"))
		// And a directory made in the renamed subtree is followed.
		mkdirDenied(t, filepath.Join(to, "q", "later"))
	})
	t.Run("moved out", func(t *testing.T) {
		from, to := filepath.Join(tree, "moved-in"), filepath.Join(outside, "gone")
		before := []string{from, filepath.Join(from, "x"), filepath.Join(from, "x", "y")}
		if got := marked(t, d.cmd.Process.Pid, before...); len(got) != len(before) {
			t.Fatalf("marked before the move out: got %v, want %v", got, before)
		}
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
		dirs -= 3
		waitDirs(t, d, dirs)
		wantContent(t, filepath.Join(to, "x", "y", "eicar"), clamav.EICAR)
		if hook == "none" || !ebpfHere(t) {
			return // inotify cannot tell where a tree went, only that it left
		}
		// Every rung tells where it went: the marks go too.
		moved := []string{to, filepath.Join(to, "x"), filepath.Join(to, "x", "y")}
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			left := marked(t, d.cmd.Process.Pid, moved...)
			if len(left) == 0 {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("still marked 5s after the move out: %v", left)
			}
		}
	})
	t.Run("non-recursive watch ignores new subdirectories", func(t *testing.T) {
		sub := filepath.Join(flat, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(sub, "eicar"), clamav.EICAR)
		writeFile(t, filepath.Join(flat, "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(flat, "eicar"))
		time.Sleep(50 * time.Millisecond)
		waitDirs(t, d, dirs)
		wantContent(t, filepath.Join(sub, "eicar"), clamav.EICAR)
	})
}

// A tree deeper than one eBPF anchor covers (32 levels) is followed at any
// depth, on every rung: a directory made by name at the bottom, a chain made below it, and
// the same after a rename high up, which moves the deeper anchor's path.
// Each is seen in the log as reported by the eBPF tracer, not only by
// inotify beside it.
func TestDeepTree(t *testing.T) {
	if !ebpfHere(t) {
		t.Skip("no eBPF hook here: inotify alone is tested elsewhere")
	}
	root := testutil.TempDir(t)
	// Deeper than the programs climb (64 levels): only the anchors the
	// tracer places every 32 levels let them reach a covering directory.
	bottom := chain(root, 70)[70]
	if err := os.MkdirAll(bottom, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", "", "--log-level", "trace")
	dirs := 71
	waitDirs(t, d, dirs)
	fromEBPF := func(t *testing.T, dir string) {
		t.Helper()
		d.waitLogLine(t, "directory event", "dir="+dir+" ", "source=ebpf:")
	}
	// mkdirat by name relative to the bottom, as most tools do.
	mkdirAt := func(t *testing.T, parent, name string) string {
		t.Helper()
		fd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs++
		waitDirs(t, d, dirs)
		return filepath.Join(parent, name)
	}

	t.Run("mkdirat at the bottom", func(t *testing.T) {
		dir := mkdirAt(t, bottom, "new")
		fromEBPF(t, dir)
		writeFile(t, filepath.Join(dir, "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(dir, "eicar"))
	})
	t.Run("mkdir -p of 40 more levels", func(t *testing.T) {
		deeper := bottom
		for i := range 40 {
			deeper = filepath.Join(deeper, fmt.Sprintf("e%d", i))
		}
		if err := os.MkdirAll(deeper, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs += 40
		waitDirs(t, d, dirs)
		fromEBPF(t, deeper)
		writeFile(t, filepath.Join(deeper, "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(deeper, "eicar"))
	})
	t.Run("renamed high up, then mkdirat at the bottom", func(t *testing.T) {
		from := filepath.Join(root, "d0", "d1", "d2")
		to := filepath.Join(root, "d0", "d1", "moved")
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // let the rename be handled
		waitDirs(t, d, dirs)
		newBottom := filepath.Join(to, strings.TrimPrefix(bottom, from+"/"))
		dir := mkdirAt(t, newBottom, "after")
		fromEBPF(t, dir)
		writeFile(t, filepath.Join(dir, "eicar"), clamav.EICAR)
		wantDenied(t, filepath.Join(dir, "eicar"))
	})
}

// ebpfHere reports whether some rung of the eBPF hook ladder works here.
func ebpfHere(t *testing.T) bool {
	t.Helper()
	testutil.SkipUnlessRoot(t)
	for _, p := range dirtrace.Probe() {
		if p.Err == nil {
			return true
		}
	}
	return false
}

// vigil features names the best rung that works here as the hook
// vigil run would choose.
func TestFeaturesNamesChosenHook(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	want := dirtrace.HookNone
	for _, p := range dirtrace.Probe() {
		if p.Err == nil {
			want = p.Hook
			break
		}
	}
	_, stdout, stderr := runCLI("features")
	for line := range strings.Lines(stdout) {
		if strings.HasPrefix(line, "directory events ") {
			if got := strings.Fields(line)[2]; got != "hook="+string(want)+"," {
				t.Errorf("features chose %q, want hook=%s:\n%s", got, want, stdout)
			}
			return
		}
	}
	t.Fatalf("no directory events line:\n%s%s", stdout, stderr)
}

// A watch whose directory does not exist at start is placed when it
// appears.
func TestWatchRootAppearsLater(t *testing.T) {
	root := testutil.TempDir(t)
	later := filepath.Join(root, "not", "yet")
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", later), "")
	waitDirs(t, d, 0)
	if err := os.MkdirAll(filepath.Join(later, "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitDirs(t, d, 2)
	writeFile(t, filepath.Join(later, "deep", "eicar"), clamav.EICAR)
	wantDenied(t, filepath.Join(later, "deep", "eicar"))
}

// A watch's missing directory is placed when it appears even after the
// ancestor tracked for it was removed and made again: the sources track
// inodes, so the new ancestor must be tracked anew. With the best eBPF
// rung and with inotify alone.
func TestWatchRootAppearsAfterAncestorRemade(t *testing.T) {
	forEachHook(t, testWatchRootAppearsAfterAncestorRemade)
}

func testWatchRootAppearsAfterAncestorRemade(t *testing.T, _ string, args []string) {
	root := testutil.MountTmpfs(t) // no inode number comes back: the new ancestor is another key
	anc := filepath.Join(root, "a")
	later := filepath.Join(anc, "b")
	if err := os.Mkdir(anc, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", later), "", "", args...)
	waitDirs(t, d, 0)
	if err := os.Remove(anc); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(anc, 0o755); err != nil {
		t.Fatal(err)
	}
	// Time for the daemon to handle a's creation before b is made: made
	// at once, b would be found by the walk of a, another way in.
	time.Sleep(500 * time.Millisecond)
	if err := os.MkdirAll(filepath.Join(later, "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitDirs(t, d, 2)
	writeFile(t, filepath.Join(later, "deep", "eicar"), clamav.EICAR)
	wantDenied(t, filepath.Join(later, "deep", "eicar"))
}

// A watched directory deleted and made again at once, as `rm -rf d &&
// mkdir d` does, often takes its inode number back: the new one is marked
// all the same. With the best eBPF rung and with inotify alone.
func TestDirMadeAgain(t *testing.T) { forEachHook(t, testDirMadeAgain) }

func testDirMadeAgain(t *testing.T, _ string, args []string) {
	root := testutil.MountExt4(t) // gives the number of a deleted inode to the next one
	dir := filepath.Join(root, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", "", args...)
	waitDirs(t, d, 3) // with lost+found
	reused := 0
	for i := range 5 {
		var before, after unix.Stat_t
		if err := unix.Stat(dir, &before); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat(dir, &after); err != nil {
			t.Fatal(err)
		}
		if after.Ino == before.Ino {
			reused++
		}
		eicar := filepath.Join(dir, "eicar")
		writeFile(t, eicar, clamav.EICAR)
		waitDenied(t, fmt.Sprintf("in %s made again (%d)", dir, i), eicar, 5*time.Second)
	}
	if reused == 0 {
		t.Logf("the inode number never came back: the directories were told apart by it")
	}
}

// A watch's own directory deleted and made again at once (`rm -rf w &&
// mkdir w`), whose parent nothing tracks, is marked again: inotify
// reports it made where the deleted one stood, and the manager tells it
// from the old one though it takes the inode number back.
func TestWatchRootMadeAgain(t *testing.T) {
	forEachHook(t, func(t *testing.T, _ string, args []string) {
		root := filepath.Join(testutil.MountExt4(t), "w")
		if err := os.MkdirAll(filepath.Join(root, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", "", args...)
		for i := range 5 {
			if err := os.RemoveAll(root); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			eicar := filepath.Join(root, "eicar")
			writeFile(t, eicar, clamav.EICAR)
			waitDenied(t, fmt.Sprintf("in the watch made again (%d)", i), eicar, 5*time.Second)
		}
	})
}

const maxUserWatches = "/proc/sys/fs/inotify/max_user_watches"

// chain is root and the n directories of a chain below it, d0/d1/...,
// each the previous one's child, root first.
func chain(root string, n int) []string {
	dirs := []string{root}
	for i := range n {
		dirs = append(dirs, filepath.Join(dirs[i], fmt.Sprintf("d%d", i)))
	}
	return dirs
}

// With fs.inotify.max_user_watches below the tree's size, the start-up
// marks still cover the whole tree, and the warning names the sysctl.
func TestInotifyLimit(t *testing.T) {
	root := testutil.TempDir(t)
	deep := chain(root, 40)[40]
	writeFile(t, filepath.Join(deep, "eicar"), clamav.EICAR)
	restore := testutil.Sysctl(t, maxUserWatches, "8")
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	// Lowered only while the daemon places its inotify watches: at start
	// when inotify is the primary source, else just after, in the
	// background, as the eBPF tracer's cross-check.
	waitCounter(t, d, "cross_check_backlog", 0)
	restore()
	wantDenied(t, filepath.Join(deep, "eicar"))
	d.waitLog(t, "sysctl fs.inotify.max_user_watches=")
}

// Without eBPF (--hook none) and with fs.inotify.max_user_watches below
// the tree's size, a directory made or a tree moved in under one that
// inotify has no watch for is still marked at once: fanotify directory
// events, which have no per-watch limit, follow it.
func TestInotifyLimitWithoutEBPF(t *testing.T) {
	if err := features.FanotifyDirEvents(); errors.Is(err, features.ErrNotSupported) {
		t.Skipf("no fanotify directory events: %v", err)
	}
	root := testutil.TempDir(t)
	dirs := chain(root, 40)
	if err := os.MkdirAll(dirs[len(dirs)-1], 0o755); err != nil {
		t.Fatal(err)
	}
	restore := testutil.Sysctl(t, maxUserWatches, "8")
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", "", "--hook", "none")
	// inotify is the cross-check here: its watches are placed, as far as
	// the limit goes, after start-up.
	waitCounter(t, d, "cross_check_backlog", 0)
	d.waitLog(t, "sysctl fs.inotify.max_user_watches=")

	// The limit stays low: at most 8 of the 41 directories have a watch.
	// In each, a directory is made, and a tree from outside moved in.
	outside := testutil.TempDir(t)
	var eicars []string
	for i, dir := range dirs {
		sub := filepath.Join(dir, fmt.Sprintf("new%d", i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		eicar := filepath.Join(sub, "eicar")
		writeFile(t, eicar, clamav.EICAR)
		tree := filepath.Join(outside, fmt.Sprintf("tree%d", i))
		if err := os.MkdirAll(filepath.Join(tree, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(tree, "sub", "eicar"), clamav.EICAR)
		if err := os.Rename(tree, filepath.Join(dir, "moved")); err != nil {
			t.Fatal(err)
		}
		eicars = append(eicars, eicar, filepath.Join(dir, "moved", "sub", "eicar"))
	}
	var readable []string
	// Followed, not raced: a read before the mark may pass, as in any
	// tree-mode watch; each must be denied once the marks are placed,
	// within 20 s for a guest under TCG.
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		readable = readable[:0]
		for _, eicar := range eicars {
			if _, err := os.ReadFile(eicar); !errors.Is(err, unix.EPERM) {
				readable = append(readable, eicar)
			}
		}
		if len(readable) == 0 || time.Now().After(end) {
			break
		}
	}
	restore()
	if len(readable) > 0 {
		t.Errorf("EICAR readable in %d of %d new and moved-in directories after 20s, e.g. %s", len(readable), len(eicars), readable[0])
	}
	d.waitLogLine(t, "directory event sources", "fanotify")
}

// marked returns those of dirs that process pid's fanotify groups mark,
// from the "fanotify ino:" lines of its descriptors' fdinfo.
func marked(t *testing.T, pid int, dirs ...string) []string {
	t.Helper()
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	var info strings.Builder
	for _, fd := range fds {
		b, err := os.ReadFile(fd)
		if err != nil {
			continue // closed meanwhile
		}
		info.Write(b)
	}
	var out []string
	for _, dir := range dirs {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info.String(), fmt.Sprintf("fanotify ino:%x sdev:%x ", st.Ino, unix.Major(st.Dev)<<20|unix.Minor(st.Dev))) {
			out = append(out, dir)
		}
	}
	return out
}

// inotifyWatches counts the inotify watches of process pid, from the
// "inotify wd:" lines of its descriptors' fdinfo.
func inotifyWatches(t *testing.T, pid int) int {
	t.Helper()
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fdinfo/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		b, err := os.ReadFile(fd)
		if err != nil {
			continue // closed meanwhile
		}
		n += strings.Count(string(b), "inotify wd:")
	}
	return n
}

// Every directory placed at start is watched by inotify too, whether as
// the primary source or, beside the eBPF tracer, as its cross-check
// placed after start-up; and so is a directory made later.
func TestInotifyCrossCheck(t *testing.T) {
	root := testutil.TempDir(t)
	for i := range 30 {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("d%d", i), "leaf"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	waitCounter(t, d, "cross_check_backlog", 0)
	if got, want := inotifyWatches(t, d.cmd.Process.Pid), 61; got != want {
		t.Errorf("inotify watches after start-up: got %d, want %d (root, 30 dirs, 30 leaves)", got, want)
	}
	if err := os.Mkdir(filepath.Join(root, "later"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitDirs(t, d, 62)
	got := 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if got = inotifyWatches(t, d.cmd.Process.Pid); got == 62 {
			return
		}
	}
	t.Errorf("inotify watches after a mkdir: got %d, want 62 after 5s", got)
}

// A filesystem in a tree-mode watch unmounted and another mounted in its
// place at once (the mount table may then read the same) is walked and
// marked, even where inotify, over its limit, has no watch to report the
// unmount.
func TestQuickRemountInTree(t *testing.T) {
	root := testutil.TempDir(t)
	vol := chain(root, 40)[40]
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.MountTmpfsOn(t, vol)
	restore := testutil.Sysctl(t, maxUserWatches, "8")
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	waitCounter(t, d, "cross_check_backlog", 0)
	restore()
	unmountBusy(t, vol)
	testutil.MountTmpfsOn(t, vol)
	eicar := filepath.Join(vol, "eicar")
	writeFile(t, eicar, clamav.EICAR)
	waitDenied(t, "on the filesystem mounted in the old one's place", eicar, 5*time.Second)
}
