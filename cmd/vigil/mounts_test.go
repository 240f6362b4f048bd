package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
			if err := unix.Mount(filepath.Join(root, "w"), b, "", unix.MS_BIND, ""); err != nil {
				t.Fatalf("bind mount: %v", err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(b, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount %s: %v", b, err)
				}
			})
			startDaemon(t, fmt.Sprintf("watch %q {\n  mode = %q\n  exclude = [\"*.skip\"]\n}\n", w, mode), "")
			writeFile(t, filepath.Join(w, "sub", "eicar"), clamav.EICAR)
			writeFile(t, filepath.Join(w, "sub", "eicar.skip"), clamav.EICAR)
			writeFile(t, filepath.Join(w, "sub", "clean"), clean)
			wantDenied(t, filepath.Join(b, "sub", "eicar"))
			wantContent(t, filepath.Join(b, "sub", "eicar.skip"), clamav.EICAR) // the watch's exclude holds there too
			wantContent(t, filepath.Join(b, "sub", "clean"), clean)
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
