package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a fresh tmpfs for the test and unmounts it at cleanup:
// filesystem-wide marks are tested only on filesystems a test mounted.
func MountTmpfs(t testing.TB) string {
	t.Helper()
	return MountTmpfsSized(t, "size=64m")
}

// MountTmpfsSized is MountTmpfs with the size options given (tmpfs's
// size= and nr_inodes=; 0 for no bound).
func MountTmpfsSized(t testing.TB, opts string) string {
	t.Helper()
	SkipUnlessRoot(t)
	dir := filepath.Join(TempDir(t), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("vigil-test", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// MountTmpfsOn mounts a small tmpfs on dir, an existing directory of the
// test's, and detaches whatever is mounted there at cleanup: a test may
// unmount it and mount another there meanwhile.
func MountTmpfsOn(t testing.TB, dir string) {
	t.Helper()
	SkipUnlessRoot(t)
	if err := unix.Mount("vigil-test", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=8m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

// BindMount mounts src on dir, an existing directory of the test's, and
// unmounts it at cleanup.
func BindMount(t testing.TB, src, dir string) {
	t.Helper()
	SkipUnlessRoot(t)
	if err := unix.Mount(src, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s on %s: %v", src, dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
}

// MountExt4 makes a small ext4 image, loop-mounts it for the test and
// unmounts it at cleanup. It skips, with the reason, where mkfs.ext4 is
// missing (CI installs e2fsprogs).
func MountExt4(t testing.TB) string {
	t.Helper()
	SkipUnlessRoot(t)
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		skip(t, "mkfs.ext4 not installed (e2fsprogs)")
	}
	base := TempDir(t)
	img := filepath.Join(base, "ext4.img")
	if out, err := exec.Command(mkfs, "-q", "-F", img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	dir := filepath.Join(base, "ext4")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v\n%s", img, err, out)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// MountOverlay mounts an overlayfs, as a container's root is, over layers
// on a fresh ext4 (MountExt4), and unmounts it at cleanup. Files made
// there are the upper layer's: ext4's inode numbers and times, without its
// inode generation.
func MountOverlay(t testing.TB) string {
	t.Helper()
	base := MountExt4(t)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "merged")
	opts := "lowerdir=" + filepath.Join(base, "lower") + ",upperdir=" + filepath.Join(base, "upper") + ",workdir=" + filepath.Join(base, "work")
	if err := unix.Mount("vigil-test", dir, "overlay", 0, opts); err != nil {
		skip(t, "mount overlayfs: "+err.Error())
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

func unmount(t testing.TB, dir string) {
	if err := unix.Unmount(dir, 0); err != nil {
		// Lazily, so a stray open cannot keep the test's mount alive.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}
}
