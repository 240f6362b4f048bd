package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/answers"
	"github.com/vigilsec/vigil/internal/inotify"
)

// linkMask is what a directory holding a name on a watch's path is
// watched for: names made, moved and removed there, and its own end.
const linkMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

const (
	// maxLinks is the kernel's bound on the links one path may go
	// through (ELOOP past it).
	maxLinks = 40
	// maxFollowLooks bounds the looks follow takes at names that keep
	// changing under it; it then reports a change, to look again later.
	maxFollowLooks = 3
)

// point is a name in a directory that a watch's path goes through and
// that may lead it elsewhere: a symbolic link, or the first name on the
// path that does not exist yet.
type point struct{ dir, name string }

// links follows the names a watch's path resolves through. A watch is
// placed on the target its path has when the policy is loaded; a deploy
// that re-points a link on the path (ln -sfn releases/v2 /srv/current)
// moves that target, which no directory source reports: a link is not a
// directory, and nothing was made or moved in the watched tree. links
// watches, with an inotify descriptor of its own, the directories that
// hold such names, and says on Changed when one of the names was made,
// moved or removed: the daemon then resolves the watches again. A path
// without a link costs nothing.
type links struct {
	log     hclog.Logger
	fd      int
	f       *os.File // fd, in Go's netpoller: Close ends a waiting read
	mu      sync.Mutex
	names   map[int32]map[string]bool // by watch descriptor: the names that matter there
	changed chan struct{}
	done    chan struct{}
}

// newLinks starts following links; it follows none until follow.
func newLinks(log hclog.Logger) (*links, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	l := &links{
		log:     log.Named("links"),
		fd:      fd,
		f:       os.NewFile(uintptr(fd), "inotify"),
		names:   make(map[int32]map[string]bool),
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go l.run()
	return l, nil
}

// Changed delivers a value after a name that a followed path goes
// through changed: several changes may come as one.
func (l *links) Changed() <-chan struct{} {
	if l == nil {
		return nil
	}
	return l.changed
}

// follow looks at paths (see lookAt) and watches the points they go
// through in place of those it watched before, and returns its looks. It
// looks again once the points are watched, until they stand still: a
// change made meanwhile is then either in the looks it returns or
// reported on Changed. A path whose filesystem does not answer within
// resolveTimeout has no look; Changed reports its answer when it comes,
// for the daemon to resolve the watches again. A nil links only looks.
func (l *links) follow(paths []string) map[string]look {
	if l == nil {
		return answers.Within(paths, resolveTimeout, lookAt, nil)
	}
	late := func(string, look) { l.signal() }
	looks := answers.Within(paths, resolveTimeout, lookAt, late)
	for range maxFollowLooks {
		pts := pointsOf(looks)
		l.watch(pts)
		again := answers.Within(slices.Collect(maps.Keys(looks)), resolveTimeout, lookAt, late)
		if slices.Equal(pointsOf(again), pts) {
			return again
		}
		looks = again
	}
	l.watch(pointsOf(looks))
	l.signal()
	return looks
}

// added is what adding an inotify watch gave.
type added struct {
	wd  int32
	err error
}

// watch watches the directories of pts for their names, in place of what
// it watched before. A directory on a filesystem that does not answer
// within resolveTimeout is watched once it does, and Changed then says
// so: a name there may have changed meanwhile.
func (l *links) watch(pts []point) {
	dirs := make([]string, 0, len(pts))
	for _, p := range pts {
		dirs = append(dirs, p.dir)
	}
	wds := answers.Within(dirs, resolveTimeout, l.add, l.addedLate)
	names := make(map[int32]map[string]bool)
	for _, p := range pts {
		a, ok := wds[p.dir]
		switch {
		case !ok:
			l.log.Warn("a link on a watch's path is followed once its filesystem answers",
				"path", filepath.Join(p.dir, p.name), "waited", resolveTimeout)
			continue
		case a.err != nil:
			l.log.Warn("a link on a watch's path is not followed: re-pointing it needs a reload",
				"path", filepath.Join(p.dir, p.name), "error", a.err)
			continue
		}
		if names[a.wd] == nil {
			names[a.wd] = make(map[string]bool)
		}
		names[a.wd][p.name] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.names {
		if names[w] == nil {
			// The kernel may have removed it with its directory.
			_, _ = unix.InotifyRmWatch(l.fd, uint32(w))
		}
	}
	l.names = names
}

// add watches dir. It takes the descriptor as a number, not through l.f:
// a call that waits on a filesystem must not hold close back.
func (l *links) add(dir string) added {
	wd, err := unix.InotifyAddWatch(l.fd, dir, linkMask)
	if err != nil {
		return added{err: fmt.Errorf("inotify watch %s: %w", dir, err)}
	}
	return added{wd: int32(wd)}
}

// addedLate takes a watch added after watch stopped waiting for it: it is
// kept until the next watch, which Changed asks for, finds it needed or
// removes it.
func (l *links) addedLate(dir string, a added) {
	if a.err != nil {
		l.log.Warn("a link on a watch's path is not followed: re-pointing it needs a reload",
			"dir", dir, "error", a.err)
		return
	}
	l.mu.Lock()
	if l.names[a.wd] == nil {
		l.names[a.wd] = make(map[string]bool)
	}
	l.mu.Unlock()
	l.signal()
}

func (l *links) signal() {
	select {
	case l.changed <- struct{}{}:
	default: // one is waiting to be taken already
	}
}

func (l *links) close() {
	if l == nil {
		return
	}
	if err := l.f.Close(); err != nil {
		l.log.Warn("close", "error", err)
	}
	<-l.done
}

func (l *links) run() {
	defer close(l.done)
	buf := make([]byte, 16<<10)
	for {
		n, err := l.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				l.log.Error("read: re-pointed links on watches' paths are no longer followed", "error", err)
			}
			return
		}
		evs, err := inotify.Parse(buf[:n])
		if err != nil {
			l.log.Error("read", "error", err)
		}
		if l.matters(evs) {
			l.signal()
		}
	}
}

// matters reports whether one of evs may have moved a followed path.
func (l *links) matters(evs []inotify.Event) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range evs {
		if e.Mask&(unix.IN_Q_OVERFLOW|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0 {
			return true
		}
		if l.names[e.Wd][e.Name] {
			return true
		}
	}
	return false
}

// look is what resolving one path found: its real path (err when it does
// not resolve) and the points it goes through.
type look struct {
	real   string
	err    error
	points []point
}

// pointsOf returns the points of looks, sorted, each once.
func pointsOf(looks map[string]look) []point {
	var all []point
	for _, l := range looks {
		all = append(all, l.points...)
	}
	slices.SortFunc(all, comparePoints)
	return slices.Compact(all)
}

// lookAt resolves the absolute path name by name, as the kernel does,
// and notes the links it goes through and the first name that does not
// exist, if one does not: the real path is filepath.EvalSymlinks's.
func lookAt(path string) look {
	var l look
	todo := strings.Split(path, "/")
	dir := "/"
	for seen := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			dir = filepath.Dir(dir)
			continue
		}
		next := filepath.Join(dir, name)
		fi, err := os.Lstat(next)
		if err != nil {
			l.points = append(l.points, point{dir, name})
			l.err = err
			return l
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			dir = next
			continue
		}
		l.points = append(l.points, point{dir, name})
		if seen++; seen > maxLinks {
			l.err = &os.PathError{Op: "resolve", Path: path, Err: unix.ELOOP}
			return l
		}
		target, err := os.Readlink(next)
		if err != nil {
			l.err = err
			return l
		}
		if filepath.IsAbs(target) {
			dir = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	l.real = dir
	return l
}

func comparePoints(a, b point) int {
	return cmp.Or(strings.Compare(a.dir, b.dir), strings.Compare(a.name, b.name))
}
