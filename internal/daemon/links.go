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
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

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
// resolveTimeout has no look, and is not looked at again. A nil links
// only looks.
func (l *links) follow(paths []string) map[string]look {
	looks := answers(paths, lookAt)
	if l == nil {
		return looks
	}
	for range maxFollowLooks {
		pts := pointsOf(looks)
		l.watch(pts)
		again := answers(slices.Collect(maps.Keys(looks)), lookAt)
		if slices.Equal(pointsOf(again), pts) {
			return again
		}
		looks = again
	}
	l.watch(pointsOf(looks))
	l.signal()
	return looks
}

func (l *links) watch(pts []point) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make(map[int32]map[string]bool)
	for _, p := range pts {
		wd, err := unix.InotifyAddWatch(l.fd, p.dir, linkMask)
		if err != nil {
			l.log.Warn("a link on a watch's path is not followed: re-pointing it needs a reload",
				"path", filepath.Join(p.dir, p.name), "error", err)
			continue
		}
		w := int32(wd)
		if names[w] == nil {
			names[w] = make(map[string]bool)
		}
		names[w][p.name] = true
	}
	for w := range l.names {
		if names[w] == nil {
			// The kernel may have removed it with its directory.
			_, _ = unix.InotifyRmWatch(l.fd, uint32(w))
		}
	}
	l.names = names
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

// answers runs fn on each path at once and returns the answers that came
// within resolveTimeout: a path on a filesystem that does not answer has
// none, and its call is left to end on its own.
func answers[T any](paths []string, fn func(string) T) map[string]T {
	type answer struct {
		path string
		v    T
	}
	ch := make(chan answer, len(paths)) // a late answer is dropped in the buffer
	for _, p := range paths {
		go func() { ch <- answer{p, fn(p)} }()
	}
	got := make(map[string]T, len(paths))
	deadline := time.NewTimer(resolveTimeout)
	defer deadline.Stop()
	for range paths {
		select {
		case a := <-ch:
			got[a.path] = a.v
		case <-deadline.C:
			return got
		}
	}
	return got
}

func comparePoints(a, b point) int {
	return cmp.Or(strings.Compare(a.dir, b.dir), strings.Compare(a.name, b.name))
}
