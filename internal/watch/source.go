package watch

// Op is what happened to a directory in a watched tree.
type Op uint8

const (
	// Created: a directory was made, or moved in from outside the tracked
	// directories. It and everything below it must be walked and marked.
	Created Op = iota + 1
	// Moved: a tracked directory was renamed to another tracked place.
	// Its marks stay (they are on inodes); paths below it change.
	Moved
	// Removed: a directory was deleted, or moved out of the tracked
	// directories.
	Removed
	// Resync: the source lost events (queue overflow, ring buffer loss).
	// Every tree must be walked again.
	Resync
	// Remounted: the mount table changed where nothing in it shows (a
	// filesystem unmounted and another mounted in its place with the
	// same line: mount IDs and anonymous device numbers are given
	// again), or back and forth between two looks. Where is not known.
	Remounted
)

func (o Op) String() string {
	switch o {
	case Created:
		return "created"
	case Moved:
		return "moved"
	case Removed:
		return "removed"
	case Resync:
		return "resync"
	case Remounted:
		return "remounted"
	}
	return "unknown"
}

// DirEvent is one directory change reported by a Source. Paths are
// absolute and clean. From is set for Moved only; To is the path to mark
// for Created and Moved, the path that went away for Removed. For a
// directory moved out, To is its new path when the source knows it.
type DirEvent struct {
	Op     Op
	Path   string // Created, Removed: the directory; Moved: the new path
	From   string // Moved: the old path
	To     string // Removed by a move: where it went, "" when unknown
	Source string // "ebpf:<hook>", "inotify", "fanotify"
}

// Source reports directory creation, rename and removal under the
// directories it tracks. The Manager tells it which directories to track
// as it marks and unmarks them.
type Source interface {
	// Name names the source in logs and status ("inotify", "ebpf").
	Name() string
	// Events delivers directory events until Close. It is closed by Close.
	Events() <-chan DirEvent
	// Track starts reporting entry changes in each of ds (their Fd is
	// valid only during the call: a source that needs a directory later
	// must resolve it now, e.g. through /proc/self/fd/N; ds itself is
	// the caller's again once Track returns). The error joins those of
	// the directories it could not track.
	Track(ds ...Dir) error
	// Untrack stops reporting changes in dir; unknown dirs are ignored.
	Untrack(dir string)
	// Close stops the source and closes Events.
	Close() error
}
