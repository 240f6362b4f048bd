package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/onaccess"
	"github.com/vigilsec/vigil/internal/policy"
)

// outside is ignore_out_of_scope: directories outside every watch, under
// a filesystem mark, are ignore-marked by an onaccess.Quiet, and a second
// fanotify group (notification class, FAN_REPORT_DFID_NAME) reports every
// directory renamed on those filesystems, so that one moved into a watch
// loses its marks, and those of its subtree, as soon as vigil sees it.
// Ignore marks are placed only while this watcher runs.
type outside struct {
	quiet  *onaccess.Quiet
	group  *fanotify.Group
	pol    *policy.Policy
	roots  []string // the filesystem-mode watches
	log    hclog.Logger
	done   chan struct{}
	closed atomic.Bool // the group is being closed: reads end

	mu sync.Mutex
	// followed are the filesystems marked for renames, each with a
	// directory on it, opened for open_by_handle_at when a rename is
	// reported: a descriptor held would keep the filesystem from being
	// unmounted.
	followed map[[2]int32]string
}

// warnOutside: the kernel's lacks are said once per run, not per reload.
var warnOutside sync.Once

// startOutside starts the rename watcher and returns what places the
// marks through perm, the permission group; nil when the setting is off,
// no watch is in filesystem mode or the kernel cannot do it (logged).
func startOutside(ctx context.Context, perm *fanotify.Group, p *policy.Policy, counters *onaccess.Counters, log hclog.Logger) *outside {
	if !p.Settings.IgnoreOutOfScope {
		return nil
	}
	var mask uint64
	var roots []string
	for _, w := range p.Watches {
		if w.Mode == policy.ModeFilesystem {
			mask |= permMask(w.On)
			roots = append(roots, w.Path)
		}
	}
	if roots == nil {
		return nil
	}
	log = log.Named("outside")
	for _, probe := range []struct {
		what string
		fn   func() error
	}{
		{"FAN_MARK_IGNORE (6.0)", features.IgnoreMarks},
		{"FAN_MARK_EVICTABLE (5.19)", features.EvictableMarks},
		{"FAN_REPORT_DFID_NAME (5.9)", features.FanotifyDirEvents},
	} {
		if err := probe.fn(); err != nil {
			warnOutside.Do(func() {
				log.Warn("ignore_out_of_scope is off: the kernel lacks "+probe.what+
					"; every open on a filesystem-mode watch's filesystem keeps reaching vigil", "error", err)
			})
			return nil
		}
	}
	o, err := watchRenames(p, roots, log)
	if err != nil {
		log.Warn("ignore_out_of_scope is off: directories moved into a watch could not be followed; "+
			"every open on a filesystem-mode watch's filesystem keeps reaching vigil", "error", err)
		return nil
	}
	o.quiet = onaccess.NewQuiet(perm, p, mask, o.follows, counters, log)
	go o.quiet.Run(ctx)
	go o.run()
	log.Info("out-of-scope directories quieted with ignore marks")
	return o
}

// watchRenames starts the rename watcher on the filesystem of each root.
func watchRenames(p *policy.Policy, roots []string, log hclog.Logger) (*outside, error) {
	g, err := fanotify.Init(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_DFID_NAME, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("start rename watcher: %w", err)
	}
	o := &outside{group: g, pol: p, roots: roots, log: log, followed: map[[2]int32]string{}, done: make(chan struct{})}
	for _, root := range roots {
		if err := o.follow(root); err != nil {
			g.Close()
			return nil, err
		}
	}
	return o, nil
}

// follow marks, for FAN_MOVED_TO of directories, the filesystem that
// holds root (or its nearest existing ancestor) now. Again when it has
// the fsid of one followed: a filesystem mounted in another's place may
// have its fsid (the same device, or an anonymous device number given
// again), and marking twice is nothing.
func (o *outside) follow(root string) error {
	at := root
	for {
		if _, err := os.Stat(at); err == nil || at == "/" {
			break
		}
		at = filepath.Dir(at)
	}
	fd, err := unix.Open(at, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", at, err)
	}
	defer unix.Close(fd)
	fsid, err := fsidOf(fd)
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.group.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_MOVED_TO|unix.FAN_ONDIR, fd, ""); err != nil {
		return fmt.Errorf("mark the filesystem of %s for renames: %w", at, err)
	}
	o.followed[fsid] = at
	return nil
}

// refollow follows the filesystem that holds each root now, after the
// mount table changed. Nil-safe.
func (o *outside) refollow() {
	if o == nil {
		return
	}
	for _, root := range o.roots {
		if err := o.follow(root); err != nil {
			o.log.Warn("directories moved into the watch are not followed on the filesystem it is on now: "+
				"its directories outside every watch are not quieted", "path", root, "error", err)
		}
	}
}

// follows reports whether the directory open at fd is on a filesystem
// the watcher follows: the Quiet marks no other, as a directory moved
// from there into a watch would keep its mark.
func (o *outside) follows(fd int) bool {
	fsid, err := fsidOf(fd)
	if err != nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.followed[fsid]
	return ok
}

// dirOn opens the directory the watcher knows on the filesystem fsid,
// and checks it is still there: -1 when not.
func (o *outside) dirOn(fsid [2]int32) int {
	o.mu.Lock()
	at, ok := o.followed[fsid]
	o.mu.Unlock()
	if !ok {
		return -1
	}
	// Not O_PATH: open_by_handle_at refuses such a mount descriptor.
	fd, err := unix.Open(at, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	if now, err := fsidOf(fd); err != nil || now != fsid {
		unix.Close(fd) // another filesystem is mounted there now
		return -1
	}
	return fd
}

func fsidOf(fd int) ([2]int32, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return [2]int32{}, fmt.Errorf("statfs: %w", err)
	}
	return st.Fsid.Val, nil
}

// close stops the watcher and the Quiet. The marks go with the
// permission group.
func (o *outside) close() {
	if o == nil {
		return
	}
	o.quiet.Stop()
	o.closed.Store(true)
	o.group.Close()
	<-o.done
}

func (o *outside) run() {
	defer close(o.done)
	var evs []fanotify.DirEvent
	for {
		var err error
		evs, err = o.group.ReadDirEvents(evs[:0])
		for _, ev := range evs {
			o.handle(ev)
		}
		if o.closed.Load() {
			return
		}
		if err != nil {
			// Renames may have been missed: take every mark back.
			o.log.Error("read rename events", "error", err)
			o.unignoreAll()
			if len(evs) == 0 {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

func (o *outside) handle(ev fanotify.DirEvent) {
	if ev.Overflow() {
		o.log.Warn("rename watcher queue overflow: removing every out-of-scope ignore mark")
		o.unignoreAll()
		return
	}
	if ev.Mask&unix.FAN_ONDIR == 0 || ev.Mask&unix.FAN_MOVED_TO == 0 || o.quiet.Empty() {
		return
	}
	start := time.Now()
	mfd := o.dirOn(ev.Fsid)
	if mfd < 0 {
		return
	}
	pfd, err := unix.OpenByHandleAt(mfd, ev.Handle, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	unix.Close(mfd)
	if err != nil {
		// ESTALE: the destination is gone, and what was moved with it.
		o.log.Debug("resolve rename destination", "error", err)
		return
	}
	defer unix.Close(pfd)
	parent, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(pfd))
	if err != nil {
		return
	}
	dest := filepath.Join(parent, ev.Name)
	if !o.pol.Reaches(dest) {
		return
	}
	fd, err := onaccess.OpenDir(pfd, ev.Name)
	if err != nil {
		// Moved on or removed: a move into a watch raises its own event.
		o.log.Debug("open moved directory", "dir", dest, "error", err)
		return
	}
	n := o.unignoreTree(fd, dest)
	if n > 0 {
		o.log.Info("directory moved into a watch: ignore marks removed", "dir", dest, "count", n,
			"elapsed", time.Since(start))
	}
}

// unignoreTree removes the ignore marks of the directory open at fd (which
// it closes) and of every directory below it, depth first. It holds one
// descriptor per level and opens each child relative to its parent, so
// depth is bounded neither by PATH_MAX nor by recursion.
func (o *outside) unignoreTree(fd int, path string) int {
	type frame struct {
		f    *os.File
		subs []string
	}
	n := 0
	visit := func(fd int, path string) *frame {
		if had, err := o.quiet.Unignore(fd); err != nil {
			o.log.Error("remove ignore mark", "dir", path, "error", err)
		} else if had {
			n++
		}
		f := os.NewFile(uintptr(fd), path)
		ents, err := f.ReadDir(-1)
		if err != nil {
			o.log.Debug("read moved directory", "dir", path, "error", err)
		}
		fr := &frame{f: f}
		for _, e := range ents {
			if e.IsDir() {
				fr.subs = append(fr.subs, e.Name())
			}
		}
		return fr
	}
	stack := []*frame{visit(fd, path)}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		if len(top.subs) == 0 {
			top.f.Close()
			stack = stack[:len(stack)-1]
			continue
		}
		name := top.subs[len(top.subs)-1]
		top.subs = top.subs[:len(top.subs)-1]
		sub := filepath.Join(top.f.Name(), name)
		cfd, err := onaccess.OpenDir(int(top.f.Fd()), name)
		if err != nil {
			o.log.Debug("open moved directory", "dir", sub, "error", err)
			continue
		}
		stack = append(stack, visit(cfd, sub))
	}
	return n
}

// unignoreAll removes every mark the Quiet placed. Those no longer at
// the path they were marked at are looked for in the watches, the only
// place where their marks matter.
func (o *outside) unignoreAll() {
	unreached := o.quiet.UnignoreAll()
	if unreached == 0 {
		return
	}
	for _, w := range o.pol.Watches {
		fd, err := onaccess.OpenDir(unix.AT_FDCWD, w.Path)
		if err != nil {
			continue
		}
		o.unignoreTree(fd, w.Path)
	}
	o.log.Info("ignore marks removed after lost rename events", "dirs_moved", unreached, "left", o.quiet.Len())
}

// outsideMetrics exports the out-of-scope ignore marks.
type outsideMetrics struct{ d *daemon }

var (
	descQuieted = prometheus.NewDesc("vigil_out_of_scope_ignore_marks_total",
		"Ignore marks on directories outside every watch (ignore_out_of_scope), by result: placed; removed (moved into a watch, or after lost rename events); raced (removed at once: the directory moved while being marked); failed.",
		[]string{"result"}, nil)
	descQuietDirs = prometheus.NewDesc("vigil_out_of_scope_ignored_dirs",
		"Directories outside every watch carrying an ignore mark (some may have been evicted by the kernel since).", nil, nil)
)

func (m outsideMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQuieted
	ch <- descQuietDirs
}

func (m outsideMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.d.counters.Snapshot()
	for _, c := range []struct {
		result string
		v      uint64
	}{{"placed", s.Quieted}, {"removed", s.Unquieted}, {"raced", s.QuietRaces}, {"failed", s.QuietErrors}} {
		ch <- prometheus.MustNewConstMetric(descQuieted, prometheus.CounterValue, float64(c.v), c.result)
	}
	n := 0
	if i := m.d.cur.Load(); i != nil && i.outside != nil {
		n = i.outside.quiet.Len()
	}
	ch <- prometheus.MustNewConstMetric(descQuietDirs, prometheus.GaugeValue, float64(n))
}
