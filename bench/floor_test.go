package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFloorCountsEveryDirectory(t *testing.T) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF, unix.O_RDONLY)
	if errors.Is(err, unix.EPERM) {
		t.Skip("fanotify needs CAP_SYS_ADMIN")
	}
	if err != nil {
		t.Skipf("no fanotify: %v", err)
	}
	unix.Close(fd)

	root := t.TempDir()
	// Leaves at every depth, a chain four deep, and files, which are not
	// counted.
	for _, d := range []string{"a/b/c/d", "a/e", "f", "g/h", "g/i/j"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"file", "a/file", "a/b/c/file"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dirs, elapsed, err := floorOnce(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := 11; dirs != want { // root, a, a/b, a/b/c, a/b/c/d, a/e, f, g, g/h, g/i, g/i/j
		t.Errorf("floorOnce counted %d directories, want %d", dirs, want)
	}
	if elapsed <= 0 {
		t.Errorf("elapsed %v", elapsed)
	}
}
