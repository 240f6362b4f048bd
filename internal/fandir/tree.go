package fandir

import (
	"strings"
)

// node is one path component. Tracked directories carry the key of their
// file handle; the components above them exist only to hold the tree.
// Keeping paths as a tree makes renames and subtree removal cost the size
// of the subtree, not the number of tracked directories.
type node struct {
	name   string
	parent *node // nil for the root, and for a node detached from the tree
	kids   map[string]*node
	key    string // "": not tracked
}

// tree maps paths to nodes and handle keys to nodes.
type tree struct {
	root  *node
	byKey map[string]*node
}

func newTree() *tree {
	return &tree{root: &node{}, byKey: make(map[string]*node)}
}

// components calls fn for each component of the clean absolute path p.
func components(p string, fn func(name string) bool) {
	p = strings.TrimPrefix(p, "/")
	for p != "" {
		name := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			name, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		if !fn(name) {
			return
		}
	}
}

// lookup returns the node at p, or nil.
func (t *tree) lookup(p string) *node {
	n := t.root
	components(p, func(name string) bool {
		n = n.kids[name]
		return n != nil
	})
	return n
}

// ensure returns the node at p, creating it and its parents as needed.
func (t *tree) ensure(p string) *node {
	n := t.root
	components(p, func(name string) bool {
		n = n.child(name)
		return true
	})
	return n
}

func (n *node) child(name string) *node {
	k := n.kids[name]
	if k == nil {
		if n.kids == nil {
			n.kids = make(map[string]*node)
		}
		k = &node{name: name, parent: n}
		n.kids[name] = k
	}
	return k
}

// path returns the path of n; false when n is detached from the tree.
func (t *tree) path(n *node) (string, bool) {
	if n == t.root {
		return "/", true
	}
	var names []string
	for ; n != t.root; n = n.parent {
		if n == nil {
			return "", false
		}
		names = append(names, n.name)
	}
	size := 0
	for _, s := range names {
		size += 1 + len(s)
	}
	var b strings.Builder
	b.Grow(size)
	for i := len(names) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(names[i])
	}
	return b.String(), true
}

// setKey gives n the handle key k, replacing any it had; a node that had
// k loses it.
func (t *tree) setKey(n *node, k string) {
	if old := t.byKey[k]; old != nil && old != n {
		old.key = ""
		t.prune(old)
	}
	if n.key != "" {
		delete(t.byKey, n.key)
	}
	n.key = k
	t.byKey[k] = n
}

// forgetKey removes the key of n from the tree.
func (t *tree) forgetKey(n *node) {
	if n.key != "" {
		if t.byKey[n.key] == n {
			delete(t.byKey, n.key)
		}
		n.key = ""
	}
}

// detach takes n out of the tree, keeping its subtree, and prunes the
// components above it that no longer hold anything.
func (t *tree) detach(n *node) {
	p := n.parent
	if p == nil {
		return
	}
	delete(p.kids, n.name)
	n.parent = nil
	t.prune(p)
}

// prune removes n and its parents while they hold nothing.
func (t *tree) prune(n *node) {
	for n != t.root && n.parent != nil && n.key == "" && len(n.kids) == 0 {
		p := n.parent
		delete(p.kids, n.name)
		n.parent = nil
		n = p
	}
}

// attach puts the detached node n at path p. A node already at p is
// detached and returned (with its subtree) for the caller to decide on.
func (t *tree) attach(n *node, p string) (old *node) {
	dir, name := splitPath(p)
	parent := t.ensure(dir)
	old = parent.kids[name]
	if old != nil {
		delete(parent.kids, name)
		old.parent = nil
	}
	if parent.kids == nil {
		parent.kids = make(map[string]*node)
	}
	n.name = name
	n.parent = parent
	parent.kids[name] = n
	t.prune(n)
	return old
}

// drop dismantles the subtree of n, forgetting every key in it.
func (t *tree) drop(n *node) {
	t.detach(n)
	var walk func(*node)
	walk = func(n *node) {
		t.forgetKey(n)
		for _, k := range n.kids {
			k.parent = nil
			walk(k)
		}
		n.kids = nil
	}
	walk(n)
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/", p[i+1:]
	}
	return p[:i], p[i+1:]
}
