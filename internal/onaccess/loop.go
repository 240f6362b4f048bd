package onaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/alert"
	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/verdict"
)

// Source delivers fanotify events (a *fanotify.Group).
type Source interface {
	// ReadEvents blocks until events arrive or the source is woken. It
	// may be called while an earlier call is blocked in InRead.
	ReadEvents(dst []fanotify.Event) ([]fanotify.Event, error)
	// PendingEvents returns what is queued, without waiting.
	PendingEvents(dst []fanotify.Event) ([]fanotify.Event, error)
	// InRead returns a number for the read(2) of ReadEvents in the kernel,
	// the same until it returns, or 0 when none is.
	InRead() uint64
}

// Responder answers permission events (a *fanotify.Group).
type Responder interface {
	Respond(fd int, allow bool) error
}

// Ignorer keeps the kernel quiet about clean, unmodified files (a
// *fanotify.Group). Optional.
type Ignorer interface {
	IgnoreFile(fd int, mask uint64) error
	UnignoreFile(fd int, mask uint64) error
}

// Alerter records verdicts that matter (an *alert.Log).
type Alerter interface {
	Emit(alert.Record)
}

// State is what decides: a policy and the engine built from it. The
// daemon swaps both at once on reload.
type State struct {
	Policy *policy.Policy
	Engine scan.Engine
}

// Config wires a Loop.
type Config struct {
	Source    Source
	Responder Responder
	Ignorer   Ignorer // nil: no kernel-side clean cache
	Alerts    Alerter
	Cache     *verdict.Cache
	Log       hclog.Logger
	Workers   int
	QueueSize int // pending scans; when full, on_error decides at once
	// Counters to count in; nil for the loop's own. A daemon shares one
	// set across the loops that replace each other on reload.
	Counters *Counters
	// Quarantine moves infected files of quarantine watches away, after
	// they were denied; nil leaves them in place (blocked).
	Quarantine Quarantiner
	// Quiet takes the directories of out-of-scope opens, after they are
	// answered, to ignore-mark them; nil: every such open keeps coming.
	Quiet Quieter
	// Aliases finds the watch of a file opened through another mount of
	// a watched filesystem (a bind mount, a container's volume); nil: such
	// a file is out of scope.
	Aliases *Aliases
}

// Quarantiner takes an infected file, open at fd (its own descriptor,
// which it closes), out of reach. It must not block: the move copies and
// syncs, so it happens after the answer, off the loop. rec is the alert
// the quarantine reports when it is done.
type Quarantiner interface {
	Quarantine(fd int, path string, rec alert.Record)
}

// ignoreMask is what an ignore mark on a clean file silences.
const ignoreMask = fanotify.Permission

// Loop is the permission loop: Workers+1 goroutines, one of which reads
// at any time. The reader settles what it can at once (own process, out of
// scope, excluded, cached); the others scan what it queues.
//
// When a batch of events leaves one file to scan and a goroutine is idle,
// the reader scans that file itself: its answer then waits for no other
// thread to be woken and scheduled, which on a virtual machine costs as
// much as the rest of a clean file's decision (measured: the first open of
// a clean file took about 30% less time). The reading must never wait on
// a scan (a file on a hung FUSE or NFS mount would stall every open), so
// a relief goroutine checks the reader every reliefTick and, when one
// inline scan has lasted that long, takes the reading from it and hands
// it to an idle goroutine or a new one; the old reader finishes its scan
// as a worker. Nor may it wait on the kernel, which opens each event's
// file inside read(2), on that file's filesystem: a read(2) that lasts
// stuckReadTicks loses the reading the same way (found within stuckCheck
// more when the relief sleeps), the next reader reads beside it, and the
// old one queues what it read once the read returns. Every event is
// answered by its deadline by the watchdog once it is read.
type Loop struct {
	cfg   Config
	log   hclog.Logger
	state atomic.Pointer[State]
	queue chan *request
	self  int32
	id    uint64 // names the loop, and so its group's kernel marks, to the cache
	// queueMu guards sending on queue against its closing: a former
	// reader may still queue what it read after the loop has ended.
	queueMu     sync.RWMutex
	queueClosed bool

	draining atomic.Bool
	counters *Counters
	oversize seenKeys // files over max_file_size logged
	execs    execs    // infected files an alert watch let a process execute
	failures logLimit // log lines of on_error decisions
	// detections: log lines of infected files blocked or alerted. A
	// process opening an infected file in a loop (a crawler, a retrying
	// server) had the log take a line per open, hundreds a second, past
	// journald's rate limit, which then drops vigil's other lines too.
	detections logLimit

	// Set by Run.
	ctx     context.Context
	wd      *watchdog
	members sync.WaitGroup
	relief  *relief
	procFd  int   // /proc/self/fd, where event descriptors' paths are read
	err     error // the read loop's, set by the reader that ends it
}

// loops numbers the loops made, from 1.
var loops atomic.Uint64

// New returns a loop deciding with st until Swap.
func New(cfg Config, st *State) *Loop {
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.QueueSize < 1 {
		cfg.QueueSize = 64 * cfg.Workers
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Counters == nil {
		cfg.Counters = new(Counters)
	}
	l := &Loop{
		cfg:   cfg,
		log:   cfg.Log,
		queue: make(chan *request, cfg.QueueSize),
		self:  int32(os.Getpid()),
		id:    loops.Add(1),

		counters: cfg.Counters,
	}
	l.state.Store(st)
	return l
}

// Swap installs a new policy and engine for the events read from now on.
func (l *Loop) Swap(st *State) { l.state.Store(st) }

// State returns the policy and engine in force.
func (l *Loop) State() *State { return l.state.Load() }

// Run reads and answers events until the source fails or a Drain ends.
// When ctx is done the caller closes the source (which makes the kernel
// allow whatever is still pending), and Run returns nil. Run returns only
// after every event it read has been answered.
func (l *Loop) Run(ctx context.Context) error {
	// Links are read relative to /proc/self/fd: three components fewer to
	// look up for every event, 2.3 µs a link instead of 3.4 here.
	procFd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /proc/self/fd: %w", err)
	}
	defer unix.Close(procFd)
	l.procFd = procFd
	l.ctx = ctx
	l.wd = newWatchdog(l.expire)
	defer l.wd.stop()
	l.relief = newRelief(l)
	go l.relief.run()
	for i := range l.cfg.Workers + 1 {
		l.spawn(i == 0)
	}
	l.members.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return l.err
}

// spawn starts a member of the loop, reading or not.
func (l *Loop) spawn(reading bool) {
	l.relief.members.Add(1)
	l.members.Go(func() { l.member(reading) })
}

// member is one goroutine of the loop: it reads while it holds the
// reading, and scans otherwise.
func (l *Loop) member(reading bool) {
	rd := reader{
		events:  make([]fanotify.Event, 0, 256),
		linkBuf: make([]byte, unix.PathMax),
	}
	for {
		if reading {
			if l.read(&rd) {
				// Only the reader that ends the read loop gets here, once.
				l.relief.stop()
				l.queueMu.Lock()
				l.queueClosed = true
				close(l.queue)
				l.queueMu.Unlock()
				return
			}
			// The reading was taken from this goroutine during a scan.
			reading = false
		}
		if l.relief.surplus() {
			return
		}
		var ok bool
		if reading, ok = l.relief.wait(); !ok {
			return
		}
	}
}

// reader is a member's buffers for reading.
type reader struct {
	events  []fanotify.Event
	reqs    []*request
	linkBuf []byte
}

// Drain makes Run answer every event already queued, then return nil.
// The caller then wakes the source's blocked read (fanotify.Group.Wake).
// A group is retired this way on reload: its replacement is marked first,
// so what reaches the old group after the drain is also in the new one.
func (l *Loop) Drain() { l.draining.Store(true) }

// read reads and settles events until the read loop ends (true), setting
// l.err, or the reading is taken from it (false): during an inline scan,
// or while the kernel, opening the files of the events it reads, waits on
// a filesystem.
func (l *Loop) read(rd *reader) (ended bool) {
	rl := l.relief
	for {
		n := rl.begin(true)
		var err error
		rd.events, err = l.cfg.Source.ReadEvents(rd.events[:0])
		n, held := rl.read(n)
		reqs := rd.reqs[:0]
		for _, ev := range rd.events {
			if r := l.handle(ev, rd.linkBuf); r != nil {
				reqs = append(reqs, r)
			}
		}
		rd.reqs = reqs[:0]
		if !held || !rl.end(n) {
			// Another member reads now: what this one read is queued
			// all the same, within the loop's bound of scans.
			for _, r := range reqs {
				l.enqueue(r)
			}
			clear(reqs)
			if isOutOfFds(err) {
				l.counters.NoFd.Add(1)
			}
			return false
		}
		// Every request but the batch's last is queued; the last is
		// scanned here if a goroutine is idle to take the reading.
		if len(reqs) > 0 {
			last := reqs[len(reqs)-1]
			for _, r := range reqs[:len(reqs)-1] {
				l.enqueue(r)
			}
			clear(reqs)
			if err == nil && !l.draining.Load() && rl.canInline(last) {
				n := rl.begin(false)
				l.scan(last)
				last.close(l)
				if !rl.end(n) {
					return false
				}
			} else {
				l.enqueue(last)
			}
		}
		switch {
		case err == nil:
		case l.draining.Load():
			l.err = l.drain(rd)
			return true
		case l.ctx.Err() != nil:
			return true
		case isOutOfFds(err):
			l.outOfFds()
		default:
			l.err = err
			return true
		}
	}
}

func isOutOfFds(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// outOfFds handles a read that failed because the kernel could not open
// the event's file for vigil: that event was denied by the kernel. It is
// counted, logged once per doubling, and reading goes on after a pause
// for descriptors to be freed.
func (l *Loop) outOfFds() {
	n := l.counters.NoFd.Add(1)
	if n&(n-1) == 0 {
		l.log.Error("out of file descriptors: the kernel denied events it could not hand over", "count", n)
	}
	time.Sleep(fdPause)
}

// fdPause is how long reading waits after running out of descriptors.
const fdPause = 10 * time.Millisecond

func (l *Loop) drain(rd *reader) error {
	for {
		var err error
		rd.events, err = l.cfg.Source.PendingEvents(rd.events[:0])
		for _, ev := range rd.events {
			if r := l.handle(ev, rd.linkBuf); r != nil {
				l.enqueue(r)
			}
		}
		if err != nil || len(rd.events) == 0 {
			return err
		}
	}
}

// enqueue queues r for a scan, or answers it with on_error at once when
// the queue is full. Once the loop has ended, no worker takes r: it is
// scanned here.
func (l *Loop) enqueue(r *request) {
	queued, closed := l.send(r)
	switch {
	case queued:
		return
	case closed:
		l.scan(r)
	default:
		l.fail(r, errQueueFull)
	}
	r.close(l)
}

func (l *Loop) send(r *request) (queued, closed bool) {
	l.queueMu.RLock()
	defer l.queueMu.RUnlock()
	if l.queueClosed {
		return false, true
	}
	select {
	case l.queue <- r:
		return true, false
	default:
		return false, false
	}
}

// handle settles an event at once, or returns a request for it to scan,
// already watched by the watchdog. It must leave every permission event
// either answered or owned by a request.
func (l *Loop) handle(ev fanotify.Event, linkBuf []byte) *request {
	if ev.Overflow() {
		n := l.counters.Overflows.Add(1)
		// Power-of-two logging: loud enough to notice, never a flood.
		if n&(n-1) == 0 {
			l.log.Warn("fanotify queue overflow: events were lost", "count", n)
		}
		return nil
	}
	if ev.Fd < 0 {
		// No descriptor (the kernel could not open the file): nothing to
		// respond to, the kernel has already decided.
		l.counters.NoFd.Add(1)
		return nil
	}
	if !ev.IsPermission() {
		if ev.Mask&unix.FAN_CLOSE_WRITE != 0 {
			l.counters.CloseWrites.Add(1)
			l.rewritten(ev.Fd)
		}
		unix.Close(ev.Fd)
		return nil
	}
	l.counters.Events.Add(1)
	switch {
	case ev.Mask&unix.FAN_OPEN_EXEC_PERM != 0:
		l.counters.Execs.Add(1)
	case ev.Mask&unix.FAN_ACCESS_PERM != 0:
		l.counters.Accesses.Add(1)
	default:
		l.counters.Opens.Add(1)
	}
	start := time.Now()
	if ev.Pid == l.self {
		l.settle(ev.Fd, true)
		l.counters.Self.Add(1)
		return nil
	}
	st := l.state.Load()
	var sb unix.Statx_t
	if err := fstatx(ev.Fd, eventStatx, &sb); err != nil {
		l.settle(ev.Fd, st.Policy.Settings.OnError == policy.OnErrorAllow)
		l.counters.Errors.Add(1)
		l.log.Error("stat event file", "pid", ev.Pid, "error", err)
		return nil
	}
	if sb.Mode&unix.S_IFMT != unix.S_IFREG {
		// FIFOs, sockets and devices are never read.
		l.settle(ev.Fd, true)
		l.counters.Skipped.Add(1)
		return nil
	}
	var (
		w        *policy.Watch
		excluded bool
	)
	path, err := l.fdPath(ev.Fd, linkBuf, sb.Nlink == 0)
	switch {
	case errors.Is(err, unix.ENAMETOOLONG):
		// Deeper than PATH_MAX, the path cannot be told, nor its watch; a
		// mark fired, so a watch holds the file.
		w, path = unnamed(st.Policy.Settings), ""
	case err != nil:
		l.settle(ev.Fd, st.Policy.Settings.OnError == policy.OnErrorAllow)
		l.counters.Errors.Add(1)
		l.log.Error("resolve event path", "pid", ev.Pid, "error", err)
		return nil
	default:
		w, excluded, path = l.match(st.Policy, ev, path, &sb)
	}
	if w == nil && path != "" && l.cfg.Aliases != nil {
		// Reached through another mount: decided, reported and
		// quarantined by its path under the watch, which names it here.
		if alias, ok := l.cfg.Aliases.Resolve(st.Policy, path, verdict.DevOf(&sb), ev.Pid); ok {
			path = alias
			w, excluded = st.Policy.Match(path)
		}
	}
	if w == nil && path != "" && l.cfg.Quiet != nil {
		l.settle(ev.Fd, true)
		l.counters.Excluded.Add(1)
		l.cfg.Quiet.Offer(filepath.Dir(path))
		return nil
	}
	if w == nil || excluded || !wants(w.On, ev.Mask) || l.excludedProcess(st.Policy, ev.Pid) {
		l.settle(ev.Fd, true)
		l.counters.Excluded.Add(1)
		return nil
	}
	key := verdict.KeyOf(ev.Fd, &sb)
	if ev.Mask&unix.FAN_OPEN_EXEC_PERM == 0 && w.Action == policy.ActionAlert && l.execs.take(ev.Pid, key) {
		// The open that follows an exec the watch alerted: the same
		// verdict, alerted once.
		l.settle(ev.Fd, true)
		return nil
	}
	size := int64(sb.Size)
	if size > w.MaxFileSize {
		// No ignore mark: the skip is the watch's, not the file's, and a
		// hard link may put the file in a watch that scans it.
		if l.oversize.first(key) {
			l.log.Info("file over max_file_size not scanned", "path", path, "size", size,
				"max_file_size", w.MaxFileSize, "pid", ev.Pid)
		}
		l.settle(ev.Fd, true)
		l.counters.Skipped.Add(1)
		return nil
	}
	if size <= scan.TooSmall {
		// No ignore mark: the file is most often empty, opened to be
		// written.
		l.settle(ev.Fd, true)
		l.counters.Skipped.Add(1)
		return nil
	}
	if l.cfg.Cache != nil && l.cfg.Cache.Clean(key, st.Engine.Version(), l.id) {
		// A verdict of the group before a reload, or one the kernel could
		// not mark: mark it now.
		l.keep(ev.Fd, key, st.Engine.Version())
		l.settle(ev.Fd, true)
		l.counters.CacheHits.Add(1)
		return nil
	}
	r := &request{
		exec:  ev.Mask&unix.FAN_OPEN_EXEC_PERM != 0,
		fd:    ev.Fd,
		pid:   ev.Pid,
		path:  path,
		watch: w,
		state: st,
		key:   key,
		size:  size,
		start: start,
	}
	// The watchdog answers by the deadline whatever happens to the scan.
	// It watches r before another goroutine can see it, so that r.close
	// always finds it there.
	r.deadline = start.Add(st.Policy.Settings.ScanTimeout)
	l.wd.add(r)
	return r
}

// match finds the watch of the file of ev, which the kernel names path,
// and returns the path to decide and report by: "" with no watch for a
// file of another mount namespace outside every watch, whose path means
// nothing here.
func (l *Loop) match(pol *policy.Policy, ev fanotify.Event, path string, sb *unix.Statx_t) (*policy.Watch, bool, string) {
	if l.cfg.Aliases != nil {
		if sb.Mask&unix.STATX_MNT_ID != 0 {
			p, at := l.cfg.Aliases.Through(pol, sb.Mnt_id, path, verdict.DevOf(sb), ev.Pid)
			switch at {
			case UnderWatch:
				path = p
			case OutsideWatches:
				return nil, false, ""
			case UnknownMount:
				// A mark fired, so a watch may hold the file: scanned as
				// a file whose path is too long to be told.
				return unnamed(pol.Settings), false, path
			}
		}
	}
	w, excluded := pol.Match(path)
	return w, excluded, path
}

// unnamed is the watch of a file whose path is too long to be told: it
// is scanned with the settings' max_file_size and on_error, on every
// event, and blocked if infected, whatever the watch that holds it would
// have excluded. A path cannot evade the scan by its length.
func unnamed(s policy.Settings) *policy.Watch {
	return &policy.Watch{
		Action:      policy.ActionBlock,
		On:          policy.EventOpen | policy.EventExec | policy.EventAccess,
		OnError:     s.OnError,
		MaxFileSize: s.MaxFileSize,
	}
}

// logLimit keeps a log readable when every open fails (clamd down, a full
// queue), or is of an infected file: logBurst lines a second at most.
// The lines held back are counted, and the next line logged says how
// many; the alert log and the counters still have every one.
type logLimit struct {
	mu     sync.Mutex
	second time.Time // when the current second began
	lines  int       // logged in it
	held   int       // not logged since the last line
}

const logBurst = 10

// take reports whether a line may be logged at now, and how many were
// held back before it.
func (ll *logLimit) take(now time.Time) (ok bool, held int) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if now.Sub(ll.second) >= time.Second {
		ll.second, ll.lines = now, 0
	}
	if ll.lines >= logBurst {
		ll.held++
		return false, 0
	}
	ll.lines++
	held, ll.held = ll.held, 0
	return true, held
}

// seenKeys remembers file versions, up to maxSeenKeys at a time: a file
// opened again and again is logged once for each version.
type seenKeys struct {
	mu   sync.Mutex
	seen map[verdict.Key]struct{}
}

const maxSeenKeys = 4096

// first reports whether k is new, and remembers it.
func (s *seenKeys) first(k verdict.Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[k]; ok {
		return false
	}
	if s.seen == nil || len(s.seen) >= maxSeenKeys {
		s.seen = make(map[verdict.Key]struct{})
	}
	s.seen[k] = struct{}{}
	return true
}

// execs remembers, by process, the infected file an alert watch just let
// it execute, until the open of that exec asks too.
type execs struct {
	mu   sync.Mutex
	last map[int32]verdict.Key
}

// maxExecs bounds the processes remembered: an exec whose open never
// asks (the kernel denied it for another group) leaves an entry behind.
const maxExecs = 1024

func (e *execs) put(pid int32, k verdict.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last == nil || len(e.last) >= maxExecs {
		e.last = make(map[int32]verdict.Key)
	}
	e.last[pid] = k
}

// take reports whether pid was let execute k's file, and forgets it.
func (e *execs) take(pid int32, k verdict.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if got, ok := e.last[pid]; !ok || got != k {
		return false
	}
	delete(e.last, pid)
	return true
}

var (
	errTimeout   = errors.New("scan timed out")
	errQueueFull = errors.New("scan queue full")
)

// settle answers an event that needs no scan and releases its descriptor.
func (l *Loop) settle(fd int, allow bool) {
	if err := l.cfg.Responder.Respond(fd, allow); err != nil {
		l.counters.RespondErrors.Add(1)
		l.log.Error("respond", "error", err)
	}
	l.counters.count(allow)
	unix.Close(fd)
}

func (l *Loop) scan(r *request) {
	if err := l.ctx.Err(); err != nil {
		l.fail(r, err)
		return
	}
	ctx, cancel := context.WithCancelCause(l.ctx)
	defer cancel(nil)
	if !r.startScan(cancel) {
		return // the deadline answered first
	}
	r.file = os.NewFile(uintptr(r.fd), r.path)
	res, err := r.state.Engine.Scan(scanContext{ctx, r.deadline}, r.file)
	l.counters.Scans.Add(1)
	switch {
	case err != nil:
		l.fail(r, err)
	case res.Infected:
		l.infected(r, res.Signature)
	default:
		l.clean(r)
	}
}

// scanContext is what an engine scans under: the loop's context, with the
// request's deadline, canceled by the watchdog when it answers the
// request at that deadline. A context.WithDeadline per scan would arm and
// stop a runtime timer for every event, and arming one wakes an idle
// thread to watch it: on a stream of first opens of clean files that cost
// the daemon about 13% more CPU per event, and each open about 7% more
// time (measured).
type scanContext struct {
	context.Context
	deadline time.Time
}

func (c scanContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (l *Loop) clean(r *request) {
	l.keep(r.fd, r.key, r.state.Engine.Version())
	r.respond(l, true)
}

// keep records a clean verdict: a kernel ignore mark, then an entry in
// the cache, owned by this loop when the mark was placed. The mark is
// checked first: a write between the scan and the mark would not clear a
// mark that did not exist yet, so a file changed meanwhile keeps neither.
func (l *Loop) keep(fd int, key verdict.Key, version string) {
	var owner uint64
	if l.cfg.Ignorer != nil {
		if err := l.cfg.Ignorer.IgnoreFile(fd, ignoreMask); err != nil {
			l.counters.IgnoreErrors.Add(1)
		} else {
			owner = l.id
		}
	}
	if owner != 0 {
		var sb unix.Statx_t
		if err := fstatx(fd, verdict.StatxMask, &sb); err != nil || !key.Unchanged(&sb) {
			if err := l.cfg.Ignorer.UnignoreFile(fd, ignoreMask); err != nil {
				l.log.Error("remove ignore mark from changed file", "error", err)
			}
			if l.cfg.Cache != nil {
				l.cfg.Cache.Forget(key)
			}
			return
		}
	}
	if l.cfg.Cache != nil {
		l.cfg.Cache.Add(key, version, owner)
	}
}

// rewritten drops the clean verdict of a file that a writer closed. A
// write through a shared mapping raises no modification event: the
// kernel keeps the ignore mark, and tmpfs keeps the file's times, so the
// cache would take it for the file it scanned. The writer's close (its
// last reference, after munmap) is what tells: the next open scans again.
func (l *Loop) rewritten(fd int) {
	if l.cfg.Ignorer != nil {
		if err := l.cfg.Ignorer.UnignoreFile(fd, ignoreMask); err != nil {
			l.counters.IgnoreErrors.Add(1)
			l.log.Error("remove ignore mark from rewritten file", "error", err)
		}
	}
	var sb unix.Statx_t
	if l.cfg.Cache != nil && fstatx(fd, unix.STATX_INO, &sb) == nil {
		l.cfg.Cache.Forget(verdict.Key{Dev: verdict.DevOf(&sb), Ino: sb.Ino})
	}
}

func (l *Loop) infected(r *request, signature string) {
	block := r.watch.Action != policy.ActionAlert
	who := openerOf(r.pid)
	// The kernel asks FAN_OPEN_PERM of an exec right after its
	// FAN_OPEN_EXEC_PERM is allowed: told before the answer, the reader
	// settles it without a second scan and alert.
	execOpen := !block && r.exec && r.watch.On&policy.EventOpen != 0
	if execOpen {
		l.execs.put(r.pid, r.key)
	}
	if !r.respond(l, !block) {
		if execOpen {
			l.execs.take(r.pid, r.key)
		}
		return // the deadline answered first
	}
	action := alert.ActionAlerted
	if block {
		action = alert.ActionBlocked
		l.counters.Blocked.Add(1)
	} else {
		l.counters.Alerted.Add(1)
	}
	rec := l.record(r, action, who)
	rec.Signature = signature
	if r.watch.Action == policy.ActionQuarantine && l.quarantine(r, rec) {
		return // the quarantine reports the alert once the file is moved
	}
	l.cfg.Alerts.Emit(rec)
	ok, held := l.detections.take(time.Now())
	if !ok {
		return
	}
	args := []any{"path", r.path, "signature", signature, "pid", r.pid,
		"uid", rec.UID, "exe", rec.Exe, "engine", r.state.Engine.Name(), "elapsed", time.Since(r.start)}
	if held > 0 {
		args = append(args, "not_logged_before", held)
	}
	l.log.Warn("infected file "+action, args...)
}

// quarantine hands a descriptor of its own for the denied file to the
// quarantine. The duplicate shares the event's open file, so reading it
// raises no event either.
func (l *Loop) quarantine(r *request, rec alert.Record) bool {
	if l.cfg.Quarantine == nil {
		return false
	}
	fd, err := unix.FcntlInt(uintptr(r.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		l.log.Error("quarantine: duplicate descriptor: the file stays in place, blocked", "path", r.path, "error", err)
		return false
	}
	l.cfg.Quarantine.Quarantine(fd, r.path, rec)
	return true
}

// fail answers with the watch's on_error verdict.
func (l *Loop) fail(r *request, cause error) {
	who := openerOf(r.pid)
	if r.respond(l, r.watch.OnError == policy.OnErrorAllow) {
		l.countFailure(cause)
		l.reportFailure(r, cause, who)
	}
}

// expire answers requests past their deadline, all of them before the
// alerts and logs, which may be slow. Their openers are asked for first,
// as in infected: one denied is often gone right after.
func (l *Loop) expire(rs []*request) {
	who := make([]opener, len(rs))
	for i, r := range rs {
		who[i] = openerOf(r.pid)
	}
	n := 0
	for i, r := range rs {
		if r.respond(l, r.watch.OnError == policy.OnErrorAllow) {
			r.stopScan(errTimeout)
			l.countFailure(errTimeout)
			rs[n], who[n] = r, who[i]
			n++
		}
	}
	for i, r := range rs[:n] {
		l.reportFailure(r, errTimeout, who[i])
	}
}

func (l *Loop) countFailure(cause error) {
	l.counters.Errors.Add(1)
	switch {
	case errors.Is(cause, errTimeout) || errors.Is(cause, context.DeadlineExceeded):
		l.counters.Timeouts.Add(1)
	case errors.Is(cause, errQueueFull):
		l.counters.QueueFull.Add(1)
	}
}

// reportFailure alerts and logs an event that on_error decided.
func (l *Loop) reportFailure(r *request, cause error, who opener) {
	allow := r.watch.OnError == policy.OnErrorAllow
	rec := l.record(r, alert.ActionError, who)
	rec.Error = cause.Error()
	l.cfg.Alerts.Emit(rec)
	ok, held := l.failures.take(time.Now())
	if !ok {
		return
	}
	args := []any{"path", r.path, "verdict", verdictName(allow), "pid", r.pid, "engine", r.state.Engine.Name(), "error", cause}
	if held > 0 {
		args = append(args, "not_logged_before", held)
	}
	l.log.Error("scan failed, on_error decides", args...)
}

// record is the alert for r's verdict, opened by who.
func (l *Loop) record(r *request, action string, who opener) alert.Record {
	return alert.Record{
		Time:   time.Now(),
		Action: action,
		Path:   r.path,
		PID:    r.pid,
		UID:    who.uid,
		Exe:    who.exe,
		Watch:  r.watch.Path,
		Engine: r.state.Engine.Name(),
	}
}

func (l *Loop) excludedProcess(p *policy.Policy, pid int32) bool {
	if !p.HasProcessExcludes() {
		return false
	}
	who := openerOf(pid)
	if p.ExcludedProcess(who.uid, "") {
		return true
	}
	return p.ExcludedProcess(who.uid, who.exe) && runs(pid, who.exe)
}

// runs reports whether process pid runs the file that vigil finds at
// exe. /proc/PID/exe names the program by its path in the process's own
// mount namespace, which a user namespace lets any user fill: cat bind
// mounted over an excluded program's path there reads as that program.
func runs(pid int32, exe string) bool {
	var running, named unix.Stat_t
	if unix.Stat(procFile(pid, "exe"), &running) != nil || unix.Stat(exe, &named) != nil {
		return false
	}
	return running.Dev == named.Dev && running.Ino == named.Ino
}

// Counters returns a snapshot of the loop's counters.
func (l *Loop) Counters() Snapshot { return l.counters.Snapshot() }

// wants reports whether a watch asked for any event in mask.
func wants(on policy.Events, mask uint64) bool {
	return mask&unix.FAN_OPEN_PERM != 0 && on&policy.EventOpen != 0 ||
		mask&unix.FAN_OPEN_EXEC_PERM != 0 && on&policy.EventExec != 0 ||
		mask&unix.FAN_ACCESS_PERM != 0 && on&policy.EventAccess != 0
}

func verdictName(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// eventStatx is what handle asks of an event's file, in one statx: its
// type and link count, what its verdict key holds, and the mount it was
// opened through.
const eventStatx = verdict.StatxMask | unix.STATX_NLINK | unix.STATX_MNT_ID

// fstatx is fstat(2) by statx(2), for the fields of mask (and whatever
// else the filesystem gives at no cost).
func fstatx(fd int, mask int, st *unix.Statx_t) error {
	return unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT, mask, st)
}

// fdPath is the path the file was opened by. A deleted file's link ends in
// " (deleted)", which is not part of its name.
func (l *Loop) fdPath(fd int, buf []byte, deleted bool) (string, error) {
	n, err := unix.Readlinkat(l.procFd, strconv.Itoa(fd), buf)
	if err != nil {
		return "", fmt.Errorf("readlink fd %d: %w", fd, err)
	}
	p := string(buf[:n])
	if deleted {
		p = strings.TrimSuffix(p, " (deleted)")
	}
	return p, nil
}

// opener is the process that opened an event's file.
type opener struct {
	uid uint32 // ^0 when unknown
	exe string // "" when unknown
}

// openerOf looks pid up in /proc; the owner of /proc/PID is the process's
// effective uid. Ask before answering the event when the process must be
// named: it waits for the answer until then, and is often gone right
// after it (a denied open ends most programs).
func openerOf(pid int32) opener {
	dir := "/proc/" + strconv.Itoa(int(pid))
	o := opener{uid: ^uint32(0)}
	var sb unix.Stat_t
	if unix.Stat(dir, &sb) == nil {
		o.uid = sb.Uid
	}
	o.exe, _ = os.Readlink(dir + "/exe")
	return o
}

// request is an event waiting for a scan. Exactly one of the worker and
// the watchdog answers it; the descriptor is closed only after the
// answer, under the same lock, so no response can name a reused fd.
type request struct {
	prev, next *request // in the watchdog's list, under its lock
	watched    bool

	mu       sync.Mutex
	done     bool
	closed   bool
	cancel   context.CancelCauseFunc // the scan's, once it started
	fd       int
	file     *os.File
	pid      int32
	path     string
	watch    *policy.Watch
	state    *State
	key      verdict.Key
	exec     bool // FAN_OPEN_EXEC_PERM
	size     int64
	start    time.Time
	deadline time.Time
}

// respond answers the event unless it was answered already; it reports
// whether this call answered.
func (r *request) respond(l *Loop, allow bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.closed {
		return false
	}
	r.done = true
	if err := l.cfg.Responder.Respond(r.fd, allow); err != nil {
		l.counters.RespondErrors.Add(1)
		l.log.Error("respond", "path", r.path, "error", err)
	}
	l.counters.count(allow)
	l.counters.observe(time.Since(r.start))
	return true
}

// startScan records the cancel of r's scan, for the watchdog; false when
// r was answered already, and is not to be scanned.
func (r *request) startScan(cancel context.CancelCauseFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return false
	}
	r.cancel = cancel
	return true
}

// stopScan cancels r's scan, if it started.
func (r *request) stopScan(cause error) {
	r.mu.Lock()
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel(cause)
	}
}

// close releases the descriptor once the request can no longer be
// answered by anyone: the worker is done with it and the watchdog lets it
// go (or has already answered it).
func (r *request) close(l *Loop) {
	l.wd.remove(r)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.file != nil {
		r.file.Close()
	} else {
		unix.Close(r.fd)
	}
}

// QueueDepth is the number of requests waiting for a worker.
func (l *Loop) QueueDepth() int { return len(l.queue) }
