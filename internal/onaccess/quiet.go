package onaccess

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/policy"
)

// Quieter takes the directories of out-of-scope opens (a *Quiet).
type Quieter interface {
	// Offer must not block: the permission loop calls it.
	Offer(dir string)
}

// DirIgnorer places and removes ignore marks on directories (a
// *fanotify.Group).
type DirIgnorer interface {
	IgnoreDir(fd int, mask uint64) error
	UnignoreDir(fd int, mask uint64) error
}

// Quiet keeps directories outside every watch quiet under a filesystem
// mark: the first out-of-scope open in such a directory gets it an
// evictable ignore mark, and its files stop reaching the loop. A
// directory moved from outside into a watch keeps its mark until its
// owner calls Unignore for it: that window is why the setting is opt-in.
// It remembers the directories it marked by (dev, ino), so that they can
// all be found again; when the set is full it lets go of those no longer
// where they were marked (see sweep).
type Quiet struct {
	ig       DirIgnorer
	pol      *policy.Policy
	mask     uint64
	follows  func(fd int) bool
	counters *Counters
	log      hclog.Logger
	offers   chan string
	stop     chan struct{}
	warnFull sync.Once
	max      int // quietMax; tests lower it

	mu     sync.Mutex // held from placing a mark to recording it
	marked map[DirKey]string
	swept  time.Time // when sweep last ran
	// lost: sweep let go of directories that may live on elsewhere with
	// their marks (moved, not removed). From then on Unignore removes
	// the mark of any directory, and UnignoreAll has its caller look for
	// them in the watches.
	lost bool
}

// DirKey identifies a directory while it exists.
type DirKey struct{ Dev, Ino uint64 }

const (
	// quietMax bounds the directories remembered (about 100 bytes each).
	// Removed and evicted inodes are not noticed as they go: a full set
	// is swept, and past it no more are marked.
	quietMax = 1 << 15
	// sweepEvery bounds how often a full set is swept: a set full of
	// directories still there is not read through at every offer.
	sweepEvery = time.Minute
	// quietQueue: offers beyond it are dropped; the next open in the
	// directory offers it again.
	quietQueue = 256
)

// NewQuiet returns a Quiet placing ignore marks for mask (the
// permission events of the filesystem marks, with FAN_EVENT_ON_CHILD)
// through ig, outside the watches of p, on the directories that follows
// accepts (open at fd): those whose moves into a watch its owner sees.
// Run must run for offers to be taken.
func NewQuiet(ig DirIgnorer, p *policy.Policy, mask uint64, follows func(fd int) bool, counters *Counters, log hclog.Logger) *Quiet {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Quiet{
		ig: ig, pol: p, mask: mask, follows: follows, counters: counters, log: log,
		offers: make(chan string, quietQueue),
		stop:   make(chan struct{}),
		max:    quietMax,
		marked: make(map[DirKey]string),
	}
}

// Offer queues dir for an ignore mark, or drops it when the queue is full.
func (q *Quiet) Offer(dir string) {
	select {
	case q.offers <- dir:
	default:
	}
}

// Run places the marks offered until ctx is done or Stop.
func (q *Quiet) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.stop:
			return
		case dir := <-q.offers:
			q.place(dir)
		}
	}
}

// Stop makes Run return.
func (q *Quiet) Stop() { close(q.stop) }

// place ignore-marks dir when it is outside every watch, then checks the
// directory is still outside: a rename between the check on the path and
// the mark would otherwise carry the mark into a watch.
func (q *Quiet) place(dir string) {
	if !q.pol.Outside(dir) {
		return
	}
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		q.log.Debug("open directory to quiet", "dir", dir, "error", err)
		return
	}
	defer unix.Close(fd)
	if !q.follows(fd) {
		q.log.Debug("out-of-scope directory not quieted: moves from its filesystem are not followed", "dir", dir)
		return
	}
	key, err := dirKey(fd)
	if err != nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	// Offered again though marked: the kernel evicted the inode, and its
	// mark with it. Mark it again.
	_, had := q.marked[key]
	if !had && len(q.marked) >= q.max && !q.sweep() {
		q.warnFull.Do(func() {
			q.log.Warn("out-of-scope directories: no more ignore marks, the set is full", "count", len(q.marked))
		})
		return
	}
	if err := q.ig.IgnoreDir(fd, q.mask); err != nil {
		// EEXIST: the directory has a non-evictable mark of this group.
		q.counters.QuietErrors.Add(1)
		q.log.Debug("ignore mark on out-of-scope directory", "dir", dir, "error", err)
		return
	}
	now, err := fdLink(fd)
	if err != nil || !q.pol.Outside(now) {
		if err := q.ig.UnignoreDir(fd, q.mask); err != nil {
			q.counters.QuietErrors.Add(1)
			q.log.Error("remove ignore mark from a directory moved into a watch", "dir", now, "error", err)
			return
		}
		q.counters.QuietRaces.Add(1)
		q.log.Debug("directory moved while being quieted: ignore mark removed", "dir", now)
		return
	}
	q.marked[key] = now
	if !had {
		q.counters.Quieted.Add(1)
	}
}

// sweep makes room in the full set: it lets go of the directories no
// longer at the path they were marked at, and reports whether that made
// room. Most of them were removed, and their marks went with their
// inodes: under churn (directories made, opened and removed outside the
// watches) they filled the set within minutes, and then no directory
// was quieted again until vigil restarted. One moved away keeps its
// mark: q.lost has it found again (see Unignore, UnignoreAll).
func (q *Quiet) sweep() bool {
	now := time.Now()
	if now.Sub(q.swept) < sweepEvery {
		return false
	}
	q.swept = now
	before := len(q.marked)
	for key, dir := range q.marked {
		if !at(key, dir) {
			delete(q.marked, key)
			q.lost = true
		}
	}
	q.log.Debug("out-of-scope directories no longer where they were marked let go of",
		"count", before-len(q.marked), "left", len(q.marked))
	return len(q.marked) < q.max
}

// at reports whether dir is the directory key.
func at(key DirKey, dir string) bool {
	fd, err := openDir(unix.AT_FDCWD, dir)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	k, err := dirKey(fd)
	return err == nil && k == key
}

// Empty reports whether no directory is ignore-marked, as far as q
// knows: after a sweep let go of some, it never is.
func (q *Quiet) Empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.marked) == 0 && !q.lost
}

// Len is the number of directories ignore-marked.
func (q *Quiet) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.marked)
}

// Unignore removes the ignore mark of the directory open at fd, if it
// has one from q, and reports whether it had. Once a sweep let go of
// directories, one q does not know loses its mark too, if it has one,
// and is reported as not having had one.
func (q *Quiet) Unignore(fd int) (bool, error) {
	key, err := dirKey(fd)
	if err != nil {
		return false, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.unignore(fd, key)
}

func (q *Quiet) unignore(fd int, key DirKey) (bool, error) {
	dir, ok := q.marked[key]
	if !ok && !q.lost {
		return false, nil
	}
	if err := q.ig.UnignoreDir(fd, q.mask); err != nil {
		q.counters.QuietErrors.Add(1)
		if !ok {
			dir, _ = fdLink(fd)
		}
		return false, fmt.Errorf("remove ignore mark of %s: %w", dir, err)
	}
	if !ok {
		return false, nil
	}
	delete(q.marked, key)
	q.counters.Unquieted.Add(1)
	return true, nil
}

// UnignoreAll removes every ignore mark q placed that it can still reach
// by the path it was placed at, and returns how many directories it could
// not reach there (moved or gone): the caller looks for those in the
// watches, where they matter, with Unignore. Once a sweep let go of
// directories, some are always counted unreached.
func (q *Quiet) UnignoreAll() (unreached int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.lost {
		unreached++
	}
	for key, dir := range q.marked {
		fd, err := openDir(unix.AT_FDCWD, dir)
		if err != nil {
			unreached++
			continue
		}
		if k, err := dirKey(fd); err != nil || k != key {
			unreached++
		} else if _, err := q.unignore(fd, key); err != nil {
			q.log.Error("remove ignore mark", "dir", dir, "error", err)
		}
		unix.Close(fd)
	}
	return unreached
}

// Forget drops every directory from the set without touching marks: for
// when they are gone with their group.
func (q *Quiet) Forget() {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(q.marked)
	q.lost = false
}

// openDir opens a directory for marking or reading without following a
// symlink anywhere on the way: fanotify_mark takes no O_PATH descriptor.
func openDir(dirfd int, path string) (int, error) {
	fd, err := unix.Openat2(dirfd, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	return fd, nil
}

// OpenDir is openDir for the owner of a Quiet walking moved directories.
func OpenDir(dirfd int, path string) (int, error) { return openDir(dirfd, path) }

func dirKey(fd int) (DirKey, error) {
	var sb unix.Stat_t
	if err := unix.Fstat(fd, &sb); err != nil {
		return DirKey{}, fmt.Errorf("stat directory: %w", err)
	}
	return DirKey{Dev: uint64(sb.Dev), Ino: uint64(sb.Ino)}, nil
}

// fdLink is the path a descriptor names now.
func fdLink(fd int) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("readlink fd %d: %w", fd, err)
	}
	p := string(buf[:n])
	if len(p) == 0 || p[0] != '/' {
		return "", errors.New("directory has no path")
	}
	return p, nil
}
