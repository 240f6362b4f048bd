package policy

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// Resolved returns the policy with each watch path replaced by resolve's
// answer (filepath.EvalSymlinks in the daemon): the kernel reports real
// paths, so a watch on a symbolic link (/home -> /data/home) must match
// by its target. A path resolve fails on (it does not exist yet) is kept
// as written. Two watches that resolve to one directory keep the first
// in the file; the other is dropped and returned as a Duplicate.
func (p *Policy) Resolved(resolve func(string) (string, error)) (*Policy, []Duplicate) {
	q := *p
	var dups []Duplicate
	q.Watches, dups = resolveWatches(p.Watches, resolve)
	q.index()
	return &q, dups
}

// Duplicate is a watch that Resolved dropped: its path resolves to Real,
// as the path of a watch earlier in the file does.
type Duplicate struct {
	Kept, Dropped *Watch // as written
	Real          string
}

func (d Duplicate) Error() string {
	return fmt.Sprintf("watch %q at %s is %q, already watched by %q at %s: ignored",
		d.Dropped.Path, pos(d.Dropped.Range), d.Real, d.Kept.Path, pos(d.Kept.Range))
}

// diagnostic is d as policy check shows it: a warning on the dropped watch.
func (d Duplicate) diagnostic() *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  "Watch path already watched",
		Detail: fmt.Sprintf("%q is %q once links are followed, as %q at %s is; vigil keeps that watch and ignores this one.",
			d.Dropped.Path, d.Real, d.Kept.Path, pos(d.Kept.Range)),
		Subject: d.Dropped.Range.Ptr(),
	}
}

// resolveWatches is Resolved on a list of watches: it returns copies of
// ws with their paths resolved, in file order, and the watches dropped.
func resolveWatches(ws []*Watch, resolve func(string) (string, error)) ([]*Watch, []Duplicate) {
	out := make([]*Watch, 0, len(ws))
	seen := make(map[string]*Watch, len(ws)) // real path -> watch as written
	var dups []Duplicate
	for _, w := range byPosition(ws) {
		real, err := resolve(w.Path)
		if err != nil {
			real = w.Path
		}
		real = filepath.Clean(real)
		if first, dup := seen[real]; dup {
			dups = append(dups, Duplicate{Kept: first, Dropped: w, Real: real})
			continue
		}
		c := *w
		c.Path = real
		seen[real] = w
		out = append(out, &c)
	}
	return out, dups
}

// byPosition returns the watches in the order they appear in the file.
func byPosition(ws []*Watch) []*Watch {
	out := slices.Clone(ws)
	slices.SortStableFunc(out, func(a, b *Watch) int { return a.Range.Start.Byte - b.Range.Start.Byte })
	return out
}
