package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
)

// BatchMarker is a Marker that marks several directories in one call,
// which lets what it does besides marking (tracking them) go in a batch
// too. errs[i] is the error for ds[i].
type BatchMarker interface {
	Marker
	MarkDirs(ds []Dir, events policy.Events, errs []error)
}

// Marker places one mark on a directory. The daemon implements it with a
// fanotify group (FAN_MARK_ADD|FAN_MARK_ONLYDIR|FAN_MARK_DONT_FOLLOW,
// dirfd=d.Fd, pathname=d.Name); tests record the calls.
type Marker interface {
	MarkDir(d Dir, events policy.Events) error
}

// Root is one watched directory.
type Root struct {
	Path      string
	Recursive bool // cover every subdirectory, not only the directory's own files
	Events    policy.Events
}

// Stats counts what a placement did.
type Stats struct {
	Dirs    int // directories marked
	Missing int // roots that do not exist or are not directories
	Errors  int // directories that could not be opened, listed or marked
	Elapsed time.Duration
	// Stalled is set by Manager.Place when the walk stalled on a
	// filesystem that does not answer and was left to go on behind.
	Stalled bool
}

// Rate is the placement speed in directories per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Dirs) / s.Elapsed.Seconds()
}

const (
	direntBufSize = 64 << 10
	// leafBatch bounds a batch of leaves: how much a canceled walk may
	// still mark.
	leafBatch = 256
	// maxMarkErrLogs bounds the mark failures logged one by one; the rest
	// are only counted.
	maxMarkErrLogs = 5
	maxUserMarks   = "/proc/sys/fs/fanotify/max_user_marks"
)

// Place marks every root and, for recursive roots, every directory below
// it, each directory once with the union of the events of the roots
// covering its files. Missing roots are logged and counted, not errors.
// The only errors are ctx ending and the fanotify mark limit (ENOSPC).
func Place(ctx context.Context, m Marker, roots []Root, log hclog.Logger) (Stats, error) {
	return NewWalker(m, log).Place(ctx, roots)
}

// Walker places marks; it keeps the roots of its last Place so that event
// sources can later walk a new or moved-in directory with Subtree. A Walker
// is safe for concurrent use.
type Walker struct {
	m       Marker
	log     hclog.Logger
	workers int
	tab     atomic.Pointer[table]
	// avoid, when set, tells directories the walks (by their context)
	// must not enter, as the watch manager's walks left behind on a hung
	// filesystem (nil: none).
	avoid func(ctx context.Context, dir string) bool
	// missingLevel is the level at which a root that is missing, or is
	// no directory, is logged: a warning for the watches, which the
	// operator wrote; less for the trees the watch manager unmarks, which
	// may be gone, or moved on, before their walk.
	missingLevel hclog.Level

	mu      sync.Mutex
	slots   map[*slot]struct{} // of the walks' workers now
	retired uint64             // directories taken up by workers gone
}

// slot is what one walk worker is doing, for Progress: the directory it
// works on ("" between two) and how many it has taken up.
type slot struct {
	mu    sync.Mutex
	dir   string
	taken uint64
}

func (s *slot) set(dir string) {
	s.mu.Lock()
	s.dir = dir
	if dir != "" {
		s.taken++
	}
	s.mu.Unlock()
}

// tick counts a step within one directory: a listing or a batch of
// leaves. A huge directory is progress too.
func (s *slot) tick() {
	s.mu.Lock()
	s.taken++
	s.mu.Unlock()
}

// NewWalker returns a Walker marking through m. log may be nil.
func NewWalker(m Marker, log hclog.Logger) *Walker {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Walker{m: m, log: log.Named("watch"), workers: runtime.NumCPU(), missingLevel: hclog.Warn,
		slots: make(map[*slot]struct{})}
}

// Progress tells how far the walks have come: taken counts the
// directories they have taken up so far, and the listings and batches of
// leaves within them; busy lists the directories they work on now. Walks
// whose taken stays still while busy is not empty wait on a filesystem.
func (w *Walker) Progress() (taken uint64, busy []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	taken = w.retired
	for s := range w.slots {
		s.mu.Lock()
		taken += s.taken
		if s.dir != "" {
			busy = append(busy, s.dir)
		}
		s.mu.Unlock()
	}
	return taken, busy
}

// enter registers a walk worker's slot; leave retires it.
func (w *Walker) enter() *slot {
	s := &slot{}
	w.mu.Lock()
	w.slots[s] = struct{}{}
	w.mu.Unlock()
	return s
}

func (w *Walker) leave(s *slot) {
	w.mu.Lock()
	delete(w.slots, s)
	w.retired += s.taken
	w.mu.Unlock()
}

func (w *Walker) avoids(ctx context.Context, dir string) bool {
	return w.avoid != nil && w.avoid(ctx, dir)
}

// Place marks the trees of roots, see the package function Place, and
// remembers roots for Subtree.
func (w *Walker) Place(ctx context.Context, roots []Root) (Stats, error) {
	start := time.Now()
	at := w.enter() // resolving and opening the roots
	defer w.leave(at)
	// The roots as given serve Subtree while they resolve, which waits on
	// a filesystem that does not answer.
	w.tab.Store(newTable(roots))
	tab := newTable(canonical(roots, at))
	w.tab.Store(tab)
	r := w.newRun(ctx, tab)
	for _, p := range tab.paths {
		if r.stopped() {
			break
		}
		if r.visited(p) || w.avoids(ctx, p) {
			continue // reached from a recursive root above it, or hung
		}
		at.set(p)
		fd, err := openDir(unix.AT_FDCWD, p, 0)
		at.set("")
		switch {
		case errors.Is(err, unix.ENOENT):
			w.log.Log(w.missingLevel, "watch root missing", "path", p)
			r.missing++
			continue
		case errors.Is(err, unix.ENOTDIR):
			w.log.Log(w.missingLevel, "watch root is not a directory", "path", p)
			r.missing++
			continue
		case isOutOfFds(err):
			r.outOfFds(p, "open", err)
			continue
		case err != nil:
			w.log.Error("open watch root", "path", p, "error", err)
			r.errs.Add(1)
			continue
		}
		r.walk(item{fd: fd, path: p, down: tab.downAbove(p)})
	}
	return r.finish(start)
}

// Subtree marks dir and the directories below it as the roots of the last
// Place say, for a directory that was created or moved in after Place.
// Roots below dir that appeared with it are placed too.
func (w *Walker) Subtree(ctx context.Context, dir string) (Stats, error) {
	start := time.Now()
	tab := w.tab.Load()
	if tab == nil {
		tab = newTable(nil)
	}
	dir = filepath.Clean(dir)
	r := w.newRun(ctx, tab)
	at := w.enter() // opening dir and the roots below it
	defer w.leave(at)
	if !w.avoids(ctx, dir) {
		// O_NOFOLLOW: a symlink put where the directory was is not walked.
		at.set(dir)
		fd, err := openDir(unix.AT_FDCWD, dir, unix.O_NOFOLLOW)
		at.set("")
		if err != nil {
			w.log.Debug("open directory", "dir", dir, "error", err)
			r.errs.Add(1)
		} else {
			r.walk(item{fd: fd, path: dir, down: tab.downAbove(dir)})
		}
	}
	for _, p := range tab.paths {
		if r.stopped() {
			break
		}
		if !mountinfo.Under(p, dir) || r.visited(p) || w.avoids(ctx, p) {
			continue
		}
		at.set(p)
		fd, err := openDir(unix.AT_FDCWD, p, 0)
		at.set("")
		if err != nil {
			continue // not there yet: a later Subtree will place it
		}
		r.walk(item{fd: fd, path: p, down: tab.downAbove(p)})
	}
	return r.finish(start)
}

// isRoot reports whether path is one of the last Place's roots, by its
// canonical path.
func (w *Walker) isRoot(path string) bool {
	tab := w.tab.Load()
	if tab == nil {
		return false
	}
	_, ok := tab.byPath[path]
	return ok
}

// cover is what roots ask of one directory: self for the files directly in
// it, down for every directory below it.
type cover struct{ self, down policy.Events }

// table is the roots by canonical path.
type table struct {
	byPath map[string]cover
	paths  []string // sorted: a path comes before the paths below it
}

// newTable makes the table of roots, by their paths as given.
func newTable(roots []Root) *table {
	t := &table{byPath: make(map[string]cover, len(roots))}
	for _, r := range roots {
		p := filepath.Clean(r.Path)
		c, ok := t.byPath[p]
		if !ok {
			t.paths = append(t.paths, p)
		}
		c.self |= r.Events
		if r.Recursive {
			c.down |= r.Events
		}
		t.byPath[p] = c
	}
	slices.Sort(t.paths)
	return t
}

// canonical returns roots with their paths resolved, each shown in at
// while it resolves: the walk never follows symlinks, and finds nested
// roots by the paths it builds. A path that does not resolve is kept.
func canonical(roots []Root, at *slot) []Root {
	out := slices.Clone(roots)
	for i, r := range out {
		at.set(r.Path)
		if real, err := filepath.EvalSymlinks(r.Path); err == nil {
			out[i].Path = real
		}
		at.set("")
	}
	return out
}

// downAbove is the union of the recursive roots strictly above p.
func (t *table) downAbove(p string) policy.Events {
	var ev policy.Events
	for _, rp := range t.paths {
		if rp != p && mountinfo.Under(p, rp) {
			ev |= t.byPath[rp].down
		}
	}
	return ev
}

func openDir(dirfd int, name string, flags int) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|flags, 0)
		return err
	})
	return fd, err
}

type devIno struct{ dev, ino uint64 }

// run is one placement: shared by the walks of its roots, so that a
// directory reached from several roots is marked once.
type run struct {
	w   *Walker
	ctx context.Context
	tab *table

	mu         sync.Mutex
	seen       map[devIno]cover // what each directory was marked and walked with; not leaves (see leaves)
	reached    map[string]bool  // roots reached by a walk
	exactNlink map[uint64]bool  // by device: a link count of 2 means no subdirectory

	dirs     atomic.Int64
	errs     atomic.Int64
	markErrs atomic.Int64
	missing  int

	fatalOnce sync.Once
	fatal     error
	cancel    context.CancelFunc
}

func (w *Walker) newRun(ctx context.Context, tab *table) *run {
	ctx, cancel := context.WithCancel(ctx)
	return &run{
		w: w, ctx: ctx, tab: tab, cancel: cancel,
		seen:       make(map[devIno]cover),
		reached:    make(map[string]bool),
		exactNlink: make(map[uint64]bool),
	}
}

func (r *run) stopped() bool { return r.ctx.Err() != nil }

func (r *run) visited(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reached[p]
}

func (r *run) finish(start time.Time) (Stats, error) {
	defer r.cancel()
	st := Stats{
		Dirs:    int(r.dirs.Load()),
		Missing: r.missing,
		Errors:  int(r.errs.Load()),
		Elapsed: time.Since(start),
	}
	if n := r.markErrs.Load(); n > maxMarkErrLogs {
		r.w.log.Warn("mark errors not logged", "count", n-maxMarkErrLogs)
	}
	if r.fatal != nil {
		return st, r.fatal
	}
	if err := r.ctx.Err(); err != nil {
		return st, fmt.Errorf("place marks: %w", context.Cause(r.ctx))
	}
	return st, nil
}

// item is a directory waiting to be opened, marked and listed. The start of
// a walk comes open (fd); the others are opened relative to their parent,
// which stays open until its last child is.
type item struct {
	parent *dirRef
	fd     int
	path   string
	name   int    // offset of the name in path, when parent is set
	ino    uint64 // from the parent's listing, when it could tell; else 0
	down   policy.Events
}

type dirRef struct {
	fd   int
	dev  uint64
	refs atomic.Int32
}

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// drop abandons an item that will not be processed.
func (it item) drop() {
	if it.parent != nil {
		it.parent.release()
	} else {
		unix.Close(it.fd)
	}
}

// queue is a LIFO of items: depth first keeps few parents open at a time.
type queue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []item
	pending int // queued or being processed
}

func (q *queue) push(items ...item) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.pending += len(items)
	q.mu.Unlock()
	if len(items) == 1 {
		q.cond.Signal()
	} else {
		q.cond.Broadcast()
	}
}

// pop waits for an item; false when the walk is over.
func (q *queue) pop() (item, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && q.pending > 0 {
		q.cond.Wait()
	}
	if q.pending == 0 {
		return item{}, false
	}
	it := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return it, true
}

func (q *queue) done() {
	q.mu.Lock()
	q.pending--
	end := q.pending == 0
	q.mu.Unlock()
	if end {
		q.cond.Broadcast()
	}
}

// walk processes start and everything below it on a pool of workers.
func (r *run) walk(start item) {
	q := &queue{}
	q.cond.L = &q.mu
	q.push(start)
	var wg sync.WaitGroup
	for range max(r.w.workers, 1) {
		wg.Go(func() {
			at := r.w.enter()
			defer r.w.leave(at)
			s := &scratch{at: at, dirents: make([]byte, direntBufSize)}
			var kids []item
			for {
				it, ok := q.pop()
				if !ok {
					return
				}
				if r.stopped() {
					it.drop()
				} else {
					at.set(it.path)
					kids = r.process(it, s, kids[:0])
					at.set("")
					q.push(kids...)
				}
				q.done()
			}
		})
	}
	wg.Wait()
}

// scratch is one worker's buffers, reused from directory to directory: a
// walk allocates little more than what it keeps.
type scratch struct {
	at      *slot
	dirents []byte
	subs    []item
	batch   []Dir
	errs    []error
}

// process opens, marks and lists one directory, and returns its
// subdirectories to walk (appended to kids).
func (r *run) process(it item, s *scratch, kids []item) []item {
	fd := it.fd
	if it.parent != nil {
		if r.w.avoids(r.ctx, it.path) {
			it.parent.release()
			return kids
		}
		var err error
		fd, err = openDir(it.parent.fd, it.path[it.name:], unix.O_NOFOLLOW)
		it.parent.release()
		if err != nil {
			r.dirErr(it.path, "open", err)
			return kids
		}
	}
	d, nlink, err := statDir(fd, it.path)
	if err != nil {
		unix.Close(fd)
		r.dirErr(it.path, "stat", err)
		return kids
	}
	key := d.key()
	want := cover{self: it.down, down: it.down}

	r.mu.Lock()
	if c, ok := r.tab.byPath[it.path]; ok {
		r.reached[it.path] = true
		want.self |= c.self
		want.down |= c.down
	}
	had, seen := r.seen[key]
	now := cover{self: had.self | want.self, down: had.down | want.down}
	r.seen[key] = now
	r.mu.Unlock()

	// Seen already: a bind mount or another path to the same directory.
	// Mark and walk again only for what the first visit lacked.
	d.Subtree = now.down != 0
	if now.self != had.self {
		// A failed mark still walks on: the subdirectories may take theirs.
		if err := r.w.m.MarkDir(d, now.self); err != nil {
			r.markErr(it.path, err)
		} else if !seen {
			r.dirs.Add(1)
		}
	}
	if now.down == 0 || now.down == had.down || r.leaf(fd, key.dev, nlink) {
		unix.Close(fd)
		return kids
	}

	parent := &dirRef{fd: fd, dev: d.Dev}
	parent.refs.Store(1)
	subs := s.subs[:0]
	for {
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = unix.Getdents(fd, s.dirents)
			return err
		})
		if err != nil {
			r.dirErr(it.path, "list", err)
			break
		}
		if n <= 0 {
			break
		}
		s.at.tick()
		err = parseDirents(s.dirents[:n], func(name []byte, typ uint8, ino uint64) {
			path := join(it.path, name)
			off := len(path) - len(name)
			dir, err := isDir(fd, path[off:], typ)
			if err != nil {
				r.dirErr(path, "stat", err)
				return
			}
			if dir {
				parent.refs.Add(1)
				if typ != unix.DT_DIR {
					ino = 0 // learnt by fstatat, not from the listing: not a leaf candidate
				}
				subs = append(subs, item{parent: parent, path: path, name: off, down: now.down, ino: ino})
			}
		})
		if err != nil {
			r.dirErr(it.path, "list", err)
			break
		}
	}
	kids = r.leaves(d, now.down, had.down == 0, subs, kids, s)
	clear(subs) // holds paths and a descriptor's reference until reused
	s.subs = subs[:0]
	parent.release()
	return kids
}

// leaves marks and tracks the subdirectories subs of d, listed from d, in
// one batch, without opening them, and returns kids with those that turn
// out not to be leaves, or that the batch cannot take, appended to be
// walked the ordinary way. On a tree's skeleton most directories are
// leaves: each costs a mark and a stat instead of an open, a stat, a mark,
// a stat and a close, and the sources track the whole batch at once.
//
// The listing's inode numbers are used before any stat: the mark and the
// tracking are by name and by inode, and the stat that follows checks that
// the name still leads to that inode, still a leaf, now that it is marked
// and tracked (see leaf). A directory that fails the check is walked the
// ordinary way; one that was swapped for another under the walk may leave
// a stale mark or key behind, which costs a user-space check at most.
//
// Leaves are not kept in seen, which spares two lookups in a map as large
// as the tree for most directories: nothing is walked below a leaf, and the
// only way back to it is through its parent, which is listed again only for
// events its first listing lacked (see process). Then its leaves are
// marked again, for those events, and counted once: on the first listing
// of d.
func (r *run) leaves(d Dir, down policy.Events, first bool, subs, kids []item, s *scratch) []item {
	if len(subs) == 0 || !r.exact(d.Fd, d.Dev) {
		return append(kids, subs...)
	}
	batch := s.batch[:0]
	defer func() {
		clear(batch)
		s.batch = batch[:0]
	}()
	for _, sub := range subs {
		if r.w.avoids(r.ctx, sub.path) {
			sub.parent.release()
			continue
		}
		if _, root := r.tab.byPath[sub.path]; root || sub.ino == 0 {
			kids = append(kids, sub)
			continue
		}
		batch = append(batch, Dir{Fd: d.Fd, Name: sub.path[sub.name:], Path: sub.path, Dev: d.Dev, Ino: sub.ino, MntID: d.MntID, Subtree: down != 0})
	}
	if len(batch) == 0 {
		return kids
	}
	errs := slices.Grow(s.errs[:0], len(batch))[:len(batch)]
	clear(errs)
	defer func() {
		clear(errs)
		s.errs = errs[:0]
	}()
	for i := 0; i < len(batch); i += leafBatch {
		chunk := batch[i:min(i+leafBatch, len(batch))]
		s.at.tick()
		switch bm, ok := r.w.m.(BatchMarker); {
		case r.stopped():
			for j := range chunk {
				errs[i+j] = context.Canceled // to the queue, which drops them
			}
		case ok:
			bm.MarkDirs(chunk, down, errs[i:])
		default:
			for j, b := range chunk {
				errs[i+j] = r.w.m.MarkDir(b, down)
			}
		}
	}
	parent := subs[0].parent
	for i, b := range batch {
		it := item{parent: parent, path: b.Path, name: len(b.Path) - len(b.Name), down: down}
		if errs[i] != nil {
			kids = append(kids, it) // the ordinary way meets and reports it again
			continue
		}
		s.at.set(b.Path) // a mount there may hang: name it, not d
		now, nlink, err := statAt(d.Fd, b.Name)
		s.at.set(d.Path)
		if err != nil || now.key() != b.key() {
			kids = append(kids, it)
			continue
		}
		if nlink == 2 {
			if first {
				r.dirs.Add(1)
			}
			parent.release()
			continue
		}
		// Marked, not walked: the ordinary way lists it without marking
		// it again.
		r.mu.Lock()
		had, seen := r.seen[b.key()]
		r.seen[b.key()] = cover{self: had.self | down, down: had.down}
		r.mu.Unlock()
		if !seen {
			r.dirs.Add(1)
		}
		kids = append(kids, it)
	}
	return kids
}

// leaf reports whether the directory has no subdirectory, from its link
// count (2 + subdirectories) on the filesystems known to keep it exact. Most
// directories of a tree are leaves: this spares two getdents calls each.
// nlink was taken before the mark: a subdirectory made between that stat
// and the mark would be reported by no source and found by no listing, so
// a directory that looked like a leaf is stat'ed again, now that it is
// marked and tracked.
func (r *run) leaf(fd int, dev uint64, nlink uint32) bool {
	if nlink != 2 || !r.exact(fd, dev) {
		return false
	}
	var now unix.Stat_t
	return unix.Fstat(fd, &now) == nil && now.Nlink == 2
}

// exact reports whether the filesystem of dev, open at fd, keeps link
// counts exact for directories.
func (r *run) exact(fd int, dev uint64) bool {
	r.mu.Lock()
	exact, ok := r.exactNlink[dev]
	r.mu.Unlock()
	if ok {
		return exact
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return false
	}
	switch sfs.Type {
	// ext4 sets 1, not 2, once a directory outgrows the link count.
	case unix.EXT4_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.XFS_SUPER_MAGIC:
		exact = true
	}
	r.mu.Lock()
	r.exactNlink[dev] = exact
	r.mu.Unlock()
	return exact
}

func join(dir string, name []byte) string {
	if strings.HasSuffix(dir, "/") {
		return dir + string(name)
	}
	return dir + "/" + string(name)
}

// dirErr counts a directory that vanished or cannot be read mid-walk: it
// happens on live trees, so it is not worth more than a debug line. Running
// out of descriptors is another matter: it ends the walk (see outOfFds).
func (r *run) dirErr(dir, op string, err error) {
	if isOutOfFds(err) {
		r.outOfFds(dir, op, err)
		return
	}
	r.errs.Add(1)
	r.w.log.Debug("skip directory", "dir", dir, "error", fmt.Errorf("%s: %w", op, err))
}

func isOutOfFds(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// outOfFds ends a walk that ran out of file descriptors, with an error
// naming the limit: one that went on would leave the directories it could
// not open unmarked, perhaps all of them, and a daemon that went on from
// there would say it was ready while protecting nothing.
func (r *run) outOfFds(dir, op string, err error) {
	r.errs.Add(1)
	r.fatalOnce.Do(func() {
		limit := "unknown"
		var rl unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
			limit = fmt.Sprintf("%d, hard %d", rl.Cur, rl.Max)
		}
		r.fatal = fmt.Errorf("%s %s: %w: out of file descriptors after %d directories (RLIMIT_NOFILE %s): raise the limit (systemd: LimitNOFILE=)",
			op, dir, err, r.dirs.Load(), limit)
		r.cancel()
	})
}

func (r *run) markErr(dir string, err error) {
	if errors.Is(err, unix.ENOSPC) {
		r.fatalOnce.Do(func() {
			limit := "unknown"
			if b, rerr := os.ReadFile(maxUserMarks); rerr == nil {
				limit = strings.TrimSpace(string(b))
			}
			r.fatal = fmt.Errorf("mark %s: %w: fanotify mark limit reached after %d directories (fs.fanotify.max_user_marks = %s): raise the sysctl",
				dir, err, r.dirs.Load(), limit)
			r.cancel()
		})
		return
	}
	r.errs.Add(1)
	if r.markErrs.Add(1) <= maxMarkErrLogs {
		r.w.log.Warn("mark directory", "dir", dir, "error", err)
	}
}
