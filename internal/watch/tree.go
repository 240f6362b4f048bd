package watch

import (
	"strings"
	"sync"
)

// tree records the marked directories by path, as a trie of path
// components, so that a subtree is found, moved or dropped without a scan
// of every directory.
type tree struct {
	mu    sync.Mutex
	root  node
	count int
}

type node struct {
	children map[string]*node
	key      devIno
	born     int64 // Dir.Born: 0 when not known
	marked   bool
}

// components splits a clean absolute path; "/" has none.
func components(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// first splits the first component off a path relative to the root:
// "a/b/c" gives "a" and "b/c". setAll and marked, on the walk's hot path,
// go through paths with it instead of allocating their components.
func first(rel string) (name, rest string) {
	if i := strings.IndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return rel, ""
}

// setAll records each of ds as marked. A run of directories with one
// parent, a listing's leaves, walks to that parent once, and their nodes
// are made together: at start-up a tree's leaves come in such runs, and
// making each node and growing the parent's map leaf by leaf was most of
// what the walk allocated.
func (t *tree) setAll(ds []Dir) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		parent     *node
		parentPath string
		fresh      []node // made for the run's entries of parent not yet there
	)
	for j, d := range ds {
		dir, name, ok := split(d.Path)
		if !ok {
			t.markLocked(t.nodeLocked(d.Path), d)
			continue
		}
		if parent == nil || dir != parentPath {
			parent, parentPath, fresh = t.nodeLocked(dir), dir, nil
			if parent.children == nil {
				parent.children = make(map[string]*node, runIn(ds[j:], dir))
			}
		}
		n := parent.children[name]
		if n == nil {
			if len(fresh) == 0 {
				fresh = make([]node, runIn(ds[j:], dir))
			}
			n, fresh = &fresh[0], fresh[1:]
			parent.children[name] = n
		}
		t.markLocked(n, d)
	}
}

// split splits a path into its directory and last component; false for
// "/" and a path that is not absolute.
func split(p string) (dir, name string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 || i == len(p)-1 {
		return "", "", false
	}
	return p[:i], p[i+1:], true
}

// runIn is how many of ds, from the first, are entries of dir.
func runIn(ds []Dir, dir string) int {
	for i, d := range ds {
		if in, _, ok := split(d.Path); !ok || in != dir {
			return i
		}
	}
	return len(ds)
}

// nodeLocked returns the node of path, made with those above it as
// needed.
func (t *tree) nodeLocked(path string) *node {
	n := &t.root
	for rel := strings.TrimPrefix(path, "/"); rel != ""; {
		var c string
		c, rel = first(rel)
		n = n.child(c)
	}
	return n
}

func (n *node) child(name string) *node {
	next := n.children[name]
	if next == nil {
		if n.children == nil {
			n.children = make(map[string]*node)
		}
		next = &node{}
		n.children[name] = next
	}
	return next
}

func (t *tree) markLocked(n *node, d Dir) {
	if !n.marked {
		t.count++
	}
	n.marked, n.key, n.born = true, d.key(), d.Born
}

// marked reports whether path is recorded with key.
func (t *tree) marked(path string, key devIno) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.findLocked(path)
	return n != nil && n.marked && n.key == key
}

// markedAs reports whether path is recorded as d itself: the same inode
// number, and the same birth time, known. The number alone does not tell
// a directory deleted and made again, which often takes it back.
func (t *tree) markedAs(path string, d Dir) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.findLocked(path)
	return n != nil && n.marked && n.key == d.key() && d.Born != 0 && n.born == d.Born
}

// has reports whether path is recorded as marked, whatever its inode.
func (t *tree) has(path string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.findLocked(path)
	return n != nil && n.marked
}

func (t *tree) findLocked(path string) *node {
	n := &t.root
	for rel := strings.TrimPrefix(path, "/"); rel != ""; {
		var c string
		c, rel = first(rel)
		if n = n.children[c]; n == nil {
			return nil
		}
	}
	return n
}

// remove drops path and everything below it, and returns how many marked
// directories that was.
func (t *tree) remove(path string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := components(path)
	if len(cs) == 0 {
		n := countMarked(&t.root)
		t.root, t.count = node{}, 0
		return n
	}
	parent := &t.root
	for _, c := range cs[:len(cs)-1] {
		if parent = parent.children[c]; parent == nil {
			return 0
		}
	}
	last := cs[len(cs)-1]
	n := parent.children[last]
	if n == nil {
		return 0
	}
	delete(parent.children, last)
	removed := countMarked(n)
	t.count -= removed
	return removed
}

func countMarked(n *node) int {
	c := 0
	if n.marked {
		c = 1
	}
	for _, k := range n.children {
		c += countMarked(k)
	}
	return c
}

// len is the number of marked directories.
func (t *tree) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}
