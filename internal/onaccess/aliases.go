package onaccess

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/policy"
)

// Aliases finds the path under a watch of a file that the kernel reports
// by a path no watch matches, because it was reached through another
// mount of a watched filesystem: a bind mount of a watched directory, or
// a container's volume. A directory's mark is on its inode and a
// filesystem's on its superblock, so they fire whichever mount a file is
// opened through; but the kernel reports the path of that mount, and the
// policy speaks of the watches' paths.
//
// The mount tables come from mountinfo, read without asking any
// filesystem: a hung one cannot stall a decision here. A table is read
// again once the kernel says its namespace's mounts changed (poll(2) on
// an open mountinfo), so a bind mount made a moment before an open is
// known at that open: a table a second old let a new bind mount's opens
// through unscanned, and, with ignore_out_of_scope, silenced the watched
// directory they were in.
type Aliases struct {
	log    hclog.Logger
	selfNS string // this process's mount namespace

	// ownIDs is own.ids as last read, for Through to look up without mu:
	// a table read under mu (a large one, of another namespace, made
	// by any user) must not hold the opens of vigil's own namespace.
	ownIDs atomic.Pointer[map[uint64]int]

	mu     sync.Mutex
	own    table
	others map[string]*table // other namespaces', by namespace
	pol    *policy.Policy    // the policy places are for
	placed time.Time         // own.read when places were found
	places []place
}

// table is a namespace's mounts as read at one time.
type table struct {
	mounts []mountinfo.Mount
	ids    map[uint64]int // into mounts, by mount ID
	read   time.Time
	// changes is an open mountinfo of the namespace, which poll(2) says
	// changed when a mount was made or removed there; nil when it could
	// not be opened, and the table is then read again by age. It holds
	// the namespace, and every mount there, while it is open.
	changes *mountinfo.Changes
	// owner, for another namespace's table, is a pidfd of the process it
	// was first read through; the table is dropped when that process
	// ends, so that vigil does not hold a container's filesystems after
	// the container. nil for vigil's own, and where pidfds are missing
	// (before 5.3): the table is then kept until maxNamespaces others
	// push it out.
	owner *os.File
}

// place is a watch's directory on its filesystem.
type place struct {
	dev    uint64
	fsPath string
	path   string // the watch's
}

// refreshAfter is how old a mount table without a changes descriptor may
// be before a path found under no watch has it read again: a mount made
// since is found within that long, and a stream of opens outside every
// watch reads a table at most once per period.
const refreshAfter = time.Second

// maxNamespaces bounds the other namespaces' tables kept.
const maxNamespaces = 64

// NewAliases returns Aliases for this process's mount namespace.
func NewAliases(log hclog.Logger) *Aliases {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ns, _ := os.Readlink("/proc/self/ns/mnt")
	return &Aliases{log: log, selfNS: ns, others: make(map[string]*table)}
}

// Resolve returns the path under one of pol's watches of the file
// reported at path, on device dev, opened by pid: the path the same file
// has through the mount a watch was placed by. It reports false when no
// other mount leads to a watch.
func (a *Aliases) Resolve(pol *policy.Policy, path string, dev uint64, pid int32) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.own.read.IsZero() {
		a.readFile(&a.own, ownMountinfo, now)
	}
	a.findPlaces(pol)
	// A watch's filesystem may have been mounted since the table was read.
	if !a.watched(dev) && (!a.rereadOwn(pol, now) || !a.watched(dev)) {
		return "", false
	}
	if p, ok := a.resolveIn(&a.own, path, dev); ok {
		return p, true
	}
	if t := a.foreign(pid, now); t != nil {
		if p, ok := a.resolveIn(t, path, dev); ok {
			return p, true
		}
		if a.reread(t, procFile(pid, "mountinfo"), now) {
			return a.resolveIn(t, path, dev)
		}
		return "", false
	}
	if a.rereadOwn(pol, now) {
		return a.resolveIn(&a.own, path, dev)
	}
	return "", false
}

// watched reports whether some watch is on device dev.
func (a *Aliases) watched(dev uint64) bool {
	for _, pl := range a.places {
		if pl.dev == dev {
			return true
		}
	}
	return false
}

// resolveIn maps path, on dev as t's namespace shows it, to the watch
// whose directory holds it on the filesystem, the deepest if several do.
func (a *Aliases) resolveIn(t *table, path string, dev uint64) (string, bool) {
	at, ok := mountinfo.Locate(t.mounts, path, dev)
	if !ok {
		return "", false
	}
	return a.placeOf(at, dev)
}

// placeOf maps at, a path on the filesystem of device dev, to the watch
// whose directory holds it there, the deepest if several do.
func (a *Aliases) placeOf(at string, dev uint64) (string, bool) {
	best := -1
	for i, pl := range a.places {
		if pl.dev == dev && mountinfo.Under(at, pl.fsPath) && (best < 0 || len(pl.fsPath) > len(a.places[best].fsPath)) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	pl := a.places[best]
	switch {
	case at == pl.fsPath:
		return pl.path, true
	case pl.fsPath == "/":
		return strings.TrimSuffix(pl.path, "/") + at, true
	}
	return strings.TrimSuffix(pl.path, "/") + at[len(pl.fsPath):], true
}

// findPlaces finds where pol's watches are on their filesystems, through
// the mounts that hold their paths here, unless it did for pol and this
// reading of the table.
func (a *Aliases) findPlaces(pol *policy.Policy) {
	if pol == a.pol && a.placed.Equal(a.own.read) {
		return
	}
	a.pol, a.placed, a.places = pol, a.own.read, a.places[:0]
	for _, w := range pol.Watches {
		if m, ok := mountinfo.At(a.own.mounts, w.Path); ok {
			a.places = append(a.places, place{dev: m.Dev(), fsPath: m.On(w.Path), path: w.Path})
		}
	}
}

// foreign returns the mount table of pid's namespace, when that is not
// this process's; nil when it is, or cannot be told (pid gone).
func (a *Aliases) foreign(pid int32, now time.Time) *table {
	ns, err := os.Readlink(procFile(pid, "ns/mnt"))
	if err != nil || ns == a.selfNS {
		return nil
	}
	if t := a.others[ns]; t != nil {
		return t
	}
	t := &table{}
	// The owner first: a process that ended before it read no table.
	if fd, err := unix.PidfdOpen(int(pid), 0); err == nil {
		if err := unix.SetNonblock(fd, true); err != nil { // for the runtime's poller
			unix.Close(fd)
		} else {
			t.owner = os.NewFile(uintptr(fd), "pidfd")
		}
	} else if err == unix.ESRCH {
		return nil
	}
	if !a.readFile(t, procFile(pid, "mountinfo"), now) {
		t.close()
		return nil
	}
	if len(a.others) >= maxNamespaces {
		for k, old := range a.others { // any one: namespaces come and go
			old.close()
			delete(a.others, k)
			break
		}
	}
	a.others[ns] = t
	if t.owner != nil {
		go a.dropAtEnd(ns, t, t.owner)
	}
	return t
}

// dropAtEnd drops t, the table of the namespace ns, once the process
// it was first read through has ended (owner, its pidfd, polls
// readable), or returns when t was dropped before (owner closed).
func (a *Aliases) dropAtEnd(ns string, t *table, owner *os.File) {
	rc, err := owner.SyscallConn()
	if err != nil {
		return
	}
	ended := rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err != nil || n > 0
	}) == nil
	a.mu.Lock()
	defer a.mu.Unlock()
	if ended && a.others[ns] == t {
		delete(a.others, ns)
		t.close()
	}
}

const ownMountinfo = "/proc/self/mountinfo"

// rereadOwn reads this process's table again if it is older than
// refreshAfter, with the watches' places, and reports whether it did.
func (a *Aliases) rereadOwn(pol *policy.Policy, now time.Time) bool {
	if !a.reread(&a.own, ownMountinfo, now) {
		return false
	}
	a.findPlaces(pol)
	return true
}

// reread reads t again from name if its mounts changed since it was read
// (or, without a way to tell, if it is older than refreshAfter), and
// reports whether it did.
func (a *Aliases) reread(t *table, name string, now time.Time) bool {
	return t.changed(now) && a.readFile(t, name, now)
}

// changed reports whether t's namespace changed its mounts since t was
// read.
func (t *table) changed(now time.Time) bool {
	if t.changes == nil {
		return now.Sub(t.read) > refreshAfter
	}
	return t.changes.Changed()
}

func (t *table) close() {
	if t.changes != nil {
		t.changes.Close()
		t.changes = nil
	}
	if t.owner != nil {
		t.owner.Close()
		t.owner = nil
	}
}

// readFile reads t from a mountinfo file, and reports whether it could.
// The first read opens t's changes descriptor first: a change made while
// the table is read is then reported by the next look.
func (a *Aliases) readFile(t *table, name string, now time.Time) bool {
	if t.changes == nil && t.read.IsZero() {
		if c, err := mountinfo.OpenChanges(name); err == nil {
			t.changes = c
		}
	}
	ms, err := mountinfo.ReadFile(name)
	t.read = now // a failed read is not tried again at once either
	if err != nil {
		a.log.Debug("read mount table", "file", name, "error", err)
		return false
	}
	t.mounts = ms
	ids := make(map[uint64]int, len(ms)) // never changed once made: see ownIDs
	for i, m := range ms {
		ids[m.ID] = i
	}
	t.ids = ids
	if t == &a.own {
		a.ownIDs.Store(&ids)
	}
	return true
}

// Mount says how the path of a file open through a mount is to be read.
type Mount int

const (
	// OwnMount: the mount is in vigil's namespace, and so is the path.
	OwnMount Mount = iota
	// UnderWatch: another namespace's mount; the path returned is the
	// file's under a watch, as vigil's namespace shows it.
	UnderWatch
	// OutsideWatches: another namespace's mount, of a place no watch holds.
	OutsideWatches
	// UnknownMount: a mount in no namespace vigil can read (a detached
	// copy of a tree, made by open_tree), or pid's namespace gone: the
	// path cannot be told.
	UnknownMount
)

// Through tells how to read path, the kernel's name for a file on device
// dev open through mount mnt (a mount ID) by pid. The kernel names a
// file by its path in the namespace of the mount it was opened through,
// which need not be vigil's: an unprivileged user in a user and mount
// namespace of their own can bind mount a watched directory over the
// path of an excluded one, or clone a watched tree (open_tree) and open
// its files by paths no watch holds. Such a path is mapped to where the
// file is on its filesystem, through pid's mount table, and from there
// to the watches.
func (a *Aliases) Through(pol *policy.Policy, mnt uint64, path string, dev uint64, pid int32) (string, Mount) {
	if ids := a.ownIDs.Load(); ids != nil {
		if _, ok := (*ids)[mnt]; ok {
			return path, OwnMount
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.own.read.IsZero() {
		a.readFile(&a.own, ownMountinfo, now)
	}
	if _, ok := a.own.ids[mnt]; ok {
		return path, OwnMount
	}
	if a.rereadOwn(pol, now) {
		if _, ok := a.own.ids[mnt]; ok {
			return path, OwnMount
		}
	}
	a.findPlaces(pol)
	t := a.foreign(pid, now)
	if t == nil {
		return "", UnknownMount
	}
	i, ok := t.ids[mnt]
	if !ok && a.reread(t, procFile(pid, "mountinfo"), now) {
		i, ok = t.ids[mnt]
	}
	if !ok || !mountinfo.Under(path, t.mounts[i].Point) {
		return "", UnknownMount
	}
	if p, ok := a.placeOf(t.mounts[i].On(path), dev); ok {
		return p, UnderWatch
	}
	return "", OutsideWatches
}

// procFile is the path of name in pid's /proc directory.
func procFile(pid int32, name string) string {
	return "/proc/" + strconv.Itoa(int(pid)) + "/" + name
}
