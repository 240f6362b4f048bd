package fandir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/pathtree"
	"github.com/vigilsec/vigil/internal/watch"
)

const (
	name = "fanotify"
	// A mark on a directory reports the entries made, renamed and removed
	// in it, and FAN_ONDIR those that are directories (files come too: the
	// kernel has no filter for directories only). FAN_RENAME (5.17) gives
	// both ends of a rename in one event, where FAN_MOVED_FROM and
	// FAN_MOVED_TO have no cookie to pair them; the self events tell a
	// tracked directory deleted, or moved from a directory not tracked.
	selfMask   = unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF | unix.FAN_ONDIR
	renameMask = unix.FAN_CREATE | unix.FAN_RENAME | selfMask
	movedMask  = unix.FAN_CREATE | unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | selfMask
	markFlags  = unix.FAN_MARK_ADD | unix.FAN_MARK_ONLYDIR | unix.FAN_MARK_DONT_FOLLOW
	// The queue is not bounded: every file made in a tracked directory
	// is an event too, and an overflow costs a walk of every watch.
	initFlags   = unix.FAN_CLASS_NOTIF | unix.FAN_REPORT_DFID_NAME | unix.FAN_UNLIMITED_QUEUE | unix.FAN_UNLIMITED_MARKS
	eventBuffer = 4096
)

// The tree keys tracked directories by the key of their file handle: ""
// is none.
type (
	tree = pathtree.Tree[string]
	node = pathtree.Node[string]
)

// Source is a fanotify group marking each tracked directory for its
// entries' changes, reporting directory events for them. It implements
// watch.Source. Events name the directory by its file handle: Source maps
// the handle of each tracked directory to its path.
type Source struct {
	g      *fanotify.Group
	log    hclog.Logger
	events chan watch.DirEvent
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	noFID  atomic.Bool // the kernel refused AT_HANDLE_FID

	mu    sync.Mutex
	tree  *tree
	fsids map[mount][2]int32
	// mounts tells, before fsids is used, whether a filesystem was
	// mounted or unmounted since: one mounted where another was may have
	// its device number and mount ID, and another fsid. nil when it
	// could not be opened: fsids is then not kept.
	mounts  *mountinfo.Changes
	mask    uint64 // renameMask, or movedMask before 5.17
	limited bool   // the mark limit warning was logged
	// unsupported are the filesystems (st_dev) without file handles or
	// an fsid, said once each.
	unsupported map[uint64]bool
	// displaced is the node a rename found at its destination: an empty
	// directory it replaced (its FAN_DELETE_SELF follows), or with
	// RENAME_EXCHANGE the other half, whose own rename comes next.
	displaced     *node
	displacedPath string
}

var _ watch.Source = (*Source)(nil)

// New creates the group and starts reading it. A kernel without
// FAN_REPORT_DFID_NAME (before 5.9) gives an error wrapping
// features.ErrNotSupported. log may be nil.
func New(log hclog.Logger) (*Source, error) {
	s, err := newSource(log)
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// newSource creates the group without the reader, for tests that feed
// handle themselves.
func newSource(log hclog.Logger) (*Source, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := features.FanotifyDirEvents(); err != nil {
		return nil, err
	}
	g, err := fanotify.Init(initFlags, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.OpenChanges("/proc/self/mountinfo")
	if err != nil {
		log.Debug("fsids are read for every directory tracked", "error", err)
	}
	return &Source{
		mounts: mounts,
		g:      g,
		log:    log.Named(name),
		events: make(chan watch.DirEvent, eventBuffer),
		done:   make(chan struct{}),
		tree:   pathtree.New[string](),
		fsids:  make(map[mount][2]int32),
		mask:   renameMask,

		unsupported: make(map[uint64]bool),
	}, nil
}

// Name is "fanotify".
func (s *Source) Name() string { return name }

// Events delivers directory events until Close, which closes it.
func (s *Source) Events() <-chan watch.DirEvent { return s.events }

// Track marks each of ds and maps its file handle to its path. A
// directory tracked again under a new path (the same handle) moves, with
// everything tracked below it, to the new path. A filesystem without file
// handles or an fsid (some FUSE and pseudo filesystems) cannot be
// tracked: the error says so, and the other sources cover it.
func (s *Source) Track(ds ...watch.Dir) error {
	// The lock spans the marks so the reader never sees an event of a
	// directory it cannot map yet.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mountsChanged() {
		clear(s.fsids)
	}
	var errs []error
	for _, d := range ds {
		if err := s.trackLocked(d); err != nil {
			s.noteUnsupported(d, err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// noteUnsupported logs, once per filesystem, that its directories cannot
// be tracked: it has no file handles, or no fsid to tell them by. Called
// with s.mu held.
func (s *Source) noteUnsupported(d watch.Dir, err error) {
	// EOPNOTSUPP: no file handles; ENODEV: no fsid, or (EXDEV) one that
	// differs within the filesystem; ENOSYS: a FUSE server without statfs.
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EXDEV) &&
		!errors.Is(err, unix.ENOSYS) {
		return
	}
	if s.unsupported[d.Dev] {
		return
	}
	s.unsupported[d.Dev] = true
	s.log.Warn("fanotify directory events cannot follow directories on this filesystem: inotify alone does there",
		"dir", d.Path, "error", err)
}

func (s *Source) trackLocked(d watch.Dir) error {
	if !filepath.IsAbs(d.Path) {
		return fmt.Errorf("track %s: not an absolute path", d.Path)
	}
	dir := filepath.Clean(d.Path)
	fsid, err := s.fsid(d)
	if err != nil {
		return fmt.Errorf("track %s: %w", dir, err)
	}
	flags := 0
	if d.Name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	h, err := s.handleAt(d.Fd, d.Name, flags)
	if err != nil {
		return fmt.Errorf("track %s: name_to_handle_at: %w", dir, err)
	}
	k := key(fsid, h)
	if n := s.tree.Find(k); n != nil {
		if p, ok := s.tree.Path(n); ok && p == dir {
			return nil
		}
		// The same directory under a new path: it was renamed.
		if n == s.displaced {
			s.displaced = nil
		}
		s.tree.Detach(n)
		if old := s.tree.Attach(n, dir); old != nil {
			s.tree.Merge(old, n, nil)
		}
		return nil
	}
	if err := s.mark(d); err != nil {
		return fmt.Errorf("track %s: %w", dir, err)
	}
	s.tree.SetKey(s.tree.Ensure(dir), k)
	return nil
}

// mark adds the group's mark on d, falling back to FAN_MOVED_FROM and
// FAN_MOVED_TO on kernels without FAN_RENAME.
func (s *Source) mark(d watch.Dir) error {
	err := s.g.Mark(markFlags, s.mask, d.Fd, d.Name)
	if errors.Is(err, unix.EINVAL) && s.mask == renameMask {
		if err = s.g.Mark(markFlags, movedMask, d.Fd, d.Name); err == nil {
			s.mask = movedMask
			s.log.Debug("no FAN_RENAME (5.17): renames are reported as a removal and a creation")
		}
	}
	if errors.Is(err, unix.ENOSPC) {
		s.noteLimit()
	}
	if err != nil {
		return fmt.Errorf("fanotify_mark: %w", err)
	}
	return nil
}

// mount is where an fsid was read. A device number and a mount ID are
// both given back after an unmount (a tmpfs mounted again where it was
// gets the same ones, and another fsid): the fsids are forgotten when the
// mount table changes (see mountsChanged). The directories tracked come
// open: one opened before the change is on the filesystem its fsid was
// read from, and one opened after it is looked at anew.
type mount struct{ dev, id uint64 }

// mountsChanged reports whether a filesystem was mounted or unmounted
// since it last looked (always, without s.mounts).
func (s *Source) mountsChanged() bool { return s.mounts == nil || s.mounts.Changed() }

// fsid is the filesystem id that events report d's filesystem by.
func (s *Source) fsid(d watch.Dir) ([2]int32, error) {
	at := mount{d.Dev, d.MntID}
	if f, ok := s.fsids[at]; ok {
		return f, nil
	}
	fd := d.Fd
	if d.Name != "" {
		// The leaf may be a mount point: its own filesystem's id.
		var err error
		fd, err = unix.Openat(d.Fd, d.Name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return [2]int32{}, fmt.Errorf("open: %w", err)
		}
		defer unix.Close(fd)
	}
	var st unix.Statfs_t
	if err := ignoringEINTR(func() error { return unix.Fstatfs(fd, &st) }); err != nil {
		return [2]int32{}, fmt.Errorf("fstatfs: %w", err)
	}
	if d.Dev != 0 {
		s.fsids[at] = st.Fsid.Val
	}
	return st.Fsid.Val, nil
}

// atHandleFID is AT_HANDLE_FID (6.5), which x/sys lacks; the kernel
// defines it as AT_REMOVEDIR, which name_to_handle_at has no use for.
const atHandleFID = unix.AT_REMOVEDIR

// handleAt is name_to_handle_at(2) as fanotify encodes the handles of
// its events: with AT_HANDLE_FID (6.5), which a filesystem that cannot
// be exported (FUSE, overlayfs) encodes too, and which is the same handle
// where one can. Before 6.5 fanotify has no such handles, and the
// kernel refuses the flag.
func (s *Source) handleAt(fd int, name string, flags int) (unix.FileHandle, error) {
	if !s.noFID.Load() {
		h, err := nameToHandleAt(fd, name, flags|atHandleFID)
		if err != unix.EINVAL {
			return h, err
		}
		s.noFID.Store(true)
	}
	return nameToHandleAt(fd, name, flags)
}

func nameToHandleAt(fd int, name string, flags int) (unix.FileHandle, error) {
	for {
		h, _, err := unix.NameToHandleAt(fd, name, flags)
		if err != unix.EINTR {
			return h, err
		}
	}
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// key is what a handle on the filesystem fsid is mapped by.
func key(fsid [2]int32, h unix.FileHandle) string {
	b := make([]byte, 0, 12+h.Size())
	b = binary.NativeEndian.AppendUint32(b, uint32(fsid[0]))
	b = binary.NativeEndian.AppendUint32(b, uint32(fsid[1]))
	b = binary.NativeEndian.AppendUint32(b, uint32(h.Type()))
	return string(append(b, h.Bytes()...))
}

// Untrack forgets dir and every tracked directory below it. Their marks
// stay until the directories are deleted or the group is closed (a mark
// is removed by path, and the path no longer leads there): events from
// them are dropped, as their handles are no longer known.
func (s *Source) Untrack(dir string) {
	if !filepath.IsAbs(dir) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tree.DropPath(filepath.Clean(dir), nil)
}

// Tracked is the number of directories with a known handle.
func (s *Source) Tracked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tree.Len()
}

// Close stops the reader, closes the group (removing every mark) and
// closes Events.
func (s *Source) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.g.Close()
		if s.mounts != nil {
			s.mounts.Close()
		}
		s.wg.Wait()
		close(s.events)
	})
	return err
}

// run reads events until Close.
func (s *Source) run() {
	defer s.wg.Done()
	var evs []fanotify.DirEvent
	var out []watch.DirEvent
	for {
		var err error
		evs, err = s.g.ReadDirEvents(evs[:0])
		if err != nil {
			select {
			case <-s.done:
			default:
				s.log.Error("read fanotify directory events: directory events stop", "error", err)
			}
			return
		}
		s.mu.Lock()
		out = s.handle(evs, out[:0])
		s.mu.Unlock()
		for _, e := range out {
			select {
			case s.events <- e:
			case <-s.done:
				return
			}
		}
	}
}
