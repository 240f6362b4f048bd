package inotify

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/pathtree"
	"github.com/vigilsec/vigil/internal/watch"
)

const (
	name = "inotify"
	// IN_MOVE_SELF tells a move out apart at once (no grace period) and
	// reports a tracked directory whose parent is not tracked being moved.
	watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	// readBufSize holds thousands of events: a burst is read in few calls.
	readBufSize = 64 << 10
	eventBuffer = 4096
)

// The tree keys tracked directories by watch descriptor: 0 is none, as
// inotify numbers watches from 1. A pinned node is a directory whose watch
// could not be added (ENOSPC).
type (
	tree = pathtree.Tree[int32]
	node = pathtree.Node[int32]
)

// Watcher is an inotify instance reporting directory events for the
// directories it tracks. It implements watch.Source.
type Watcher struct {
	f      *os.File
	rc     syscall.RawConn
	log    hclog.Logger
	events chan watch.DirEvent
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once

	procFd bool // /proc/self/fd resolves descriptors

	mu sync.Mutex
	state
	tree   *tree
	limit  limitState
	target []byte // addWatch's path, NUL-terminated

	// Track's batch and its errors, and the function that tracks them.
	batch      []watch.Dir
	batchErrs  []error
	trackBatch func(ifd uintptr)
}

var _ watch.Source = (*Watcher)(nil)

// New creates an inotify instance and starts reading it. log may be nil.
func New(log hclog.Logger) (*Watcher, error) {
	w, err := newWatcher(log)
	if err != nil {
		return nil, err
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// newWatcher creates the instance without the reader, for tests that feed
// handle themselves.
func newWatcher(log hclog.Logger) (*Watcher, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	_, perr := os.Stat("/proc/self/fd")
	w := &Watcher{
		f:      f,
		rc:     rc,
		log:    log.Named(name),
		events: make(chan watch.DirEvent, eventBuffer),
		done:   make(chan struct{}),
		procFd: perr == nil,
		tree:   pathtree.New[int32](),
	}
	w.trackBatch = w.trackBatchLocked
	return w, nil
}

// Name is "inotify".
func (w *Watcher) Name() string { return name }

// Events delivers directory events until Close, which closes it.
func (w *Watcher) Events() <-chan watch.DirEvent { return w.events }

// Track adds a watch on d. The watch is added through
// /proc/self/fd/N (and d.Name), so it lands on the directory the caller
// opened even if its path was renamed since. Tracking a directory again under a new path
// (the same inode, so the same watch) moves it and everything tracked below
// it to the new path. When the inotify watch limit is reached the error
// wraps ENOSPC; a warning with the sysctl to raise is logged once.
func (w *Watcher) Track(ds ...watch.Dir) error {
	// The lock spans the calls so the reader never sees an event of a
	// watch it cannot place yet.
	w.mu.Lock()
	defer w.mu.Unlock()
	// At start-up the cross-check tracks every directory of the tree, one
	// by one, and what a call allocates is garbage the daemon's peak
	// memory is made of: the batch goes to trackBatch, a function made
	// once, through fields w.mu guards, not to a closure made per call.
	w.batch, w.batchErrs = ds, w.batchErrs[:0]
	cerr := w.rc.Control(w.trackBatch)
	err := errors.Join(w.batchErrs...) // a copy: the buffer is cleared for the next batch
	clear(w.batchErrs)
	w.batch, w.batchErrs = nil, w.batchErrs[:0]
	if cerr != nil {
		return fmt.Errorf("inotify_add_watch: %w", cerr)
	}
	return err
}

// trackBatchLocked tracks w.batch through the instance ifd, appending its
// errors to w.batchErrs; w.trackBatch is it, made once.
func (w *Watcher) trackBatchLocked(ifd uintptr) {
	for _, d := range w.batch {
		if err := w.trackLocked(ifd, d); err != nil {
			w.batchErrs = append(w.batchErrs, err)
		}
	}
}

// trackLocked adds the watch of d through the instance ifd.
func (w *Watcher) trackLocked(ifd uintptr, d watch.Dir) error {
	dir := d.Path
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("track %s: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	wd, err := w.addWatch(ifd, d, dir)
	if errors.Is(err, unix.ENOSPC) {
		n := w.tree.Ensure(dir)
		if wd := n.Key(); wd != 0 {
			// The kernel reuses the watch of an inode it already watches:
			// this one is another directory's, stale.
			w.rmWatch(wd)
			w.tree.ForgetKey(n)
		}
		w.tree.Pin(n)
		w.noteLimit()
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}

	wd32 := int32(wd)
	if n := w.tree.Find(wd32); n != nil {
		if p, ok := w.tree.Path(n); ok && p == dir {
			return nil
		}
		// The same directory under a new path: it was renamed.
		if n == w.displaced {
			w.displaced = nil
		}
		w.tree.Detach(n)
		if old := w.tree.Attach(n, dir); old != nil {
			w.tree.Merge(old, n, w.rmWatch)
		}
		return nil
	}
	n := w.tree.Ensure(dir)
	if n.Key() != 0 {
		// Another directory stands at dir now; the old one is gone or
		// elsewhere, and its late events must not speak for dir.
		w.rmWatch(n.Key())
	}
	w.tree.SetKey(n, wd32)
	return nil
}

// Untrack removes the watches of dir and of every tracked directory below
// it. Unknown directories are ignored.
func (w *Watcher) Untrack(dir string) {
	if !filepath.IsAbs(dir) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tree.DropPath(filepath.Clean(dir), w.rmWatch)
}

// addWatch is inotify_add_watch(2) on d, the directory at dir, through
// /proc/self/fd/N (and d.Name), so that the watch lands on the directory
// the caller opened even if its path was renamed since; by path where
// there is no /proc, racy but better than nothing. The path is built in
// the watcher's buffer (w.mu held), which spares the two allocations per
// call of unix.InotifyAddWatch and a string.
func (w *Watcher) addWatch(ifd uintptr, d watch.Dir, dir string) (int, error) {
	b, flags := w.target[:0], uint32(0)
	switch {
	case !w.procFd:
		b, flags = append(b, dir...), unix.IN_DONT_FOLLOW
	case d.Name != "":
		b = strconv.AppendInt(append(b, "/proc/self/fd/"...), int64(d.Fd), 10)
		b, flags = append(append(b, '/'), d.Name...), unix.IN_DONT_FOLLOW
	default:
		b = strconv.AppendInt(append(b, "/proc/self/fd/"...), int64(d.Fd), 10)
	}
	b = append(b, 0)
	w.target = b
	wd, _, errno := unix.Syscall(unix.SYS_INOTIFY_ADD_WATCH, ifd, uintptr(unsafe.Pointer(&b[0])), uintptr(watchMask|flags))
	if errno != 0 {
		return -1, errno
	}
	return int(wd), nil
}

// rmWatch removes a watch from the kernel. EINVAL means it is already
// gone: the directory was deleted or its filesystem unmounted.
func (w *Watcher) rmWatch(wd int32) {
	var err error
	cerr := w.rc.Control(func(fd uintptr) {
		_, err = unix.InotifyRmWatch(int(fd), uint32(wd))
	})
	if cerr == nil && err != nil && !errors.Is(err, unix.EINVAL) {
		w.log.Debug("inotify_rm_watch", "error", err)
	}
}

// Tracked is the number of directories with a watch.
func (w *Watcher) Tracked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tree.Len()
}

// Untracked is the number of directories that could not be tracked
// because the inotify watch limit was reached.
func (w *Watcher) Untracked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tree.Pinned()
}

// Close stops the reader, closes the instance (removing every watch) and
// closes Events.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		err = w.f.Close()
		w.wg.Wait()
		w.mu.Lock()
		w.flushLimitWarning()
		w.mu.Unlock()
		close(w.events)
	})
	return err
}

// run reads events until Close.
func (w *Watcher) run() {
	defer w.wg.Done()
	buf := make([]byte, readBufSize)
	var raw []rawEvent
	var out []watch.DirEvent
	for {
		n, err := w.read(buf, true)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// A move waits for its pair: take what is queued, then settle.
			if err = w.f.SetReadDeadline(time.Time{}); err == nil {
				n, err = w.read(buf, false)
			}
		}
		if err != nil {
			select {
			case <-w.done:
			default:
				w.log.Error("read inotify events: directory events stop", "error", err)
			}
			return
		}
		raw, err = parse(buf[:n], raw[:0])
		if err != nil {
			w.log.Error("read inotify events", "error", err)
		}
		now := time.Now()
		w.mu.Lock()
		out = w.handle(raw, now, out[:0])
		out = w.expire(now, out)
		deadline := w.deadline()
		w.mu.Unlock()
		// Zero clears it. An error means closed: the next read says so.
		_ = w.f.SetReadDeadline(deadline)
		for _, e := range out {
			select {
			case w.events <- e:
			case <-w.done:
				return
			}
		}
	}
}

// read reads one buffer of events; with wait it blocks until some come
// (or the read deadline passes), without it it returns 0 when none are
// queued.
func (w *Watcher) read(buf []byte, wait bool) (int, error) {
	var n int
	var err error
	cerr := w.rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), buf)
			if err != unix.EINTR {
				break
			}
		}
		return !wait || err != unix.EAGAIN
	})
	switch {
	case cerr != nil:
		return 0, fmt.Errorf("read inotify: %w", cerr)
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read inotify: %w", err)
	}
	return n, nil
}
