package daemon

import (
	"slices"
	"testing"

	"github.com/vigilsec/vigil/internal/policy"
)

// A mount or unmount calls for a mark on the filesystem at its point for
// a filesystem-mode watch it lies in, and on the watch's own filesystem,
// whatever that is now, for one below it.
func TestSubmountMarks(t *testing.T) {
	up := &policy.Watch{Path: "/srv/up", Mode: policy.ModeFilesystem, On: policy.EventOpen}
	data := &policy.Watch{Path: "/data", Mode: policy.ModeFilesystem, On: policy.EventOpen | policy.EventExec}
	tree := &policy.Watch{Path: "/home", Mode: policy.ModeTree, On: policy.EventOpen}
	p := &policy.Policy{Watches: []*policy.Watch{up, data, tree}}
	mark := func(w *policy.Watch, dir string) fsMark { return fsMark{path: w.Path, dir: dir, mask: fsMask(w)} }
	tests := []struct {
		point string
		want  []fsMark
	}{
		{"/srv/up/cache", []fsMark{mark(up, "/srv/up/cache")}},
		{"/srv/up", []fsMark{mark(up, "/srv/up")}},
		{"/srv", []fsMark{mark(up, "/srv/up")}},
		{"/", []fsMark{mark(up, "/srv/up"), mark(data, "/data")}},
		{"/srv/upload", nil},
		{"/home/a", nil}, // tree mode: the watch manager's
		{"/mnt", nil},
	}
	for _, tt := range tests {
		if got := submountMarks(p, tt.point); !slices.Equal(got, tt.want) {
			t.Errorf("submountMarks(%s): got %+v, want %+v", tt.point, got, tt.want)
		}
	}
}
