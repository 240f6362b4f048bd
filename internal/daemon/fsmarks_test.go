package daemon

import (
	"slices"
	"testing"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
)

// A filesystem-mode watch needs a mark on each filesystem mounted at or
// below it and, once the mount table changed, on the one that holds its
// path, whatever that is now.
func TestFSMarks(t *testing.T) {
	up := &policy.Watch{Path: "/srv/up", Mode: policy.ModeFilesystem, On: policy.EventOpen}
	data := &policy.Watch{Path: "/data", Mode: policy.ModeFilesystem, On: policy.EventOpen | policy.EventExec}
	tree := &policy.Watch{Path: "/home", Mode: policy.ModeTree, On: policy.EventOpen}
	p := &policy.Policy{Watches: []*policy.Watch{up, data, tree}}
	var ms []mountinfo.Mount
	for _, point := range []string{"/", "/srv", "/srv/up", "/srv/up/cache", "/srv/upload", "/home/a", "/data/x/y"} {
		ms = append(ms, mountinfo.Mount{Point: point})
	}
	mark := func(w *policy.Watch, dir string) fsMark { return fsMark{path: w.Path, dir: dir, mask: fsMask(w)} }
	below := []fsMark{mark(up, "/srv/up/cache"), mark(data, "/data/x/y")}
	if got := fsMarks(p, ms, false); !slices.Equal(got, below) {
		t.Errorf("at start: got %+v, want %+v", got, below)
	}
	all := []fsMark{mark(up, "/srv/up"), mark(up, "/srv/up/cache"), mark(data, "/data"), mark(data, "/data/x/y")}
	if got := fsMarks(p, ms, true); !slices.Equal(got, all) {
		t.Errorf("after a change: got %+v, want %+v", got, all)
	}
}
