package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/testutil"
)

// A watched directory reached through a bind mount of it is still
// watched: the marks fire, and the kernel reports the bind mount's path,
// which vigil maps back to the watch. In both modes.
func TestBindMountOfWatch(t *testing.T) {
	for _, mode := range []string{"tree", "filesystem"} {
		t.Run(mode, func(t *testing.T) {
			root := testutil.MountTmpfs(t) // filesystem mode marks it whole
			w, b := filepath.Join(root, "w"), filepath.Join(root, "b")
			for _, d := range []string{filepath.Join(w, "sub"), b} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			testutil.BindMount(t, w, b)
			startDaemon(t, fmt.Sprintf("watch %q {\n  mode = %q\n  exclude = [\"*.skip\"]\n}\n", w, mode), "")
			writeFile(t, filepath.Join(w, "sub", "eicar"), clamav.EICAR)
			writeFile(t, filepath.Join(w, "sub", "eicar.skip"), clamav.EICAR)
			writeFile(t, filepath.Join(w, "sub", "clean"), clean)
			wantDenied(t, filepath.Join(b, "sub", "eicar"))
			wantContent(t, filepath.Join(b, "sub", "eicar.skip"), clamav.EICAR) // the watch's exclude holds there too
			wantContent(t, filepath.Join(b, "sub", "clean"), clean)

			// A bind mount made a moment ago is known at its first open,
			// though the mount table was read just before it.
			b2 := filepath.Join(root, "b2")
			if err := os.Mkdir(b2, 0o755); err != nil {
				t.Fatal(err)
			}
			testutil.BindMount(t, w, b2)
			wantDenied(t, filepath.Join(b2, "sub", "eicar"))
		})
	}
}

// A watched directory mounted into another mount namespace, as a
// container's volume is, is still watched when read from there.
func TestVolumeInOtherNamespace(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed (util-linux)")
	}
	root := testutil.TempDir(t)
	w, vol := filepath.Join(root, "w"), filepath.Join(root, "volume")
	for _, d := range []string{w, vol} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", w), "")
	writeFile(t, filepath.Join(w, "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(w, "clean"), clean)
	// In a mount namespace of its own the shell mounts the watch as its
	// volume, which this namespace never sees, and reads through it.
	script := fmt.Sprintf("mount --bind %q %q && cat %q/clean && cat %q/eicar", w, vol, vol, vol)
	out, err := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("read of EICAR through the other namespace's volume: got %v, output %q; want it denied", err, out)
	}
	if !strings.HasPrefix(string(out), clean) {
		t.Errorf("read of a clean file through the volume: output %q, want it to start with %q", out, clean)
	}
	// Reported by the path that names it here, under the watch.
	recs := d.alerts(t, 1)
	if len(recs) != 1 || recs[0].Path != filepath.Join(w, "eicar") {
		t.Errorf("alerts: got %+v, want one for %q", recs, filepath.Join(w, "eicar"))
	}
}

// Reading another namespace's mounts does not keep them: once the last
// process of a container's mount namespace has ended, a filesystem
// mounted only there is released, though vigil decided opens made
// through it. (A mountinfo held open holds its namespace, and every
// mount in it: the loop device of the image below stayed attached until
// vigil stopped.)
func TestOtherNamespaceReleased(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare not installed (util-linux)")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed (e2fsprogs)")
	}
	root := testutil.TempDir(t)
	w, vol, disk := filepath.Join(root, "w"), filepath.Join(root, "volume"), filepath.Join(root, "disk")
	for _, d := range []string{w, vol, disk} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(root, "ext4.img")
	if out, err := exec.Command(mkfs, "-q", "-F", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	// Attached to a loop device while the filesystem on it is mounted
	// somewhere: mount -o loop detaches it at the last unmount.
	attached := func() bool {
		out, err := exec.Command("losetup", "--noheadings", "--associated", img).Output()
		if err != nil {
			t.Fatalf("losetup: %v", err)
		}
		return len(strings.TrimSpace(string(out))) > 0
	}
	startDaemon(t, fmt.Sprintf("watch %q {}\n", w), "")
	writeFile(t, filepath.Join(w, "clean"), clean)
	script := fmt.Sprintf("mount -o loop %q %q && mount --bind %q %q && cat %q/clean", img, disk, w, vol, vol)
	out, err := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script).CombinedOutput()
	if err != nil || string(out) != clean {
		t.Fatalf("read through the other namespace's volume: got %v %q, want %q", err, out, clean)
	}
	for deadline := time.Now().Add(5 * time.Second); attached(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still attached 5 s after the last process of the namespace that mounted it ended", img)
		}
	}
}

// A filesystem mounted in a watch after start is watched, from the
// moment it is mounted: nothing was made or moved there, so only the
// mount table tells. Unmounted, the directory under it is watched again.
// With the best eBPF rung and with inotify alone.
func TestMountInsideWatch(t *testing.T) {
	forEachHook(t, func(t *testing.T, _ string, args []string) {
		w := testutil.TempDir(t)
		point := filepath.Join(w, "mnt")
		if err := os.Mkdir(point, 0o755); err != nil {
			t.Fatal(err)
		}
		d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", w), "", "", args...)
		if err := unix.Mount("vigil-test", point, "tmpfs", 0, "size=8m"); err != nil {
			t.Fatalf("mount: %v", err)
		}
		mounted := true
		t.Cleanup(func() {
			if mounted {
				unix.Unmount(point, unix.MNT_DETACH)
			}
		})
		// At its top first: no directory made, which the eBPF rung
		// would have seen.
		writeFile(t, filepath.Join(point, "eicar"), clamav.EICAR)
		waitDenied(t, "on a filesystem mounted in the watch", filepath.Join(point, "eicar"), 5*time.Second)
		if err := os.MkdirAll(filepath.Join(point, "deep"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(point, "deep", "eicar"), clamav.EICAR)
		waitDenied(t, "below it", filepath.Join(point, "deep", "eicar"), 5*time.Second)
		// The daemon holds the files it answers for a moment.
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := unix.Unmount(point, 0)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(end) {
				t.Fatalf("unmount: %v", err)
			}
		}
		mounted = false
		writeFile(t, filepath.Join(point, "eicar"), clamav.EICAR)
		waitDenied(t, "in the directory unmounted", filepath.Join(point, "eicar"), 5*time.Second)
		// The unmount costs a walk of what was under it, not of every watch.
		if got := counters(t, d)["resyncs"]; got != float64(0) {
			t.Errorf("status counter resyncs: got %v, want 0", got)
		}
	})
}

// A filesystem-mode watch covers the filesystems mounted below it too,
// those there at start and those mounted later: a filesystem mark covers
// its own filesystem only.
func TestFilesystemModeSubmounts(t *testing.T) {
	w := testutil.MountTmpfs(t)
	atStart, later := filepath.Join(w, "at-start"), filepath.Join(w, "later")
	for _, point := range []string{atStart, later} {
		if err := os.Mkdir(point, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.MountTmpfsOn(t, atStart)
	d := startDaemon(t, fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\n", w), "")
	// Status says why it counts no watched directory.
	if got := fmt.Sprint(statusJSON(t, d)["filesystem_watches"]); got != fmt.Sprint([]string{w}) {
		t.Errorf("status filesystem_watches: %s, want [%s]", got, w)
	}
	if out, err := exec.Command(vigilBin, "status", "--socket", d.socket).CombinedOutput(); err != nil || !strings.Contains(string(out), w+" (filesystem mode)") {
		t.Errorf("vigil status: %v, want the watch named as in filesystem mode:\n%s", err, out)
	}
	testutil.MountTmpfsOn(t, later)
	for _, point := range []string{atStart, later} {
		eicar := filepath.Join(point, "eicar")
		writeFile(t, eicar, clamav.EICAR)
		waitDenied(t, "on a filesystem mounted in the watch", eicar, 5*time.Second)
	}
}

// A filesystem-mode watch is on whatever filesystem holds its path now:
// once the filesystem it was on is unmounted, the one under it is marked
// (the watch's directory made there is watched), and so is one mounted
// over it later (a disk mounted late, a remount).
func TestFilesystemModeRemounted(t *testing.T) {
	top := testutil.MountTmpfs(t) // the filesystem under the disk
	disk := filepath.Join(top, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	w := filepath.Join(disk, "w")
	check := func(what string) {
		t.Helper()
		// A mount hides the watch's directory and brings none.
		if err := os.MkdirAll(w, 0o755); err != nil {
			t.Fatal(err)
		}
		eicar := filepath.Join(w, "eicar")
		writeFile(t, eicar, clamav.EICAR)
		waitDenied(t, what, eicar, 5*time.Second)
	}
	testutil.MountTmpfsOn(t, disk)
	if err := os.Mkdir(w, 0o755); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\n", w), "")
	check("on the filesystem marked at start")
	for i := range 2 {
		unmountBusy(t, disk)
		if i == 0 {
			check("on the filesystem under it, once it was unmounted")
		}
		testutil.MountTmpfsOn(t, disk)
		check(fmt.Sprintf("on a filesystem mounted over the watch's directory (%d)", i+1))
	}
}

// unmountBusy unmounts dir, trying again while it is busy for a moment:
// a writer's close is an event to vigil, which holds the file until it
// has read and handled it.
func unmountBusy(t *testing.T, dir string) {
	t.Helper()
	for end := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		err := unix.Unmount(dir, 0)
		if err == nil {
			return
		}
		if err != unix.EBUSY || time.Now().After(end) {
			t.Fatalf("unmount %s: %v", dir, err)
		}
	}
}

// openTreeEnv makes the test binary clone the tree at a directory
// (open_tree, OPEN_TREE_CLONE: a mount in no namespace) and print a file
// read through it: "DIR:NAME".
const openTreeEnv = "VIGIL_TEST_OPEN_TREE"

func openTreeRead(spec string) int {
	dir, name, _ := strings.Cut(spec, ":")
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open_tree:", err)
		return 3
	}
	fd, err := unix.Openat(tree, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	b, err := io.ReadAll(os.NewFile(uintptr(fd), name))
	os.Stdout.Write(b)
	if err != nil {
		return 1
	}
	return 0
}

// The kernel names a file by its path in the mount namespace it was
// opened through, which any user can make (a user namespace) and fill
// with mounts of watched directories: over an excluded directory, over an
// alert watch, or as a detached clone of the tree (open_tree), whose
// paths start at the clone's top. Such a path is not taken as vigil's:
// EICAR is denied each way, to nobody, and reported by its path under
// the watch; a clean file is read.
func TestOtherNamespacePathsNotTaken(t *testing.T) {
	nobody := func(env []string, script string) *exec.Cmd {
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
			"unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script)
		cmd.Env = append(os.Environ(), env...)
		return cmd
	}
	if out, err := nobody(nil, "true").CombinedOutput(); err != nil {
		t.Skipf("no user namespace for nobody here: %v %s", err, out)
	}
	root := testutil.TempDir(t)
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary, where nobody may run it.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(testutil.TempDir(t), "vigil.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	sub, cache, logs := filepath.Join(root, "sub"), filepath.Join(root, "cache"), filepath.Join(root, "logs")
	for _, d := range []string{sub, cache, logs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(sub, "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(sub, "clean"), clean)
	d := startDaemon(t, fmt.Sprintf("watch %q {\n  exclude = [\"cache/\"]\n}\nwatch %q {\n  action = \"alert\"\n}\n", root, logs), "")

	for _, tt := range []struct {
		name string
		cmd  func(file string) *exec.Cmd
	}{
		{"bind mounted over an excluded directory", func(f string) *exec.Cmd {
			return nobody(nil, fmt.Sprintf("mount --bind %s %s && cat %s/%s", sub, cache, cache, f))
		}},
		{"bind mounted over an alert watch", func(f string) *exec.Cmd {
			return nobody(nil, fmt.Sprintf("mount --bind %s %s && cat %s/%s", sub, logs, logs, f))
		}},
		{"cloned with open_tree", func(f string) *exec.Cmd {
			return nobody([]string{openTreeEnv + "=" + root + ":sub/" + f}, bin)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := tt.cmd("clean").CombinedOutput(); err != nil || string(out) != clean {
				t.Errorf("clean file: got %v %q, want %q", err, out, clean)
			}
			out, err := tt.cmd("eicar").CombinedOutput()
			if err == nil || strings.Contains(string(out), "EICAR") {
				t.Errorf("EICAR: got %v %q, want it denied", err, out)
			}
		})
	}
	for _, r := range d.alerts(t, 3) {
		if r.Action != "blocked" {
			t.Errorf("alert: got %+v, want blocked", r)
		}
	}
}
