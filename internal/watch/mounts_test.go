package watch

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
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

// A table that changed by a mount gives its point; one the kernel says
// changed but that reads the same (a filesystem replaced by one with the
// same line) gives Remounted, as where cannot be told.
func TestMountChanges(t *testing.T) {
	root := mountinfo.Mount{ID: 1, Major: 8, Minor: 1, Root: "/", Point: "/"}
	vol := mountinfo.Mount{ID: 45, Major: 0, Minor: 41, Root: "/", Point: "/srv/vol"}
	set := func(ms ...mountinfo.Mount) map[mountinfo.Mount]bool { return mountSet(ms) }
	tests := []struct {
		name    string
		was, is map[mountinfo.Mount]bool
		want    []DirEvent
	}{
		{"mounted", set(root), set(root, vol), []DirEvent{{Op: Created, Path: "/srv/vol", Source: "mounts"}}},
		{"unmounted", set(root, vol), set(root), []DirEvent{{Op: Created, Path: "/srv/vol", Source: "mounts"}}},
		{"replaced by its like", set(root, vol), set(root, vol), []DirEvent{{Op: Remounted, Source: "mounts"}}},
	}
	for _, tt := range tests {
		if got := mountChanges(tt.was, tt.is, "mounts"); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
