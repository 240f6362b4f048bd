package main

import (
	"errors"
	"fmt"
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
	mount := func(point string) {
		t.Helper()
		if err := unix.Mount("vigil-test", point, "tmpfs", 0, "size=8m"); err != nil {
			t.Fatalf("mount %s: %v", point, err)
		}
		t.Cleanup(func() { unix.Unmount(point, unix.MNT_DETACH) })
	}
	mount(atStart)
	startDaemon(t, fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\n", w), "")
	mount(later)
	for _, point := range []string{atStart, later} {
		eicar := filepath.Join(point, "eicar")
		writeFile(t, eicar, clamav.EICAR)
		waitDenied(t, "on a filesystem mounted in the watch", eicar, 5*time.Second)
	}
}
