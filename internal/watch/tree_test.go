package watch

import (
	"fmt"
	"testing"
)

func TestTree(t *testing.T) {
	var tr tree
	k := func(ino uint64) devIno { return devIno{dev: 1, ino: ino} }
	set := func(p string, key devIno) { tr.setAll([]Dir{{Path: p, Dev: key.dev, Ino: key.ino}}) }
	for i, p := range []string{"/", "/a", "/a/b", "/a/b/c", "/ab", "/x/y"} {
		set(p, k(uint64(i+1)))
		if got := tr.len(); got != i+1 {
			t.Errorf("len after setting %s = %d, want %d (new)", p, got, i+1)
		}
	}
	set("/a/b", k(3))
	if got := tr.len(); got != 6 {
		t.Errorf("len after setting /a/b again with its key = %d, want 6", got)
	}
	set("/a/b", k(30))
	if got := tr.len(); got != 6 {
		t.Errorf("len after setting /a/b with another key = %d, want 6", got)
	}
	for _, tt := range []struct {
		p    string
		k    devIno
		want bool
	}{
		{"/", k(1), true},
		{"/a/b", k(30), true},
		{"/a/b", k(3), false},
		{"/a/b/c", k(4), true},
		{"/x", k(0), false}, // a component on the way, not marked
		{"/x/y", k(6), true},
		{"/nope", k(1), false},
	} {
		if got := tr.marked(tt.p, tt.k); got != tt.want {
			t.Errorf("marked(%s, %v) = %v, want %v", tt.p, tt.k, got, tt.want)
		}
	}
	if got := tr.remove("/a"); got != 3 {
		t.Errorf("remove(/a) = %d, want 3 (/a, /a/b, /a/b/c)", got)
	}
	if tr.marked("/a/b/c", k(4)) || !tr.marked("/ab", k(5)) {
		t.Error("after remove(/a): /a/b/c still marked, or /ab gone")
	}
	if got := tr.remove("/"); got != 3 {
		t.Errorf("remove(/) = %d, want 3 (/, /ab, /x/y)", got)
	}
	if got := tr.len(); got != 0 {
		t.Errorf("len after remove(/) = %d, want 0", got)
	}
}

func TestTreeSetAll(t *testing.T) {
	var tr tree
	ds := []Dir{
		{Path: "/", Dev: 1, Ino: 1},
		{Path: "/w/a", Dev: 1, Ino: 2},
		{Path: "/w/b", Dev: 1, Ino: 3},
		{Path: "/v/c", Dev: 1, Ino: 4},
		{Path: "/w/d", Dev: 1, Ino: 5},
		{Path: "/w/d", Dev: 1, Ino: 5}, // twice in a run
		{Path: "/", Dev: 1, Ino: 1},    // within /w's run
		{Path: "/w/e", Dev: 1, Ino: 6},
	}
	tr.setAll(ds)
	tr.setAll(ds[1:2]) // again: no new directory
	for _, d := range ds {
		if !tr.marked(d.Path, d.key()) {
			t.Errorf("%s not marked after setAll", d.Path)
		}
	}
	if tr.marked("/w", devIno{}) || tr.marked("/v", devIno{}) {
		t.Error("a parent on the way is marked")
	}
	if got := tr.len(); got != 6 {
		t.Errorf("len = %d, want 6", got)
	}
}

// A listing's leaves, recorded in one call, are made together: not a
// node each, nor the parent's map grown leaf by leaf.
func TestTreeSetAllAllocations(t *testing.T) {
	ds := make([]Dir, 256)
	for i := range ds {
		ds[i] = Dir{Path: fmt.Sprintf("/w/d%03d", i), Dev: 1, Ino: uint64(i + 2)}
	}
	allocs := testing.AllocsPerRun(10, func() {
		var tr tree
		tr.setAll([]Dir{{Path: "/w", Dev: 1, Ino: 1}}) // marked before it is listed
		tr.setAll(ds)
	})
	// The root's map and /w's node, then /w's map at its size and the
	// leaves' nodes together: 9 here, the maps' own tables included.
	if allocs > 12 {
		t.Errorf("setAll of 256 leaves: %.0f allocations, want at most 12", allocs)
	}
}
