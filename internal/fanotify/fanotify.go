package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Permission is the set of permission events vigil answers.
const Permission = unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM | unix.FAN_ACCESS_PERM

// Event is one fanotify event. Fd is an open, read-only descriptor of the
// file (FAN_NOFD for overflow events); the receiver owns it.
type Event struct {
	Mask uint64
	Fd   int
	Pid  int32
}

// IsPermission reports whether the event waits for a response.
func (e Event) IsPermission() bool { return e.Mask&Permission != 0 }

// Overflow reports whether the kernel dropped events (FAN_Q_OVERFLOW).
func (e Event) Overflow() bool { return e.Mask&unix.FAN_Q_OVERFLOW != 0 }

// Group is a fanotify group. Reads block in the Go runtime's poller, so
// Close unblocks a pending ReadEvents; responses and marks hold the
// descriptor while they use it, so none can hit a reused fd number.
type Group struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte // ReadDirEvents'

	readers atomic.Int32  // ReadEvents calls in the poller
	reads   atomic.Uint64 // read(2) calls of events so far
	inRead  atomic.Uint64 // the one in the kernel, 0 when none
	woken   atomic.Bool

	noEvictable atomic.Bool // kernel refused FAN_MARK_EVICTABLE
	closed      atomic.Bool // Close was called: see controlErr
}

// eventBufSize holds 170 events: several per read(2) under load.
const eventBufSize = 4096

var eventBufs = sync.Pool{New: func() any {
	b := make([]byte, eventBufSize)
	return &b
}}

// besidePoll is how long a read beside a blocked one waits in poll(2)
// before it looks again whether it was woken, or may return to the poller.
const besidePoll = 10 * time.Millisecond

// Init creates a group. FAN_CLOEXEC and FAN_NONBLOCK are always added;
// eventFlags are the open(2) flags of event descriptors.
func Init(flags, eventFlags uint) (*Group, error) {
	fd, err := unix.FanotifyInit(flags|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, eventFlags)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	f := os.NewFile(uintptr(fd), "fanotify")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	return &Group{f: f, rc: rc, buf: make([]byte, eventBufSize)}, nil
}

// Mark calls fanotify_mark(2). With path "" the object is dirfd itself.
func (g *Group) Mark(flags uint, mask uint64, dirfd int, path string) error {
	var err error
	cerr := g.rc.Control(func(fd uintptr) {
		err = mark(int(fd), flags, mask, dirfd, path)
	})
	if cerr != nil {
		return g.controlErr(cerr)
	}
	return err
}

// controlErr is err, from holding the group's descriptor, as
// os.ErrClosed once the group is closed: the runtime's own error for it
// cannot be told apart.
func (g *Group) controlErr(err error) error {
	if g.closed.Load() {
		return fmt.Errorf("fanotify: %w", os.ErrClosed)
	}
	return err
}

// mark is fanotify_mark(2), made again when a signal interrupted its
// lookup of path: FUSE fails an interrupted request with EINTR, and the
// Go runtime signals its threads to preempt them.
func mark(fd int, flags uint, mask uint64, dirfd int, path string) error {
	for {
		err := unix.FanotifyMark(fd, flags, mask, dirfd, path)
		if err != unix.EINTR {
			return err
		}
	}
}

// MarkEach calls fanotify_mark(2) for n objects, at each dirfd and path
// that at(i) returns, and stores each result in errs[i]. It holds the
// descriptor once for them all: a walk marks many leaves in a row.
func (g *Group) MarkEach(flags uint, mask uint64, n int, at func(i int) (dirfd int, path string), errs []error) {
	cerr := g.rc.Control(func(fd uintptr) {
		for i := range n {
			dirfd, path := at(i)
			errs[i] = mark(int(fd), flags, mask, dirfd, path)
		}
	})
	if cerr != nil {
		cerr = g.controlErr(cerr)
		for i := range n {
			errs[i] = cerr
		}
	}
}

// Respond answers a permission event.
func (g *Group) Respond(eventFd int, allow bool) error {
	// struct fanotify_response: fd s32, response u32.
	response := uint32(unix.FAN_DENY)
	if allow {
		response = unix.FAN_ALLOW
	}
	var b [8]byte
	binary.NativeEndian.PutUint32(b[0:4], uint32(int32(eventFd)))
	binary.NativeEndian.PutUint32(b[4:8], response)
	var err error
	cerr := g.rc.Write(func(fd uintptr) bool {
		_, err = unix.Write(int(fd), b[:])
		return true
	})
	if cerr != nil {
		return fmt.Errorf("respond fd %d: %w", eventFd, cerr)
	}
	if err != nil {
		return fmt.Errorf("respond fd %d: %w", eventFd, err)
	}
	return nil
}

// ReadEvents blocks until events arrive and appends them to dst. It
// returns an error wrapping os.ErrDeadlineExceeded after Wake, and one
// wrapping os.ErrClosed after Close.
//
// The kernel opens each event's file inside read(2), and that open waits
// on the file's filesystem: on a hung NFS or FUSE server, forever. A
// ReadEvents called while another one is blocked that way reads beside it,
// waiting in poll(2) on a thread of its own, and goes back to the poller
// once the other one returns. InRead tells a blocked read. The blocked
// one, once its read(2) returns, returns with no events rather than wait
// for more if another read ran beside it meanwhile.
func (g *Group) ReadEvents(dst []Event) ([]Event, error) {
	return g.read(dst, true)
}

// InRead returns the number of the read(2) of events in the kernel, 0
// when none is: the same number a while apart is a read blocked on a
// file's filesystem.
func (g *Group) InRead() uint64 { return g.inRead.Load() }

// PendingEvents appends the events already queued, without waiting.
func (g *Group) PendingEvents(dst []Event) ([]Event, error) {
	return g.read(dst, false)
}

// Wake makes a blocked ReadEvents return, and later ones return at once,
// so a reader can switch to PendingEvents and drain the queue.
func (g *Group) Wake() error {
	g.woken.Store(true)
	return g.f.SetReadDeadline(time.Unix(1, 0))
}

func (g *Group) read(dst []Event, wait bool) ([]Event, error) {
	bp := eventBufs.Get().(*[]byte)
	defer eventBufs.Put(bp)
	buf := *bp
	for {
		var n int
		var err error
		if g.readers.Add(1) == 1 {
			n, err = g.readRaw(buf, wait)
			g.readers.Add(-1)
		} else {
			g.readers.Add(-1)
			var again bool
			if n, again, err = g.readBeside(buf, wait); again {
				continue
			}
		}
		if err != nil || n == 0 {
			return dst, err
		}
		return Parse(buf[:n], dst)
	}
}

// readRaw reads into buf through the poller; 0 bytes means nothing was
// queued, or, when waiting, that a read beside this one took what was.
func (g *Group) readRaw(buf []byte, wait bool) (int, error) {
	var n int
	var err error
	cerr := g.rc.Read(func(fd uintptr) bool {
		var seq uint64
		for {
			seq, n, err = g.sysRead(int(fd), buf)
			if err != unix.EINTR {
				break
			}
		}
		// A read beside this one since: its caller, which took the
		// reading over, gets the events, and this one's caller can
		// look again whether it still reads.
		return !wait || err != unix.EAGAIN || g.reads.Load() != seq
	})
	switch {
	case cerr != nil:
		return 0, fmt.Errorf("read fanotify: %w", cerr)
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read fanotify: %w", err)
	}
	return n, nil
}

// sysRead is read(2), numbered (seq) in inRead while it runs.
func (g *Group) sysRead(fd int, buf []byte) (seq uint64, n int, err error) {
	seq = g.reads.Add(1)
	g.inRead.Store(seq)
	n, err = unix.Read(fd, buf)
	g.inRead.CompareAndSwap(seq, 0)
	return seq, n, err
}

// readBeside reads while another read holds the poller's read lock,
// waiting in poll(2) besidePoll at a time. again says the other read has
// returned and nothing was read: the caller goes back to the poller.
func (g *Group) readBeside(buf []byte, wait bool) (n int, again bool, err error) {
	cerr := g.rc.Control(func(fd uintptr) {
		for {
			if g.woken.Load() {
				err = os.ErrDeadlineExceeded
				return
			}
			_, n, err = g.sysRead(int(fd), buf)
			switch {
			case err == unix.EINTR:
				continue
			case err != unix.EAGAIN || !wait:
				return
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, perr := unix.Poll(pfd, int(besidePoll/time.Millisecond)); perr != nil && perr != unix.EINTR {
				err = perr
				return
			}
			if pfd[0].Revents == 0 && g.readers.Load() == 0 {
				n, again, err = 0, true, nil
				return
			}
		}
	})
	switch {
	case cerr != nil:
		return 0, false, fmt.Errorf("read fanotify: %w", cerr)
	case err == unix.EAGAIN:
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("read fanotify: %w", err)
	}
	return n, again, nil
}

// Flush removes every mark of the group, on inodes, mounts and
// filesystems: no event comes for it afterwards. Close releases the group
// only once the calls holding it have returned, and a mark waiting on a
// filesystem that does not answer holds it; flushed first, the group
// keeps no open waiting for an answer meanwhile. Flushing looks up no
// path, so it cannot wait so itself.
func (g *Group) Flush() error {
	var errs []error
	for _, obj := range []uint{0, unix.FAN_MARK_MOUNT, unix.FAN_MARK_FILESYSTEM} {
		if err := g.Mark(unix.FAN_MARK_FLUSH|obj, 0, unix.AT_FDCWD, ""); err != nil {
			errs = append(errs, fmt.Errorf("flush marks: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Close closes the group. The kernel allows every event still waiting for
// a response and removes every mark.
func (g *Group) Close() error {
	g.closed.Store(true)
	return g.f.Close()
}

// Parse decodes a buffer of fanotify_event_metadata records.
func Parse(b []byte, dst []Event) ([]Event, error) {
	for len(b) > 0 {
		m, err := parseMetadata(b)
		if err != nil {
			return dst, err
		}
		dst = append(dst, Event{Mask: m.mask, Fd: m.fd, Pid: m.pid})
		b = b[m.eventLen:]
	}
	return dst, nil
}

// metadata is struct fanotify_event_metadata: event_len u32, vers u8,
// reserved u8, metadata_len u16, mask u64, fd s32, pid s32. Info records,
// if any, lie between metaLen and eventLen.
type metadata struct {
	eventLen, metaLen int
	mask              uint64
	fd                int
	pid               int32
}

// parseMetadata decodes and checks the record at the start of b.
func parseMetadata(b []byte) (metadata, error) {
	if len(b) < unix.FAN_EVENT_METADATA_LEN {
		return metadata{}, errors.New("parse fanotify events: short record")
	}
	if vers := b[4]; vers != unix.FANOTIFY_METADATA_VERSION {
		return metadata{}, fmt.Errorf("parse fanotify events: metadata version %d, want %d", vers, unix.FANOTIFY_METADATA_VERSION)
	}
	m := metadata{
		eventLen: int(binary.NativeEndian.Uint32(b[0:4])),
		metaLen:  int(binary.NativeEndian.Uint16(b[6:8])),
		mask:     binary.NativeEndian.Uint64(b[8:16]),
		fd:       int(int32(binary.NativeEndian.Uint32(b[16:20]))),
		pid:      int32(binary.NativeEndian.Uint32(b[20:24])),
	}
	if m.eventLen < unix.FAN_EVENT_METADATA_LEN || m.eventLen > len(b) ||
		m.metaLen < unix.FAN_EVENT_METADATA_LEN || m.metaLen > m.eventLen {
		return metadata{}, fmt.Errorf("parse fanotify events: bad event length %d", m.eventLen)
	}
	return m, nil
}

// IgnoreFile adds an ignore mark for mask on the file open at fd: the
// kernel stops reporting those events for it until the file is modified
// (no FAN_MARK_IGNORED_SURV_MODIFY), which makes it a clean cache that
// costs nothing on re-open. The mark is evictable where the kernel allows
// (5.19+), so it never pins the inode in memory.
func (g *Group) IgnoreFile(fd int, mask uint64) error {
	if !g.noEvictable.Load() {
		err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK|unix.FAN_MARK_EVICTABLE, mask, fd, "")
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		g.noEvictable.Store(true)
	}
	return g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, mask, fd, "")
}

// UnignoreFile removes an ignore mark placed by IgnoreFile.
func (g *Group) UnignoreFile(fd int, mask uint64) error {
	err := g.Mark(unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, mask, fd, "")
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}
