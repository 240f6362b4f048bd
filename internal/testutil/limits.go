package testutil

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FillDescriptors lowers the process's RLIMIT_NOFILE and fills its
// descriptor table up to it but for spare: the next opens but spare fail
// with EMFILE, in this process only. The returned release closes the
// fillers and restores the limit; it runs at cleanup too. Tests using it
// must not run in parallel with others of their package.
func FillDescriptors(t testing.TB, spare int) (release func()) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	probe, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(probe)
	low := lim
	low.Cur = uint64(probe + spare + 64)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fill []int
	release = func() {
		for _, fd := range fill {
			unix.Close(fd)
		}
		fill = nil
		unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	}
	t.Cleanup(release)
	for {
		fd, err := unix.Dup(0)
		if err != nil {
			break
		}
		fill = append(fill, fd)
	}
	if len(fill) < spare {
		release()
		t.Fatalf("filled %d descriptors, fewer than the %d to leave spare", len(fill), spare)
	}
	for _, fd := range fill[len(fill)-spare:] {
		unix.Close(fd)
	}
	fill = fill[:len(fill)-spare]
	return release
}

// Sysctl sets the sysctl at path (under /proc/sys) to value and returns a
// function that restores the old value; it runs at cleanup too. Without
// the file the test skips.
func Sysctl(t testing.TB, path, value string) (restore func()) {
	t.Helper()
	SkipUnlessRoot(t)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no %s: %v", path, err)
	}
	restored := false
	restore = func() {
		if restored {
			return
		}
		restored = true
		if err := os.WriteFile(path, old, 0o644); err != nil {
			t.Errorf("restore %s to %s: %v", path, strings.TrimSpace(string(old)), err)
		}
	}
	t.Cleanup(restore)
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Fatalf("set %s to %s: %v", path, value, err)
	}
	return restore
}
