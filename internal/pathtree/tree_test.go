package pathtree

import (
	"fmt"
	"slices"
	"testing"
)

// build makes a tree with the keys of keyed and the pins of pinned.
func build(keyed map[string]int, pinned ...string) *Tree[int] {
	t := New[int]()
	for p, k := range keyed {
		t.SetKey(t.Ensure(p), k)
	}
	for _, p := range pinned {
		t.Pin(t.Ensure(p))
	}
	return t
}

// dump lists every node below the root, sorted: its path, then its key
// or "pinned".
func dump(t *Tree[int]) []string {
	var got []string
	t.Walk(t.Root(), "/", func(n *Node[int], p string) {
		switch {
		case n == t.Root():
		case n.Key() != 0:
			got = append(got, fmt.Sprintf("%s %d", p, n.Key()))
		case n.pinned:
			got = append(got, p+" pinned")
		default:
			got = append(got, p)
		}
	})
	slices.Sort(got)
	return got
}

func TestTree(t *testing.T) {
	tests := []struct {
		name   string
		keyed  map[string]int
		pinned []string
		do     func(t *testing.T, tr *Tree[int], rm func(int))
		want   []string // dump after do
		wantRm []int    // keys rm was called with, sorted
	}{
		{
			name:  "a renamed subtree has its new paths",
			keyed: map[string]int{"/a": 1, "/a/b": 2, "/a/b/c": 3, "/a/b/c/d": 4},
			do: func(t *testing.T, tr *Tree[int], _ func(int)) {
				n := tr.Lookup("/a/b")
				tr.Detach(n)
				if old := tr.Attach(n, "/x/y"); old != nil {
					t.Errorf("Attach where nothing was: got a node")
				}
			},
			want: []string{"/a 1", "/x", "/x/y 2", "/x/y/c 3", "/x/y/c/d 4"},
		},
		{
			name:  "a subtree renamed out of the components it alone held prunes them",
			keyed: map[string]int{"/p/q/r": 1},
			do: func(t *testing.T, tr *Tree[int], _ func(int)) {
				n := tr.Lookup("/p/q/r")
				tr.Detach(n)
				tr.Attach(n, "/s")
			},
			want: []string{"/s 1"},
		},
		{
			name:   "prune stops at a keyed or pinned node",
			keyed:  map[string]int{"/k": 1},
			pinned: []string{"/p"},
			do: func(t *testing.T, tr *Tree[int], _ func(int)) {
				tr.Ensure("/k/x/y")
				tr.Ensure("/p/x/y")
				tr.Ensure("/e/x/y")
				tr.Prune(tr.Lookup("/k/x/y"))
				tr.Prune(tr.Lookup("/p/x/y"))
				tr.Prune(tr.Lookup("/e/x/y"))
				tr.Prune(tr.Lookup("/k"))
				tr.Prune(tr.Lookup("/p"))
			},
			want: []string{"/k 1", "/p pinned"},
		},
		{
			name:  "a node with a key forgotten is pruned",
			keyed: map[string]int{"/a/b": 1},
			do: func(t *testing.T, tr *Tree[int], _ func(int)) {
				n := tr.Lookup("/a/b")
				tr.ForgetKey(n)
				tr.Prune(n)
			},
			want: nil,
		},
		{
			name:   "a key unpins",
			pinned: []string{"/a"},
			do:     func(t *testing.T, tr *Tree[int], _ func(int)) { tr.SetKey(tr.Lookup("/a"), 1) },
			want:   []string{"/a 1"},
		},
		{
			name:  "a key given to another node leaves the first",
			keyed: map[string]int{"/a/b": 1, "/c": 2},
			do:    func(t *testing.T, tr *Tree[int], _ func(int)) { tr.SetKey(tr.Lookup("/c"), 1) },
			want:  []string{"/c 1"},
		},
		{
			name:   "drop calls rm with every key below and forgets them",
			keyed:  map[string]int{"/d": 1, "/d/a": 2, "/d/a/b": 3, "/d/c/e": 4, "/other": 5},
			pinned: []string{"/d/a/p"},
			do:     func(t *testing.T, tr *Tree[int], rm func(int)) { tr.Drop(tr.Lookup("/d"), rm) },
			want:   []string{"/other 5"},
			wantRm: []int{1, 2, 3, 4},
		},
		{
			name:   "drop at / keeps the root",
			keyed:  map[string]int{"/a": 1, "/b/c": 2},
			pinned: []string{"/p"},
			do:     func(t *testing.T, tr *Tree[int], rm func(int)) { tr.DropPath("/", rm) },
			want:   nil,
			wantRm: []int{1, 2},
		},
		{
			name:  "drop of a path not in the tree does nothing",
			keyed: map[string]int{"/a": 1},
			do:    func(t *testing.T, tr *Tree[int], rm func(int)) { tr.DropPath("/b", rm) },
			want:  []string{"/a 1"},
		},
		{
			name:   "merge folds the node attach returned, dropping what both hold",
			keyed:  map[string]int{"/a": 1, "/a/x": 2, "/a/y": 3, "/b": 4, "/b/y": 5, "/b/y/z": 6},
			pinned: []string{"/a/p"},
			do: func(t *testing.T, tr *Tree[int], rm func(int)) {
				n := tr.Lookup("/b")
				tr.Detach(n)
				old := tr.Attach(n, "/a")
				if old == nil || old.Key() != 1 {
					t.Fatalf("Attach over /a: got %v want its node", old)
				}
				if p, ok := tr.Path(old); ok {
					t.Errorf("Path of the node Attach returned: got %q, true want detached", p)
				}
				tr.Merge(old, n, rm)
			},
			want:   []string{"/a 4", "/a/p pinned", "/a/x 2", "/a/y 5", "/a/y/z 6"},
			wantRm: []int{1, 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := build(tt.keyed, tt.pinned...)
			var gotRm []int
			tt.do(t, tree, func(k int) { gotRm = append(gotRm, k) })
			if got := dump(tree); !slices.Equal(got, tt.want) {
				t.Errorf("tree: got %q want %q", got, tt.want)
			}
			slices.Sort(gotRm)
			if !slices.Equal(gotRm, tt.wantRm) {
				t.Errorf("rm: got %v want %v", gotRm, tt.wantRm)
			}
			// The counts agree with the nodes.
			keys, pins := 0, 0
			tree.Walk(tree.Root(), "/", func(n *Node[int], p string) {
				if n.Key() != 0 {
					keys++
					if tree.Find(n.Key()) != n {
						t.Errorf("Find(%d): not the node at %s", n.Key(), p)
					}
					if got, ok := tree.Path(n); !ok || got != p {
						t.Errorf("Path of %s: got %q, %v", p, got, ok)
					}
				}
				if n.pinned {
					pins++
				}
			})
			if tree.Len() != keys || tree.Pinned() != pins {
				t.Errorf("Len, Pinned: got %d, %d want %d, %d", tree.Len(), tree.Pinned(), keys, pins)
			}
		})
	}
}

func TestPath(t *testing.T) {
	tree := New[string]()
	for _, p := range []string{"/", "/a", "/a/b/c"} {
		n := tree.Ensure(p)
		if got, ok := tree.Path(n); !ok || got != p {
			t.Errorf("Path(Ensure(%q)): got %q, %v want %q, true", p, got, ok, p)
		}
		if got := tree.Lookup(p); got != n {
			t.Errorf("Lookup(%q): not the node Ensure made", p)
		}
	}
	if got := tree.Lookup("/a/x"); got != nil {
		t.Errorf("Lookup of a path not in the tree: got %v want nil", got)
	}
	n := tree.Lookup("/a/b")
	tree.Detach(n)
	if got, ok := tree.Path(tree.Lookup("/a")); ok {
		t.Errorf("Path of a component left holding nothing: got %q, want it pruned", got)
	}
	if got, ok := tree.Path(n.Kid("c")); ok {
		t.Errorf("Path below a detached node: got %q, true want false", got)
	}
}

func TestSplitJoin(t *testing.T) {
	tests := []struct{ path, dir, name string }{
		{"/a", "/", "a"},
		{"/a/b", "/a", "b"},
		{"/a/b/c", "/a/b", "c"},
	}
	for _, tt := range tests {
		dir, name := splitPath(tt.path)
		if dir != tt.dir || name != tt.name {
			t.Errorf("splitPath(%q): got %q, %q want %q, %q", tt.path, dir, name, tt.dir, tt.name)
		}
		if got := Join(tt.dir, tt.name); got != tt.path {
			t.Errorf("Join(%q, %q): got %q want %q", tt.dir, tt.name, got, tt.path)
		}
	}
}
