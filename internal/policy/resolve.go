package policy

import (
	"fmt"
	"path/filepath"
	"slices"
)

// Resolved returns the policy with each watch path replaced by resolve's
// answer (filepath.EvalSymlinks in the daemon): the kernel reports real
// paths, so a watch on a symbolic link (/home -> /data/home) must match
// by its target. A path resolve fails on (it does not exist yet) is kept
// as written. Two watches that resolve to one directory keep the first
// in the file; the other is reported and dropped.
func (p *Policy) Resolved(resolve func(string) (string, error)) (*Policy, []error) {
	q := *p
	q.Watches = make([]*Watch, 0, len(p.Watches))
	seen := make(map[string]*Watch, len(p.Watches)) // real path -> watch as written
	var errs []error
	for _, w := range byPosition(p.Watches) {
		real, err := resolve(w.Path)
		if err != nil {
			real = w.Path
		}
		real = filepath.Clean(real)
		if first, dup := seen[real]; dup {
			errs = append(errs, fmt.Errorf("watch %q at %s is %q, already watched by %q at %s: ignored",
				w.Path, pos(w.Range), real, first.Path, pos(first.Range)))
			continue
		}
		c := *w
		c.Path = real
		seen[real] = w
		q.Watches = append(q.Watches, &c)
	}
	q.index()
	return &q, errs
}

// byPosition returns the watches in the order they appear in the file.
func byPosition(ws []*Watch) []*Watch {
	out := slices.Clone(ws)
	slices.SortStableFunc(out, func(a, b *Watch) int { return a.Range.Start.Byte - b.Range.Start.Byte })
	return out
}
