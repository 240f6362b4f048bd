package inotify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/pathtree"
	"github.com/vigilsec/vigil/internal/watch"
)

// moveGrace is how long an IN_MOVED_FROM waits for its IN_MOVED_TO before
// it counts as a move out: the kernel queues the pair back to back, but a
// read can fall between them.
const moveGrace = 10 * time.Millisecond

// rawEvent is one struct inotify_event.
type rawEvent struct {
	wd     int32
	mask   uint32
	cookie uint32
	name   string // bytes as the kernel gave them: any byte but '/' and NUL
}

// parse decodes a buffer of struct inotify_event records.
func parse(b []byte, dst []rawEvent) ([]rawEvent, error) {
	for len(b) > 0 {
		if len(b) < unix.SizeofInotifyEvent {
			return dst, errors.New("parse inotify events: short record")
		}
		// struct inotify_event: wd s32, mask u32, cookie u32, len u32, name[len].
		nameLen := binary.NativeEndian.Uint32(b[12:16])
		end := unix.SizeofInotifyEvent + uint64(nameLen)
		if end > uint64(len(b)) {
			return dst, fmt.Errorf("parse inotify events: name length %d past the buffer", nameLen)
		}
		name := b[unix.SizeofInotifyEvent:end]
		// The name is NUL-padded to an alignment boundary.
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		dst = append(dst, rawEvent{
			wd:     int32(binary.NativeEndian.Uint32(b[0:4])),
			mask:   binary.NativeEndian.Uint32(b[4:8]),
			cookie: binary.NativeEndian.Uint32(b[8:12]),
			name:   string(name),
		})
		b = b[end:]
	}
	return dst, nil
}

// Event is one struct inotify_event, for a descriptor of the caller's
// own (the daemon's watch on the links of its watches' paths).
type Event struct {
	Wd   int32
	Mask uint32
	Name string
}

// Parse decodes a buffer read from an inotify descriptor.
func Parse(b []byte) ([]Event, error) {
	raw, err := parse(b, nil)
	evs := make([]Event, len(raw))
	for i, r := range raw {
		evs[i] = Event{Wd: r.wd, Mask: r.mask, Name: r.name}
	}
	return evs, err
}

// move is an IN_MOVED_FROM waiting for its IN_MOVED_TO.
type move struct {
	cookie   uint32
	from     string
	node     *node // the directory's node, nil when it was not tracked
	deadline time.Time
}

// state is what pairs events across reads. It is guarded by Watcher.mu.
type state struct {
	pending *move
	// displaced is the node a paired move found at its destination: an
	// empty directory it replaced (DELETE_SELF follows), or with
	// RENAME_EXCHANGE the other half, whose own move comes next.
	displaced     *node
	displacedPath string
	displacedEnd  time.Time
	// lastMoved is the node of the last paired move: its IN_MOVE_SELF is
	// already accounted for.
	lastMoved *node
	// lastTo is the path of a Created from an unpaired IN_MOVED_TO when it
	// was the last event, lastToIdx its index in this read's events (-1:
	// reported with an earlier read). An IN_MOVE_SELF right after it tells
	// which tracked directory arrived there.
	lastTo    string
	lastToIdx int
}

func event(op watch.Op, path string) watch.DirEvent {
	return watch.DirEvent{Op: op, Path: path, Source: name}
}

// handle turns decoded events into directory events, keeping the tree
// current, and appends them to out. Events keep the kernel's order: a
// pending move out is reported before any later event, so that a Removed
// never follows a Created of the same path.
func (w *Watcher) handle(evs []rawEvent, now time.Time, out []watch.DirEvent) []watch.DirEvent {
	w.lastToIdx = -1
	for _, e := range evs {
		prevTo, prevToIdx := w.lastTo, w.lastToIdx
		w.lastTo, w.lastToIdx = "", -1
		switch {
		case e.mask&unix.IN_Q_OVERFLOW != 0:
			out = w.settle(out)
			out = append(out, event(watch.Resync, ""))
			continue
		case e.mask&unix.IN_UNMOUNT != 0:
			// Every watch on the filesystem reports it. Each directory is
			// gone from its path, and what stands there now, the
			// directory under the mount point for the top one, is new to
			// the manager: reported removed, it is forgotten and walked
			// again where it stands, and nothing else is.
			out = w.settle(out)
			if n := w.tree.Find(e.wd); n != nil {
				if p, ok := w.tree.Path(n); ok {
					out = append(out, event(watch.Removed, p))
				}
			}
			continue
		case e.mask&unix.IN_IGNORED != 0:
			if n := w.tree.Find(e.wd); n != nil {
				w.tree.ForgetKey(n)
				w.tree.Prune(n)
			}
			continue
		}
		n := w.tree.Find(e.wd)
		if n == nil {
			continue // untracked meanwhile
		}
		switch {
		case e.mask&unix.IN_DELETE_SELF != 0:
			out = w.deleteSelf(n, out)
			continue
		case e.mask&unix.IN_MOVE_SELF != 0:
			out = w.moveSelf(n, prevTo, prevToIdx, out)
			continue
		case e.mask&unix.IN_ISDIR == 0:
			continue // a file
		}
		dir, ok := w.tree.Path(n)
		if !ok {
			continue // a directory that left the tree
		}
		p := pathtree.Join(dir, e.name)
		switch {
		case e.mask&unix.IN_CREATE != 0:
			out = w.settle(out)
			out = append(out, event(watch.Created, p))
		case e.mask&unix.IN_MOVED_FROM != 0:
			var moved *node
			if w.displaced != nil && w.displacedPath == p {
				moved = w.displaced // RENAME_EXCHANGE: the other half leaves p
				w.displaced = nil
			} else {
				moved = n.Kid(e.name)
			}
			out = w.settle(out)
			w.pending = &move{cookie: e.cookie, from: p, node: moved, deadline: now.Add(moveGrace)}
		case e.mask&unix.IN_MOVED_TO != 0:
			m := w.pending
			if m == nil || m.cookie != e.cookie {
				out = w.settle(out)
				out = append(out, event(watch.Created, p))
				w.lastTo, w.lastToIdx = p, len(out)-1
				continue
			}
			w.pending = nil
			w.dropDisplaced()
			w.lastMoved = m.node
			if m.node != nil {
				w.tree.Detach(m.node)
				if old := w.tree.Attach(m.node, p); old != nil {
					w.displaced, w.displacedPath, w.displacedEnd = old, p, now.Add(moveGrace)
				}
			}
			out = append(out, watch.DirEvent{Op: watch.Moved, Path: p, From: m.from, Source: name})
		}
	}
	return out
}

// settle reports a pending move as a move out and drops a displaced node:
// the event about to be reported is not part of their rename.
func (w *Watcher) settle(out []watch.DirEvent) []watch.DirEvent {
	w.dropDisplaced()
	return w.flushMove(out)
}

// flushMove reports the pending move, if any, as a move out.
func (w *Watcher) flushMove(out []watch.DirEvent) []watch.DirEvent {
	m := w.pending
	if m == nil {
		return out
	}
	w.pending = nil
	if m.node != nil {
		// Its watches stay on the inodes wherever they went: remove them,
		// or events out there would be reported under the old paths.
		w.tree.Drop(m.node, w.rmWatch)
	}
	return append(out, event(watch.Removed, m.from))
}

func (w *Watcher) dropDisplaced() {
	if w.displaced != nil {
		w.tree.Drop(w.displaced, w.rmWatch)
		w.displaced = nil
	}
}

func (w *Watcher) deleteSelf(n *node, out []watch.DirEvent) []watch.DirEvent {
	w.tree.ForgetKey(n) // the kernel removed the watch (IN_IGNORED follows)
	switch {
	case n == w.displaced:
		w.dropDisplaced() // the empty directory a move replaced
		return out
	case w.pending != nil && w.pending.node == n:
		return w.flushMove(out) // moved out, then deleted
	}
	p, ok := w.tree.Path(n)
	w.tree.Drop(n, w.rmWatch)
	if !ok {
		return out
	}
	out = w.settle(out)
	// A deleted directory held open dies late: by then another may stand
	// at its path. Do not remove that one: report it made instead, for
	// its parent may not be tracked to say so (the ancestor of a missing
	// root, or a watch's root).
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return append(out, event(watch.Created, p))
	}
	return append(out, event(watch.Removed, p))
}

// moveSelf handles IN_MOVE_SELF, which follows the parent's IN_MOVED_FROM
// and IN_MOVED_TO of the same rename. prevTo is the path of the Created
// reported for the event just before, if it was an unpaired IN_MOVED_TO,
// and prevToIdx its index in out (-1 when reported with an earlier read).
func (w *Watcher) moveSelf(n *node, prevTo string, prevToIdx int, out []watch.DirEvent) []watch.DirEvent {
	if w.pending != nil && w.pending.node == n {
		// No IN_MOVED_TO came in between: n left the tracked directories.
		return w.flushMove(out)
	}
	if n == w.lastMoved {
		w.lastMoved = nil
		return out
	}
	p, ok := w.tree.Path(n)
	if !ok {
		return out
	}
	// n's parent is not tracked (a root, or a directory whose watch could
	// not be added): no IN_MOVED_FROM came.
	if prevTo != "" {
		// The IN_MOVED_TO just before, with no IN_MOVED_FROM, was n arriving.
		if p == prevTo {
			return out // tracked there already
		}
		mv := watch.DirEvent{Op: watch.Moved, Path: prevTo, From: p, Source: name}
		if prevToIdx >= 0 {
			out[prevToIdx] = mv
		} else {
			out = append(out, mv) // after the Created: walked, then renamed
		}
		w.tree.Detach(n)
		if old := w.tree.Attach(n, prevTo); old != nil {
			w.tree.Merge(old, n, w.rmWatch)
		}
		return out
	}
	out = w.settle(out)
	w.tree.Drop(n, w.rmWatch)
	return append(out, event(watch.Removed, p))
}

// expire settles what waited past its grace period.
func (w *Watcher) expire(now time.Time, out []watch.DirEvent) []watch.DirEvent {
	if w.displaced != nil && !now.Before(w.displacedEnd) {
		w.dropDisplaced()
	}
	if w.pending != nil && !now.Before(w.pending.deadline) {
		out = w.flushMove(out)
	}
	return out
}

// deadline is when expire has work to do; zero when nothing waits.
func (w *Watcher) deadline() time.Time {
	var d time.Time
	if w.pending != nil {
		d = w.pending.deadline
	}
	if w.displaced != nil && (d.IsZero() || w.displacedEnd.Before(d)) {
		d = w.displacedEnd
	}
	return d
}
