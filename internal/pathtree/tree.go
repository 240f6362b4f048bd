package pathtree

import (
	"strings"
)

// Node is one path component. Tracked directories carry their key (the
// zero K: not tracked); the components above them exist only to hold the
// tree. Keeping paths as a tree makes renames and subtree removal cost
// the size of the subtree, not the number of tracked directories.
type Node[K comparable] struct {
	name   string
	parent *Node[K] // nil for the root, and for a node detached from the tree
	kids   map[string]*Node[K]
	key    K
	pinned bool // kept without a key: a directory that could not be tracked
}

// Key is the key of n; the zero K when n is not tracked.
func (n *Node[K]) Key() K { return n.key }

// Kid is n's child called name, or nil.
func (n *Node[K]) Kid(name string) *Node[K] { return n.kids[name] }

func (n *Node[K]) child(name string) *Node[K] {
	k := n.kids[name]
	if k == nil {
		if n.kids == nil {
			n.kids = make(map[string]*Node[K])
		}
		k = &Node[K]{name: name, parent: n}
		n.kids[name] = k
	}
	return k
}

// Tree maps paths to nodes and keys to nodes. It is not safe for
// concurrent use.
type Tree[K comparable] struct {
	root   *Node[K]
	byKey  map[K]*Node[K]
	pinned int // nodes with pinned set
}

// New returns an empty tree.
func New[K comparable]() *Tree[K] {
	return &Tree[K]{root: &Node[K]{}, byKey: make(map[K]*Node[K])}
}

// Root is the node of "/".
func (t *Tree[K]) Root() *Node[K] { return t.root }

// Find returns the node with key k, or nil.
func (t *Tree[K]) Find(k K) *Node[K] { return t.byKey[k] }

// Len is the number of nodes with a key.
func (t *Tree[K]) Len() int { return len(t.byKey) }

// Pinned is the number of pinned nodes.
func (t *Tree[K]) Pinned() int { return t.pinned }

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

// Lookup returns the node at the clean absolute path p, or nil.
func (t *Tree[K]) Lookup(p string) *Node[K] {
	n := t.root
	components(p, func(name string) bool {
		n = n.kids[name]
		return n != nil
	})
	return n
}

// Ensure returns the node at the clean absolute path p, creating it and
// its parents as needed.
func (t *Tree[K]) Ensure(p string) *Node[K] {
	n := t.root
	components(p, func(name string) bool {
		n = n.child(name)
		return true
	})
	return n
}

// Path returns the path of n; false when n is detached from the tree.
func (t *Tree[K]) Path(n *Node[K]) (string, bool) {
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

// SetKey gives n the key k, replacing any it had, and unpins it; a node
// that had k loses it.
func (t *Tree[K]) SetKey(n *Node[K], k K) {
	var zero K
	if old := t.byKey[k]; old != nil && old != n {
		old.key = zero
		t.Prune(old)
	}
	if n.key != zero {
		delete(t.byKey, n.key)
	}
	n.key = k
	t.byKey[k] = n
	t.setPinned(n, false)
}

// ForgetKey removes the key of n from the tree.
func (t *Tree[K]) ForgetKey(n *Node[K]) {
	var zero K
	if n.key != zero {
		if t.byKey[n.key] == n {
			delete(t.byKey, n.key)
		}
		n.key = zero
	}
}

// Pin keeps n in the tree without a key, until it gets one or is dropped.
func (t *Tree[K]) Pin(n *Node[K]) { t.setPinned(n, true) }

func (t *Tree[K]) setPinned(n *Node[K], pinned bool) {
	if n.pinned != pinned {
		n.pinned = pinned
		if pinned {
			t.pinned++
		} else {
			t.pinned--
		}
	}
}

// Detach takes n out of the tree, keeping its subtree, and prunes the
// components above it that no longer hold anything.
func (t *Tree[K]) Detach(n *Node[K]) {
	p := n.parent
	if p == nil {
		return
	}
	delete(p.kids, n.name)
	n.parent = nil
	t.Prune(p)
}

// Prune removes n and its parents while they hold nothing: no key, no
// pin, no children.
func (t *Tree[K]) Prune(n *Node[K]) {
	var zero K
	for n != t.root && n.parent != nil && n.key == zero && !n.pinned && len(n.kids) == 0 {
		p := n.parent
		delete(p.kids, n.name)
		n.parent = nil
		n = p
	}
}

// Attach puts the detached node n at the clean absolute path p. A node
// already at p is detached and returned (with its subtree) for the caller
// to decide on.
func (t *Tree[K]) Attach(n *Node[K], p string) (old *Node[K]) {
	dir, name := splitPath(p)
	parent := t.Ensure(dir)
	old = parent.kids[name]
	if old != nil {
		delete(parent.kids, name)
		old.parent = nil
	}
	if parent.kids == nil {
		parent.kids = make(map[string]*Node[K])
	}
	n.name = name
	n.parent = parent
	parent.kids[name] = n
	t.Prune(n)
	return old
}

// Merge folds the node old, which Attach returned, into n: old's own key
// is stale, its subtree may hold directories tracked since. A child of
// old that n has too is dropped. rm, when not nil, is called with every
// key forgotten.
func (t *Tree[K]) Merge(old, n *Node[K], rm func(K)) {
	t.forget(old, rm)
	for k, kid := range old.kids {
		if n.kids[k] != nil {
			kid.parent = nil
			t.Drop(kid, rm)
			continue
		}
		if n.kids == nil {
			n.kids = make(map[string]*Node[K])
		}
		kid.parent = n
		n.kids[k] = kid
	}
	old.kids = nil
}

// Drop dismantles the subtree of n, forgetting every key and pin in it.
// rm, when not nil, is called with each key first.
func (t *Tree[K]) Drop(n *Node[K], rm func(K)) {
	t.Detach(n)
	var walk func(*Node[K])
	walk = func(n *Node[K]) {
		t.forget(n, rm)
		for _, k := range n.kids {
			k.parent = nil
			walk(k)
		}
		n.kids = nil
	}
	walk(n)
}

// forget removes n's key, calling rm with it first, and its pin.
func (t *Tree[K]) forget(n *Node[K], rm func(K)) {
	var zero K
	if n.key != zero {
		if rm != nil {
			rm(n.key)
		}
		t.ForgetKey(n)
	}
	t.setPinned(n, false)
}

// DropPath drops the subtree at the clean absolute path p, or at "/"
// every subtree, keeping the root. A path not in the tree is ignored.
func (t *Tree[K]) DropPath(p string, rm func(K)) {
	n := t.Lookup(p)
	if n == nil {
		return
	}
	if n != t.root {
		t.Drop(n, rm)
		return
	}
	for _, k := range n.kids {
		t.Drop(k, rm)
	}
}

// Walk calls fn for every node in the subtree of n, which is at p, with
// its path.
func (t *Tree[K]) Walk(n *Node[K], p string, fn func(n *Node[K], p string)) {
	fn(n, p)
	for _, k := range n.kids {
		t.Walk(k, Join(p, k.name), fn)
	}
}

// Join is the path of the entry name in the directory dir.
func Join(dir, name string) string {
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
