package fandir

import (
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/pathtree"
	"github.com/vigilsec/vigil/internal/watch"
)

func event(op watch.Op, path string) watch.DirEvent {
	return watch.DirEvent{Op: op, Path: path, Source: name}
}

// handle turns decoded events into directory events, keeping the tree
// current, and appends them to out. Called with s.mu held.
//
// The kernel merges an event into one still queued for the same
// directory, name and process: a mask may then hold several changes, in
// an order it no longer tells. Each maps to an event that makes the
// manager look at what stands at the path now, so the order does not
// matter.
func (s *Source) handle(evs []fanotify.DirEvent, out []watch.DirEvent) []watch.DirEvent {
	for _, e := range evs {
		switch {
		case e.Overflow():
			s.dropDisplaced()
			out = append(out, event(watch.Resync, ""))
			continue
		case e.Mask&unix.FAN_ONDIR == 0:
			continue // a file
		case e.Mask&unix.FAN_RENAME != 0:
			out = s.rename(e, out)
			continue
		case e.Mask&unix.FAN_DELETE_SELF != 0:
			out = s.deleteSelf(e, out)
			continue
		case e.Mask&unix.FAN_MOVE_SELF != 0:
			out = s.moveSelf(e, out)
			continue
		}
		p, ok := s.entry(e.HasDir, e.Fsid, e.Handle, e.Name)
		if !ok {
			continue // untracked meanwhile, or not ours
		}
		s.dropDisplaced()
		switch {
		case e.Mask&unix.FAN_MOVED_FROM != 0:
			// Before 5.17: no FAN_RENAME, and nothing pairs this with its
			// FAN_MOVED_TO. A removal makes the manager forget the old
			// path and look at it again; the creation at the new one
			// walks it there.
			if n := s.tree.Lookup(p); n != nil {
				s.tree.Drop(n, nil)
			}
			out = append(out, event(watch.Removed, p))
			if e.Mask&(unix.FAN_CREATE|unix.FAN_MOVED_TO) != 0 {
				out = append(out, event(watch.Created, p))
			}
		case e.Mask&(unix.FAN_CREATE|unix.FAN_MOVED_TO) != 0:
			out = append(out, event(watch.Created, p))
		}
	}
	return out
}

// entry is the path of the entry name in the directory of handle h, when
// that directory is tracked and in the tree.
func (s *Source) entry(has bool, fsid [2]int32, h unix.FileHandle, entry string) (string, bool) {
	if !has || entry == "" || entry == "." {
		return "", false
	}
	n := s.tree.Find(key(fsid, h))
	if n == nil {
		return "", false
	}
	dir, ok := s.tree.Path(n)
	if !ok {
		return "", false
	}
	return pathtree.Join(dir, entry), true
}

// self is the tracked node of the directory a self event is about.
func (s *Source) self(e fanotify.DirEvent) *node {
	if !e.HasDir {
		return nil
	}
	return s.tree.Find(key(e.Fsid, e.Handle))
}

// rename handles FAN_RENAME. The kernel names each end only when the
// group marks its directory: an end it does not name is outside the
// tracked directories.
func (s *Source) rename(e fanotify.DirEvent, out []watch.DirEvent) []watch.DirEvent {
	from, fromOK := s.entry(e.HasOld, e.OldFsid, e.OldHandle, e.OldName)
	to, toOK := s.entry(e.HasDir, e.Fsid, e.Handle, e.Name)
	switch {
	case fromOK && toOK:
		var moved *node
		if s.displaced != nil && s.displacedPath == from {
			moved = s.displaced // RENAME_EXCHANGE: the other half leaves from
			s.displaced = nil
		} else {
			moved = s.tree.Lookup(from)
		}
		s.dropDisplaced()
		if moved != nil {
			s.tree.Detach(moved)
			if old := s.tree.Attach(moved, to); old != nil {
				s.displaced, s.displacedPath = old, to
			}
		}
		return append(out, watch.DirEvent{Op: watch.Moved, Path: to, From: from, Source: name})
	case fromOK:
		s.dropDisplaced()
		if n := s.tree.Lookup(from); n != nil {
			s.tree.Drop(n, nil)
		}
		return append(out, event(watch.Removed, from))
	case toOK:
		s.dropDisplaced()
		return append(out, event(watch.Created, to))
	}
	return out
}

func (s *Source) dropDisplaced() {
	if s.displaced != nil {
		s.tree.Drop(s.displaced, nil)
		s.displaced = nil
	}
}

func (s *Source) deleteSelf(e fanotify.DirEvent, out []watch.DirEvent) []watch.DirEvent {
	n := s.self(e)
	if n == nil {
		return out
	}
	if n == s.displaced {
		s.dropDisplaced() // the empty directory a rename replaced
		return out
	}
	p, ok := s.tree.Path(n)
	s.tree.Drop(n, nil)
	if !ok {
		return out
	}
	s.dropDisplaced()
	// A deleted directory held open dies late: by then another may stand
	// at its path. Do not remove that one: report it made instead, for
	// its parent may not be tracked to say so (a watch's root).
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return append(out, event(watch.Created, p))
	}
	return append(out, event(watch.Removed, p))
}

// moveSelf handles FAN_MOVE_SELF, which follows the FAN_RENAME of the
// same rename. A rename seen whole moved the node already; one from a
// directory not tracked (a watch's root renamed, or one moved in from
// outside) left it at its old path, which then no longer leads to it.
func (s *Source) moveSelf(e fanotify.DirEvent, out []watch.DirEvent) []watch.DirEvent {
	n := s.self(e)
	if n == nil || n == s.displaced {
		return out
	}
	p, ok := s.tree.Path(n)
	if !ok {
		return out
	}
	if h, err := s.handleAt(unix.AT_FDCWD, p, 0); err == nil && key(e.Fsid, h) == n.Key() {
		return out // where the tree has it (tracked there again since)
	}
	s.dropDisplaced()
	s.tree.Drop(n, nil)
	return append(out, event(watch.Removed, p))
}
