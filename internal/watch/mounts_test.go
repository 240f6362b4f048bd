package watch

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/testutil"
)

func TestMountSource(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	s, err := NewMountSource(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	point := filepath.Join(testutil.TempDir(t), "m")
	mkdirs(t, filepath.Dir(point), "m")
	next := func(what string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-s.Events():
				if ev.Path != point {
					continue // another test's, or the system's
				}
				if ev.Op != Created || ev.Source != "mounts" {
					t.Fatalf("%s: got %+v, want Created %s from mounts", what, ev, point)
				}
				return
			case <-deadline:
				t.Fatalf("%s: no event for %s in 5s", what, point)
			}
		}
	}
	if err := unix.Mount("vigil-test", point, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount: %v", err)
	}
	next("mount")
	if err := unix.Unmount(point, 0); err != nil {
		t.Fatalf("unmount: %v", err)
	}
	next("unmount")
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, ok := <-s.Events(); ok {
		t.Error("Events still open after Close")
	}
}
