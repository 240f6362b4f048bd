package policy

import (
	"errors"
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

func (w *Watch) excluded(r string) bool {
	globs := w.globs
	if globs == nil && len(w.Exclude) > 0 {
		for _, s := range w.Exclude {
			if g, err := compileGlob(s); err == nil {
				globs = append(globs, g)
			}
		}
	}
	for i := range globs {
		if globs[i].match(r) {
			return true
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
// matches zero or more whole components; anything under a matching
// directory is excluded too.
type glob struct {
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
	t := strings.TrimRight(s, "/") // "cache/" is the same as "cache": directories exclude their contents anyway
	anchored := strings.Contains(t, "/")
	var parts []string
	for _, c := range strings.Split(t, "/") {
		switch c {
		case "":
			continue
		case ".", "..":
			return glob{}, errors.New(`"." and ".." are not allowed`)
		}
		if _, err := path.Match(c, ""); err != nil {
			return glob{}, errors.New("malformed pattern")
		}
		parts = append(parts, c)
	}
	if len(parts) == 0 {
		return glob{}, errors.New("empty pattern")
	}
	// "**/name" is the same as "name": any depth.
	if anchored && len(parts) == 2 && parts[0] == "**" && parts[1] != "**" {
		parts, anchored = parts[1:], false
	}
	g := glob{anchored: anchored, parts: parts}
	if !anchored {
		c := parts[0]
		switch {
		case !strings.ContainsAny(c, `*?[\`):
			g.kind, g.lit = globLiteral, c
		case c[0] == '*' && !strings.ContainsAny(c[1:], `*?[\`):
			g.kind, g.lit = globSuffix, c[1:]
		}
	}
	return g, nil
}

// match reports whether r, a path relative to the watch root ("" for the
// root itself), or one of its ancestors matches g.
func (g *glob) match(r string) bool {
	if g.anchored {
		return matchParts(g.parts, r)
	}
	for r != "" {
		c := r
		if i := strings.IndexByte(r, '/'); i >= 0 {
			c, r = r[:i], r[i+1:]
		} else {
			r = ""
		}
		if g.matchComponent(c) {
			return true
		}
	}
	return false
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

// matchParts reports whether the pattern components match a leading run
// of r's components: what is left of r lies under a matched directory.
func matchParts(parts []string, r string) bool {
	for len(parts) > 0 {
		if parts[0] == "**" {
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
	return true
}
