package policy

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// index holds what Parse precomputes so that Match and ExcludedProcess
// do not allocate. A Policy built as a literal has none and takes the
// slow, equally correct path.
type index struct {
	byPath   map[string]*Watch // only when there are many watches
	uids     map[uint32]struct{}
	programs map[string]struct{}
}

// linearMax is the watch count up to which a scan of the sorted slice
// beats walking up the path with map lookups.
const linearMax = 16

// index sorts the watches and builds the lookup tables.
func (p *Policy) index() {
	// Descending order puts a longer path before any of its prefixes, so the
	// first covering watch is the longest one.
	sort.Slice(p.Watches, func(i, j int) bool { return p.Watches[i].Path > p.Watches[j].Path })
	ix := &index{}
	if len(p.Watches) > linearMax {
		ix.byPath = make(map[string]*Watch, len(p.Watches))
		for _, w := range p.Watches {
			ix.byPath[w.Path] = w
		}
	}
	if len(p.Exclude.UIDs) > 0 {
		ix.uids = make(map[uint32]struct{}, len(p.Exclude.UIDs))
		for _, u := range p.Exclude.UIDs {
			ix.uids[u] = struct{}{}
		}
	}
	if len(p.Exclude.Programs) > 0 {
		ix.programs = make(map[string]struct{}, len(p.Exclude.Programs))
		for _, e := range p.Exclude.Programs {
			ix.programs[e] = struct{}{}
		}
	}
	p.ix = ix
}

// rel returns path relative to dir and whether dir is path or one of its
// ancestors, comparing whole components. Both must be clean and absolute.
func rel(dir, p string) (string, bool) {
	if dir == "/" {
		if p == "" || p[0] != '/' {
			return "", false
		}
		return p[1:], true
	}
	if !strings.HasPrefix(p, dir) {
		return "", false
	}
	if len(p) == len(dir) {
		return "", true
	}
	if p[len(dir)] != '/' {
		return "", false
	}
	return p[len(dir)+1:], true
}

// covers reports whether w governs path, and path relative to w.Path.
func (w *Watch) covers(p string) (string, bool) {
	r, ok := rel(w.Path, p)
	if !ok || (!w.Recursive && strings.IndexByte(r, '/') >= 0) {
		return "", false
	}
	return r, true
}

// Match returns the watch that governs path, the longest covering one, and
// whether path is excluded by that watch's globs. A recursive watch covers
// its own path and everything below it, a non-recursive one its path and
// its direct children. w is nil when no watch covers path. path must be
// absolute and clean, as the kernel reports it.
func (p *Policy) Match(path string) (w *Watch, excluded bool) {
	var r string
	switch {
	case p.ix == nil:
		w, r = p.matchSlow(path)
	case p.ix.byPath != nil:
		w, r = p.matchMap(path)
	default:
		for _, c := range p.Watches {
			if rr, ok := c.covers(path); ok {
				w, r = c, rr
				break
			}
		}
	}
	if w == nil {
		return nil, false
	}
	return w, w.excluded(r)
}

// matchMap walks up from path, so its cost depends on depth, not on the
// number of watches.
func (p *Policy) matchMap(path string) (*Watch, string) {
	for dir := path; ; {
		if w := p.ix.byPath[dir]; w != nil {
			if r, ok := w.covers(path); ok {
				return w, r
			}
		}
		i := strings.LastIndexByte(dir, '/')
		switch {
		case i < 0 || dir == "/":
			return nil, ""
		case i == 0:
			dir = "/"
		default:
			dir = dir[:i]
		}
	}
}

// matchSlow serves policies not built by Parse: watches in any order.
func (p *Policy) matchSlow(path string) (*Watch, string) {
	var best *Watch
	var bestRel string
	for _, w := range p.Watches {
		if r, ok := w.covers(path); ok && (best == nil || len(w.Path) > len(best.Path)) {
			best, bestRel = w, r
		}
	}
	return best, bestRel
}

// excluded reports whether the file r, a path relative to the watch root,
// is excluded.
func (w *Watch) excluded(r string) bool {
	globs := w.globs
	if globs == nil && len(w.Exclude) > 0 {
		for _, s := range w.Exclude {
			if g, err := compileGlob(s); err == nil {
				globs = append(globs, g)
			}
		}
	}
	return globs.Excluded(r, false)
}

// Excludes are exclude globs, compiled, in their order: a watch's, or
// vigil scan's --exclude.
type Excludes []glob

// CompileExcludes compiles globs; the error names the first malformed one.
func CompileExcludes(globs []string) (Excludes, error) {
	var e Excludes
	for _, s := range globs {
		g, err := compileGlob(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		e = append(e, g)
	}
	return e, nil
}

// Excluded reports whether r, a slash-separated path relative to the
// globs' root, is excluded; dir says r is a directory. As in gitignore, r
// is excluded when it or a directory above it is; each is decided by the
// last glob that matches it ("!" re-includes), and nothing below an
// excluded directory can be re-included.
func (e Excludes) Excluded(r string, dir bool) bool {
	if len(e) == 0 || r == "" {
		return false
	}
	for i := 0; ; {
		end, above := len(r), false
		if j := strings.IndexByte(r[i:], '/'); j >= 0 {
			end, above = i+j, true
		}
		if decide(e, r[:end], r[i:end], above || dir) {
			return true
		}
		if !above {
			return false
		}
		i = end + 1
	}
}

// decide reports whether the last glob that matches p, whose last
// component is name, excludes it. dir says p is a directory: all but the
// last component of a path are.
func decide(globs Excludes, p, name string, dir bool) bool {
	for i := len(globs) - 1; i >= 0; i-- {
		g := &globs[i]
		if g.dirOnly && !dir {
			continue
		}
		if g.anchored && matchParts(g.parts, p) || !g.anchored && g.matchComponent(name) {
			return !g.negate
		}
	}
	return false
}

// Watched returns the events a fanotify mark on dir must ask for: the
// union of On of every watch that covers the files directly inside dir.
func (p *Policy) Watched(dir string) Events {
	var ev Events
	for _, w := range p.Watches {
		r, ok := rel(w.Path, dir)
		if ok && (r == "" || w.Recursive) {
			ev |= w.On
		}
	}
	return ev
}

// HasProcessExcludes reports whether ExcludedProcess can ever be true, so
// the caller can skip looking the process up in /proc.
func (p *Policy) HasProcessExcludes() bool {
	return len(p.Exclude.UIDs) > 0 || len(p.Exclude.Programs) > 0
}

// ExcludedProcess reports whether accesses by this uid or executable are
// never scanned.
func (p *Policy) ExcludedProcess(uid uint32, exe string) bool {
	if p.ix != nil {
		if _, ok := p.ix.uids[uid]; ok {
			return true
		}
		_, ok := p.ix.programs[exe]
		return ok && exe != ""
	}
	for _, u := range p.Exclude.UIDs {
		if u == uid {
			return true
		}
	}
	for _, e := range p.Exclude.Programs {
		if e == exe && exe != "" {
			return true
		}
	}
	return false
}

// Has reports whether every event in e is in ev.
func (ev Events) Has(e Events) bool { return ev&e == e }

// String lists the events as in the policy: "open,exec".
func (ev Events) String() string {
	if ev == 0 {
		return "none"
	}
	var b strings.Builder
	for _, n := range []struct {
		e    Events
		name string
	}{{EventOpen, "open"}, {EventExec, "exec"}, {EventAccess, "access"}} {
		if ev&n.e != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.name)
		}
	}
	if rest := ev &^ (EventOpen | EventExec | EventAccess); rest != 0 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString("unknown")
	}
	return b.String()
}

// glob is an exclude pattern compiled at load time.
//
// Semantics are gitignore's: a glob without "/" matches a single path
// component at any depth; one with "/" is anchored at the watch root; "**"
// matches zero or more whole components ("dir/**" one or more: what is in
// dir); a trailing "/" matches directories only; a leading "!" re-includes;
// "[!a]" is a negated class; anything under an excluded directory is
// excluded too.
type glob struct {
	negate   bool // "!pattern"
	dirOnly  bool // "pattern/"
	anchored bool
	parts    []string // anchored: one per component
	kind     globKind // unanchored: how parts[0] is matched
	lit      string   // unanchored literal or suffix
}

type globKind uint8

const (
	globPattern globKind = iota // path.Match
	globLiteral                 // exact component name
	globSuffix                  // "*" + literal, e.g. "*.part"
)

func compileGlob(s string) (glob, error) {
	var g glob
	if strings.HasPrefix(s, "!") {
		g.negate, s = true, s[1:]
	}
	t := strings.TrimRight(s, "/")
	g.dirOnly = len(t) < len(s)
	g.anchored = strings.Contains(t, "/")
	for _, c := range strings.Split(t, "/") {
		switch c {
		case "":
			continue
		case ".", "..":
			return glob{}, errors.New(`"." and ".." are not allowed`)
		}
		c = fnmatchClasses(c)
		if _, err := path.Match(c, ""); err != nil {
			return glob{}, errors.New("malformed pattern")
		}
		g.parts = append(g.parts, c)
	}
	if len(g.parts) == 0 {
		return glob{}, errors.New("empty pattern")
	}
	// "**/name" is the same as "name": any depth.
	if g.anchored && len(g.parts) == 2 && g.parts[0] == "**" && g.parts[1] != "**" {
		g.parts, g.anchored = g.parts[1:], false
	}
	if !g.anchored {
		c := g.parts[0]
		switch {
		case !strings.ContainsAny(c, `*?[\`):
			g.kind, g.lit = globLiteral, c
		case c[0] == '*' && !strings.ContainsAny(c[1:], `*?[\`):
			g.kind, g.lit = globSuffix, c[1:]
		}
	}
	return g, nil
}

// fnmatchClasses writes gitignore's character classes as path.Match reads
// them: "[!a]" negated is "[^a]" (path.Match would take '!' as a member),
// and a "]" first in a class, a member in gitignore, is escaped.
func fnmatchClasses(c string) string {
	if !strings.Contains(c, "[") {
		return c
	}
	var b strings.Builder
	for i := 0; i < len(c); i++ {
		switch c[i] {
		case '\\':
			b.WriteByte(c[i])
			if i+1 < len(c) {
				i++
				b.WriteByte(c[i])
			}
		case '[':
			b.WriteByte('[')
			i++
			if i < len(c) && (c[i] == '!' || c[i] == '^') {
				b.WriteByte('^')
				i++
			}
			if i < len(c) && c[i] == ']' {
				b.WriteString(`\]`)
				i++
			}
			for ; i < len(c) && c[i] != ']'; i++ {
				if c[i] == '\\' && i+1 < len(c) {
					b.WriteByte(c[i])
					i++
				}
				b.WriteByte(c[i])
			}
			if i < len(c) {
				b.WriteByte(']')
			}
		default:
			b.WriteByte(c[i])
		}
	}
	return b.String()
}

func (g *glob) matchComponent(c string) bool {
	switch g.kind {
	case globLiteral:
		return c == g.lit
	case globSuffix:
		return strings.HasSuffix(c, g.lit)
	}
	ok, _ := path.Match(g.parts[0], c)
	return ok
}

// matchParts reports whether the pattern components match r, a path
// relative to the watch root, as a whole.
func matchParts(parts []string, r string) bool {
	for len(parts) > 0 {
		if parts[0] == "**" {
			if len(parts) == 1 {
				return r != "" // "dir/**" is what is in dir, not dir
			}
			for rest := r; ; {
				if matchParts(parts[1:], rest) {
					return true
				}
				if rest == "" {
					return false
				}
				if i := strings.IndexByte(rest, '/'); i >= 0 {
					rest = rest[i+1:]
				} else {
					rest = ""
				}
			}
		}
		if r == "" {
			return false
		}
		c, next := r, ""
		if i := strings.IndexByte(r, '/'); i >= 0 {
			c, next = r[:i], r[i+1:]
		}
		if ok, _ := path.Match(parts[0], c); !ok {
			return false
		}
		parts, r = parts[1:], next
	}
	return r == ""
}
