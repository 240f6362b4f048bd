package onaccess

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/testutil"
)

func TestAliasesResolveIn(t *testing.T) {
	root := mountinfo.Mount{ID: 1, Major: 8, Minor: 1, Root: "/", Point: "/"}
	data := mountinfo.Mount{ID: 2, Major: 8, Minor: 2, Root: "/", Point: "/data"}
	own := []mountinfo.Mount{
		root, data,
		{ID: 3, Major: 8, Minor: 1, Root: "/srv/www", Point: "/var/www"}, // a bind mount
		{ID: 4, Major: 8, Minor: 2, Root: "/", Point: "/mnt/data2"},      // the same filesystem again
	}
	pol := &policy.Policy{Watches: []*policy.Watch{
		{Path: "/srv"},
		{Path: "/srv/www/uploads"},
		{Path: "/data"},
	}}
	a := NewAliases(nil)
	a.own = table{mounts: own, read: time.Now()}
	a.findPlaces(pol)
	// A container's namespace: its volume /app is the host's /srv/www.
	ctr := table{mounts: []mountinfo.Mount{
		{ID: 10, Major: 0, Minor: 50, Root: "/", Point: "/"},
		{ID: 11, Major: 8, Minor: 1, Root: "/srv/www", Point: "/app"},
	}}
	tests := []struct {
		name string
		t    *table
		path string
		dev  uint64
		want string
		ok   bool
	}{
		{"bind mount", &a.own, "/var/www/index.html", root.Dev(), "/srv/www/index.html", true},
		{"the deepest watch", &a.own, "/var/www/uploads/f", root.Dev(), "/srv/www/uploads/f", true},
		{"a filesystem's root mounted twice", &a.own, "/mnt/data2/x/f", data.Dev(), "/data/x/f", true},
		{"outside every watch", &a.own, "/etc/passwd", root.Dev(), "", false},
		{"another namespace's volume", &ctr, "/app/uploads/f", root.Dev(), "/srv/www/uploads/f", true},
		{"another namespace's own file", &ctr, "/etc/passwd", mountinfo.Mount{Major: 0, Minor: 50}.Dev(), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := a.resolveIn(tt.t, tt.path, tt.dev)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// watchedTmpfs mounts a tmpfs for the test and returns it, its device and
// a policy that watches it.
func watchedTmpfs(t *testing.T) (string, uint64, *policy.Policy) {
	t.Helper()
	dir := testutil.MountTmpfs(t)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return dir, st.Dev, &policy.Policy{Watches: []*policy.Watch{{Path: dir}}}
}

// A watch's filesystem mounted after the mount table was read is found
// once the table is old enough to be read again.
func TestAliasesWatchMountedLater(t *testing.T) {
	dir, dev, pol := watchedTmpfs(t)
	a := NewAliases(nil)
	// Read before the mount: dir was then a directory of the filesystem
	// above it.
	a.own = table{mounts: []mountinfo.Mount{{ID: 1, Major: 8, Minor: 1, Root: "/", Point: "/"}}, read: time.Now().Add(-2 * refreshAfter)}
	a.findPlaces(pol)
	got, ok := a.Resolve(pol, dir+"/f", dev, int32(os.Getpid()))
	if !ok || got != dir+"/f" {
		t.Errorf("got %q, %v; want %q, true", got, ok, dir+"/f")
	}
}

// A bind mount made a moment after the mount table was read is known at
// the next open through it: the table is read again once the kernel says
// the mounts changed, not once it is old.
func TestAliasesBindMountAtOnce(t *testing.T) {
	dir, dev, pol := watchedTmpfs(t)
	a := NewAliases(nil)
	if got, ok := a.Resolve(pol, dir+"/f", dev, int32(os.Getpid())); !ok || got != dir+"/f" {
		t.Fatalf("before the bind mount: got %q, %v; want %q, true", got, ok, dir+"/f")
	}
	bind := testutil.TempDir(t)
	testutil.BindMount(t, dir, bind)
	if got, ok := a.Resolve(pol, bind+"/f", dev, int32(os.Getpid())); !ok || got != dir+"/f" {
		t.Errorf("through the bind mount made since: got %q, %v; want %q, true", got, ok, dir+"/f")
	}
}

// A path is vigil's own only through a mount of its own namespace; a
// mount in no namespace it can read leaves the path untold.
func TestAliasesThrough(t *testing.T) {
	dir := t.TempDir()
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_MNT_ID, &stx); err != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		t.Skipf("no STATX_MNT_ID here: %v", err)
	}
	pol := &policy.Policy{Watches: []*policy.Watch{{Path: dir}}}
	a := NewAliases(nil)
	self := int32(os.Getpid())
	dev := unix.Mkdev(stx.Dev_major, stx.Dev_minor)
	for _, tt := range []struct {
		name     string
		mnt      uint64
		wantPath string
		want     Mount
	}{
		{"own mount", stx.Mnt_id, dir + "/f", OwnMount},
		{"mount in no namespace", 1 << 40, "", UnknownMount},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if p, at := a.Through(pol, tt.mnt, dir+"/f", dev, self); p != tt.wantPath || at != tt.want {
				t.Errorf("got %q, %d; want %q, %d", p, at, tt.wantPath, tt.want)
			}
		})
	}
}
