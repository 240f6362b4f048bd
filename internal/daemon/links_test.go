package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/testutil"
)

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestLookAt(t *testing.T) {
	root := testutil.TempDir(t)
	rel := filepath.Join(root, "releases")
	v1 := filepath.Join(rel, "v1")
	if err := os.MkdirAll(filepath.Join(v1, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	symlink(t, "releases/v1", filepath.Join(root, "current"))              // relative
	symlink(t, filepath.Join(root, "current"), filepath.Join(root, "www")) // absolute, to a link
	symlink(t, "../releases/v1", filepath.Join(rel, "up"))                 // through ".."

	tests := []struct {
		name, path string
		real       string // "" when it does not resolve
		points     []point
	}{
		{"no link", filepath.Join(v1, "sub"), filepath.Join(v1, "sub"), nil},
		{"a link", filepath.Join(root, "current", "sub"), filepath.Join(v1, "sub"), []point{{root, "current"}}},
		{"a link to a link", filepath.Join(root, "www"), v1, []point{{root, "www"}, {root, "current"}}},
		{"dot dot in a target", filepath.Join(rel, "up", "sub"), filepath.Join(v1, "sub"), []point{{rel, "up"}}},
		{"dot dot after a link", root + "/current/../v1", v1, []point{{root, "current"}}},
		{"missing", filepath.Join(root, "none", "deeper"), "", []point{{root, "none"}}},
		{"missing behind a link", filepath.Join(root, "current", "none"), "", []point{{root, "current"}, {v1, "none"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lookAt(tt.path)
			if !slices.Equal(l.points, tt.points) {
				t.Errorf("points: got %v, want %v", l.points, tt.points)
			}
			if l.real != tt.real || (l.err == nil) != (tt.real != "") {
				t.Errorf("real path: got %q (error %v), want %q", l.real, l.err, tt.real)
			}
			if want, err := filepath.EvalSymlinks(tt.path); err == nil && l.real != want {
				t.Errorf("real path %q, filepath.EvalSymlinks says %q", l.real, want)
			}
		})
	}

	loop := filepath.Join(root, "loop")
	symlink(t, "loop", loop)
	if l := lookAt(loop); !errors.Is(l.err, unix.ELOOP) || len(l.points) != maxLinks+1 {
		t.Errorf("a link to itself: error %v and %d points, want ELOOP after %d, the kernel's bound", l.err, len(l.points), maxLinks)
	}
}

// waitChanged waits for a change from l, for up to within.
func waitChanged(l *links, within time.Duration) bool {
	select {
	case <-l.Changed():
		return true
	case <-time.After(within):
		return false
	}
}

func TestLinksChanged(t *testing.T) {
	root := testutil.TempDir(t)
	for _, v := range []string{"v1", "v2"} {
		if err := os.Mkdir(filepath.Join(root, v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cur := filepath.Join(root, "current")
	symlink(t, "v1", cur)
	l, err := newLinks(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.follow([]string{cur, filepath.Join(root, "v1")})
	if waitChanged(l, 0) {
		t.Fatal("a change reported before any")
	}

	// Names beside the link do not matter.
	if err := os.WriteFile(filepath.Join(root, "other"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "v3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if waitChanged(l, 200*time.Millisecond) {
		t.Error("a change reported for names the path does not go through")
	}

	// As ln -sfn re-points it: a new link renamed over the old.
	tmp := filepath.Join(root, ".current.tmp")
	symlink(t, "v2", tmp)
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	if !waitChanged(l, 5*time.Second) {
		t.Fatal("re-pointing the link by a rename: no change reported")
	}

	// Removed, then made again.
	if err := os.Remove(cur); err != nil {
		t.Fatal(err)
	}
	if !waitChanged(l, 5*time.Second) {
		t.Fatal("removing the link: no change reported")
	}
	symlink(t, "v3", cur)
	if !waitChanged(l, 5*time.Second) {
		t.Fatal("making the link again: no change reported")
	}

	// Followed no more once follow is given other paths.
	l.follow([]string{filepath.Join(root, "v1")})
	if err := os.Remove(cur); err != nil {
		t.Fatal(err)
	}
	if waitChanged(l, 200*time.Millisecond) {
		t.Error("a change reported for a link no longer followed")
	}
}

// A path that does not exist yet is followed at its first missing name:
// a link made there later moves the watch.
func TestLinksMissingPath(t *testing.T) {
	root := testutil.TempDir(t)
	l, err := newLinks(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.follow([]string{filepath.Join(root, "current", "sub")})
	if err := os.Mkdir(filepath.Join(root, "v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if waitChanged(l, 200*time.Millisecond) {
		t.Error("a change reported for a name the path does not go through")
	}
	symlink(t, "v1", filepath.Join(root, "current"))
	if !waitChanged(l, 5*time.Second) {
		t.Fatal("the missing name made as a link: no change reported")
	}
}

// A path on a filesystem that does not answer is followed once it does:
// a look and a watch that answer late are each reported as a change, for
// the daemon to resolve the watches again, and the late watch is kept
// only until the next follow.
func TestLinksLateAnswers(t *testing.T) {
	fs := testutil.MountFUSE(t)
	sub := filepath.Join(fs.Dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(testutil.TempDir(t), "current")
	symlink(t, sub, link)
	l, err := newLinks(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()

	fs.Hang(t, os.Getpid())
	if looks := l.follow([]string{link}); len(looks) != 0 {
		t.Fatalf("looks on a filesystem that does not answer: %+v", looks)
	}
	fs.Release(t)
	if !waitChanged(l, 5*time.Second) {
		t.Fatal("a look that answered late: no change reported")
	}

	watched := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.names)
	}
	fs.Hang(t, os.Getpid())
	l.watch([]point{{sub, "next"}})
	if n := watched(); n != 0 {
		t.Fatalf("watches on a filesystem that does not answer: %d", n)
	}
	fs.Release(t)
	if !waitChanged(l, 5*time.Second) {
		t.Fatal("a watch added late: no change reported")
	}
	if n := watched(); n != 1 {
		t.Fatalf("watches after the late one was added: %d, want 1", n)
	}
	l.follow(nil)
	if n := watched(); n != 0 {
		t.Errorf("a late watch no follow needs is kept: %d", n)
	}
}
