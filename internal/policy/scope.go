package policy

import "strings"

// Outside reports whether dir is outside every watch: no watch, of either
// mode, recursive or not, has dir as its path or below it. Only such a
// directory may carry an ignore mark for out-of-scope opens: a tree-mode
// watch's mark on the same inode would share its ignore mask. dir must be
// absolute and clean.
func (p *Policy) Outside(dir string) bool {
	if p.ix != nil && p.ix.byPath != nil {
		for d := dir; ; {
			if p.ix.byPath[d] != nil {
				return false
			}
			i := strings.LastIndexByte(d, '/')
			switch {
			case i < 0 || d == "/":
				return true
			case i == 0:
				d = "/"
			default:
				d = d[:i]
			}
		}
	}
	for _, w := range p.Watches {
		if _, ok := rel(w.Path, dir); ok {
			return false
		}
	}
	return true
}

// Reaches reports whether dir is in a watch or has a watch below it: a
// directory moved to dir may bring ignore-marked directories into a watch.
func (p *Policy) Reaches(dir string) bool {
	if !p.Outside(dir) {
		return true
	}
	for _, w := range p.Watches {
		if _, ok := rel(dir, w.Path); ok {
			return true
		}
	}
	return false
}
