package dirtrace

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/watch"
)

// lostCheck is how often the reader looks at the lost-record counter
// when the ring buffer is quiet.
const lostCheck = 200 * time.Millisecond

// Tracer is the eBPF source of directory events. It implements
// watch.Source.
type Tracer struct {
	hook   Hook
	log    hclog.Logger
	rung   *rung // nil for HookNone
	events chan watch.DirEvent
	done   chan struct{}
	wg     sync.WaitGroup
	rd     *ringbuf.Reader
	lost   atomic.Uint64
	once   sync.Once
	// closeErr is what Close met, for every call.
	closeErr error

	// The watched map holds the anchors: the directories that cover the
	// tracked ones (see Track).
	mu    sync.Mutex
	byKey map[dirwatchDwKey]anchor
	// children holds the anchors' paths and keys by parent directory: a
	// path is found through its parent, and a subtree in its own size,
	// not the number of anchors.
	children map[string]map[string]dirwatchDwKey
	sbDev    map[uint64]uint32 // mount id -> superblock device
	prefixN  map[uint64]int    // anchors by the FNV-1a hash of their path
	// anchorGen counts the watched map's updates (bpf/dirwatch.h's
	// enum dw_gen).
	anchorGen uint64
	// prefixFull: the prefixes map refused a path, so "/" stands in it for
	// every path; rootPrefix: "/" is in it (rootPrefixLocked).
	prefixFull, rootPrefix bool
	observe                atomic.Pointer[func(event)] // tests: sees each record first
}

// anchor is a directory in the watched map. It covers its own entries,
// and with tree those of every directory below it on its mount, which the
// programs find by climbing dentries (bpf/dirwatch.h).
type anchor struct {
	path string
	tree bool
	mnt  uint64 // statx's mount id, 0 unknown
}

// Values of the watched map: bpf/dirwatch.h's enum dw_watch.
const (
	watchDir  uint8 = 1
	watchTree uint8 = 2
)

// The generations map's slot that Go counts in: bpf/dirwatch.h's
// DW_GEN_ANCHORS.
const genAnchors uint32 = 1

// How far below a tree anchor a tracked directory may be and still be
// covered by it, in levels and in bytes of path, within what the programs
// climb (DW_DEPTH_MAX levels, DW_CHAIN_MAX bytes) with room for one more
// level. A directory further down becomes an anchor of its own.
const (
	coverDepth = 32
	coverBytes = 2048
)

var _ watch.Source = (*Tracer)(nil)

// Open loads and attaches the programs of hook want, or with want "" the
// first rung of Ladder that works here. A forced rung that fails is an
// error (wrapping features.ErrNotSupported when the kernel lacks it);
// HookNone gives a tracer that reports nothing.
func Open(want Hook, log hclog.Logger) (*Tracer, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("dirtrace")
	if want != "" && !want.valid() {
		return nil, fmt.Errorf("open tracer: unknown hook %q (want one of %v)", want, Ladder)
	}
	try := Ladder
	if want != "" {
		try = []Hook{want}
	}
	c := newClimb(log)
	for _, h := range try {
		if h == HookNone {
			log.Info("tracing directory events", "hook", h)
			return newTracer(h, nil, log), nil
		}
		r, err := loadRung(h, c, log)
		if err != nil {
			if want != "" {
				return nil, fmt.Errorf("open tracer with hook %s: %w", h, err)
			}
			log.Debug("hook unavailable", "hook", h, "error", err)
			continue
		}
		t := newTracer(h, r, log)
		rd, err := ringbuf.NewReader(r.coll.Maps[dirwatchMapEvents])
		if err != nil {
			return nil, errors.Join(fmt.Errorf("open ring buffer: %w", err), r.close())
		}
		t.rd = rd
		t.wg.Add(1)
		go t.read()
		log.Info("tracing directory events", "hook", h)
		return t, nil
	}
	return nil, errors.New("open tracer: no hook in the ladder") // unreachable: the ladder ends with none
}

func newTracer(h Hook, r *rung, log hclog.Logger) *Tracer {
	return &Tracer{
		hook:     h,
		log:      log,
		rung:     r,
		events:   make(chan watch.DirEvent, 1024),
		done:     make(chan struct{}),
		byKey:    make(map[dirwatchDwKey]anchor),
		children: make(map[string]map[string]dirwatchDwKey),
		prefixN:  make(map[uint64]int),
	}
}

// Name names the source: "ebpf".
func (t *Tracer) Name() string { return "ebpf" }

// Hook reports the rung in use.
func (t *Tracer) Hook() Hook { return t.hook }

// Lost reports how many records the kernel could not pass on.
func (t *Tracer) Lost() uint64 { return t.lost.Load() }

// Events delivers directory events until Close.
func (t *Tracer) Events() <-chan watch.DirEvent { return t.events }

func (t *Tracer) source() string { return "ebpf:" + string(t.hook) }

// Track reports changes in ds from now on. A directory whose subtree the
// walk covers (Dir.Subtree) costs nothing when a tree anchor above it on
// its mount is near enough (coverDepth, coverBytes): the programs climb to
// that anchor. Any other directory becomes an anchor, which the watched
// map takes, the whole batch in one call where the kernel can. An anchor
// tracked before under another path (a rename) keeps its key under the new
// path.
func (t *Tracer) Track(ds ...watch.Dir) error {
	if t.rung == nil || len(ds) == 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	var keys []dirwatchDwKey
	var adds []anchor
	var above treeAbove
	for _, d := range ds {
		k, err := t.keyOfLocked(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("track %s: %w", d.Path, err))
			continue
		}
		if old, ok := t.keyOfPathLocked(d.Path); ok && old != k {
			// Another directory now has this path: forget the old one.
			t.forgetLocked(d.Path)
		}
		if d.Subtree && t.coveredLocked(d, &above) {
			continue
		}
		keys = append(keys, k)
		adds = append(adds, anchor{path: d.Path, tree: d.Subtree, mnt: d.MntID})
	}
	for i, err := range t.watchLocked(keys, adds) {
		if err != nil {
			errs = append(errs, fmt.Errorf("track %s: %w", adds[i].path, err))
			continue
		}
		k, a := keys[i], adds[i]
		if old, ok := t.byKey[k]; ok && old.path != a.path {
			t.delPathLocked(old.path)
		}
		t.byKey[k] = a
		t.setPathLocked(a.path, k)
	}
	t.rootPrefixLocked()
	return errors.Join(errs...)
}

// treeAbove remembers the tree anchor found above one directory (dir, ""
// before the first look): the directories of a batch mostly share their
// parent.
type treeAbove struct {
	dir, path string
	a         anchor
	ok        bool
}

// coveredLocked reports whether a tree anchor above d, on d's mount, is
// near enough to cover d's subdirectories.
func (t *Tracer) coveredLocked(d watch.Dir, above *treeAbove) bool {
	if d.MntID == 0 {
		return false // before 5.8 mounts cannot be told apart
	}
	parent := filepath.Dir(d.Path)
	if above.dir != parent {
		above.a, above.path, above.ok = t.treeAboveLocked(parent)
		above.dir = parent
	}
	if !above.ok || above.a.mnt != d.MntID {
		return false
	}
	rel := strings.TrimPrefix(d.Path, above.path)
	return strings.Count(rel, "/") <= coverDepth && len(rel) <= coverBytes
}

// treeAboveLocked returns the nearest tree anchor at dir or above it, and
// its path.
func (t *Tracer) treeAboveLocked(dir string) (anchor, string, bool) {
	for p := dir; ; p = filepath.Dir(p) {
		if k, ok := t.keyOfPathLocked(p); ok {
			if a := t.byKey[k]; a.tree {
				return a, p, true
			}
		}
		if p == "/" || p == "." {
			return anchor{}, "", false
		}
	}
}

// watchLocked puts keys in the watched map with the cover of as, in one
// batch when the kernel takes batches (5.6), and returns each key's error.
func (t *Tracer) watchLocked(keys []dirwatchDwKey, as []anchor) []error {
	errs := make([]error, len(keys))
	vals := make([]uint8, len(keys))
	for i, a := range as {
		vals[i] = watchDir
		if a.tree {
			vals[i] = watchTree
		}
	}
	done := 0
	if len(keys) > 1 {
		// On failure, count says how many went in; the rest go one by one.
		done, _ = t.watched().BatchUpdate(keys, vals, &ebpf.BatchOptions{ElemFlags: uint64(ebpf.UpdateAny)})
	}
	for i := done; i < len(keys); i++ {
		errs[i] = t.watched().Update(&keys[i], vals[i], ebpf.UpdateAny)
	}
	if len(keys) > 0 {
		t.anchorsChangedLocked()
	}
	return errs
}

// anchorsChangedLocked counts an update of the watched map, after it, so
// that the programs forget the directories they found no watch covering:
// the new anchors may cover some.
func (t *Tracer) anchorsChangedLocked() {
	t.anchorGen++
	if err := t.rung.coll.Maps[dirwatchMapGenerations].Update(genAnchors, t.anchorGen, ebpf.UpdateAny); err != nil {
		// An array's slot: only a closed map refuses it.
		t.log.Error("count a change of the watched directories: directories made where no watch was may go unreported until a rename",
			"error", err)
	}
}

// pathHash is a path's key in the prefixes map: FNV-1a, as the programs
// hash it.
func pathHash(p string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	return h.Sum64()
}

// rootPrefixLocked has the prefixes map hold "/" when every absolute path
// may be in a watch: a tree anchor at "/", or a prefix the map refused.
func (t *Tracer) rootPrefixLocked() {
	if t.rung == nil || t.hook != HookTracepoint {
		return
	}
	k, ok := t.keyOfPathLocked("/")
	want := t.prefixFull || ok && t.byKey[k].tree
	if want == t.rootPrefix {
		return
	}
	m := t.rung.coll.Maps[dirwatchMapPrefixes]
	var err error
	if want {
		err = m.Update(pathHash("/"), uint8(1), ebpf.UpdateAny)
	} else {
		err = m.Delete(pathHash("/"))
	}
	if err != nil {
		t.log.Warn("prefix map: /", "error", err)
		return
	}
	t.rootPrefix = want
}

// Untrack stops reporting changes in dir and every tracked directory
// below it.
func (t *Tracer) Untrack(dir string) {
	if t.rung == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.untrackLocked(dir)
	t.rootPrefixLocked()
}

func (t *Tracer) untrackLocked(dir string) {
	for _, p := range t.subtreeLocked(dir) {
		t.forgetLocked(p)
	}
}

// subtreeLocked returns dir, if tracked, and the tracked directories
// below it.
func (t *Tracer) subtreeLocked(dir string) []string {
	var out []string
	if _, ok := t.keyOfPathLocked(dir); !ok && t.children[dir] == nil {
		// Not indexed under dir: whatever is tracked below it hangs from a
		// directory that is not, which only a scan finds.
		for _, kids := range t.children {
			for p := range kids {
				if mountinfo.Under(p, dir) {
					out = append(out, p)
				}
			}
		}
		return out
	}
	stack := []string{dir}
	for len(stack) > 0 {
		q := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := t.keyOfPathLocked(q); ok {
			out = append(out, q)
		}
		for c := range t.children[q] {
			stack = append(stack, c)
		}
	}
	return out
}

// keyOfPathLocked returns the key tracked at path p.
func (t *Tracer) keyOfPathLocked(p string) (dirwatchDwKey, bool) {
	k, ok := t.children[filepath.Dir(p)][p]
	return k, ok
}

func (t *Tracer) setPathLocked(p string, k dirwatchDwKey) {
	parent := filepath.Dir(p)
	kids := t.children[parent]
	if kids == nil {
		kids = make(map[string]dirwatchDwKey)
		t.children[parent] = kids
	}
	if _, had := kids[p]; !had && p != "/" {
		t.prefixLocked(p, 1)
	}
	kids[p] = k
}

func (t *Tracer) delPathLocked(p string) {
	parent := filepath.Dir(p)
	if kids := t.children[parent]; kids != nil {
		if _, had := kids[p]; had && p != "/" {
			t.prefixLocked(p, -1)
		}
		delete(kids, p)
		if len(kids) == 0 {
			delete(t.children, parent)
		}
	}
}

// prefixLocked counts one more (delta 1) or one fewer (-1) anchor at path
// p in the syscall rung's prefixes map, which holds each path's hash while
// some anchor has it. Should the map be full, "/" goes in: every record
// then wakes the reader, as when nothing is known.
//
// "/" is not counted there: an anchor at "/" that covers only its own
// entries (the deepest existing ancestor of a watch whose directories do
// not exist yet) would make every record wake the reader, for mkdirs in
// "/" only, which the syscall rung checks by the base directory when the
// path is relative, and inotify reports at once. rootPrefixLocked puts it
// in when a tree anchor is at "/", or the map is full.
func (t *Tracer) prefixLocked(p string, delta int) {
	if t.rung == nil || t.hook != HookTracepoint {
		return
	}
	sum := pathHash(p)
	n := t.prefixN[sum] + delta
	switch {
	case n == 1 && delta == 1:
		if err := t.rung.coll.Maps[dirwatchMapPrefixes].Update(sum, uint8(1), ebpf.UpdateAny); err != nil {
			t.log.Warn("prefix map: every record wakes the reader", "dir", p, "error", err)
			t.prefixFull = true
			t.rootPrefixLocked()
		}
	case n == 0:
		if err := t.rung.coll.Maps[dirwatchMapPrefixes].Delete(sum); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.log.Warn("prefix map", "dir", p, "error", err)
		}
	}
	if n == 0 {
		delete(t.prefixN, sum)
	} else {
		t.prefixN[sum] = n
	}
}

func (t *Tracer) forgetLocked(p string) {
	k, _ := t.keyOfPathLocked(p)
	t.delPathLocked(p)
	if t.byKey[k].path == p {
		delete(t.byKey, k)
		if t.rung == nil {
			return
		}
		if err := t.watched().Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.log.Warn("untrack", "dir", p, "error", err)
		}
	}
}

// tracked returns the anchors' paths, for tests.
func (t *Tracer) tracked() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]bool, len(t.byKey))
	for _, kids := range t.children {
		for p := range kids {
			m[p] = true
		}
	}
	return m
}

func (t *Tracer) watched() *ebpf.Map { return t.rung.coll.Maps[dirwatchMapWatched] }

// Close detaches the programs and closes Events.
func (t *Tracer) Close() error {
	t.once.Do(func() {
		close(t.done)
		if t.rd != nil {
			t.closeErr = t.rd.Close()
		}
		t.wg.Wait()
		if t.rung != nil {
			t.closeErr = errors.Join(t.closeErr, t.rung.close())
		}
		close(t.events)
	})
	return t.closeErr
}

// read turns ring-buffer records into DirEvents until Close.
func (t *Tracer) read() {
	defer t.wg.Done()
	var rec ringbuf.Record
	last := time.Now()
	for {
		t.rd.SetDeadline(time.Now().Add(lostCheck))
		err := t.rd.ReadInto(&rec)
		switch {
		case errors.Is(err, ringbuf.ErrClosed):
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
		case err != nil:
			t.log.Error("read ring buffer", "error", err)
			return
		default:
			ev, err := parseRecord(rec.RawSample)
			if err != nil {
				t.log.Warn("parse record", "error", err)
				break
			}
			if f := t.observe.Load(); f != nil {
				(*f)(ev)
			}
			for _, d := range t.convert(ev) {
				if !t.send(d) {
					return
				}
			}
		}
		if time.Since(last) >= lostCheck {
			last = time.Now()
			if !t.checkLost() {
				return
			}
		}
	}
}

// checkLost sends one Resync when the kernel dropped records since the
// last look.
func (t *Tracer) checkLost() bool {
	var per []uint64
	if err := t.rung.coll.Maps[dirwatchMapLost].Lookup(uint32(0), &per); err != nil {
		t.log.Warn("read lost counter", "error", err)
		return true
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	if prev := t.lost.Swap(n); n > prev {
		t.log.Warn("kernel dropped directory events: resync", "hook", t.hook, "lost", n-prev)
		return t.send(watch.DirEvent{Op: watch.Resync, Source: t.source()})
	}
	return true
}

func (t *Tracer) send(d watch.DirEvent) bool {
	select {
	case t.events <- d:
		return true
	case <-t.done:
		return false
	}
}
