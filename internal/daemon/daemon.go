package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/alert"
	"github.com/vigilsec/vigil/internal/dirtrace"
	"github.com/vigilsec/vigil/internal/fandir"
	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/inotify"
	"github.com/vigilsec/vigil/internal/metrics"
	"github.com/vigilsec/vigil/internal/onaccess"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/verdict"
	"github.com/vigilsec/vigil/internal/watch"
)

// ErrPolicy means the policy did not load; its diagnostics were written.
var ErrPolicy = errors.New("policy has errors")

// Options configure Run.
type Options struct {
	PolicyFile string
	Version    string
	// Hook forces a rung of the eBPF hook ladder; "" picks the best that
	// works here. A forced rung that fails stops the daemon.
	Hook dirtrace.Hook
	Log  hclog.Logger
	// Diagnostics receives policy errors and warnings with their source,
	// as text. When it is nil they are logged instead, a record each with
	// the file, line and column: for logs that machines read (JSON).
	Diagnostics io.Writer
	// Reload asks for the policy and databases to be loaded again (SIGHUP).
	Reload <-chan struct{}
	// Reopen asks for the alert log to be reopened after rotation (SIGUSR1).
	Reopen <-chan struct{}
	// Started is when the process started (now, if zero): status reports
	// it, and the ready line how long the start took.
	Started time.Time
}

// cacheSize bounds the user-space clean cache (about 100 bytes an entry).
const cacheSize = 1 << 16

// Run serves until ctx is done. It returns ErrPolicy (wrapped) when the
// policy does not load, and any error that stops protection.
func Run(ctx context.Context, opts Options) error {
	log := opts.Log
	if opts.Started.IsZero() {
		opts.Started = time.Now()
	}
	// Absolute from here on, for status and the logs: "policy.hcl" says
	// little to whoever does not know where vigil was started.
	file, err := filepath.Abs(opts.PolicyFile)
	if err != nil {
		return fmt.Errorf("policy %s: %w", opts.PolicyFile, err)
	}
	opts.PolicyFile = file
	pol, err := loadPolicy(opts.PolicyFile, opts.Diagnostics, log)
	if err != nil {
		return err
	}
	engine, err := NewEngine(pol, log.Named("engine"))
	if err != nil {
		return err
	}
	alerts, err := alert.Open(pol.Settings.AlertLog, log)
	if err != nil {
		return err // it names the operation and the path
	}
	defer alerts.Close()

	d := &daemon{
		reloads: make(chan chan error),
		opts:    opts,
		log:     log,
		alerts:  alerts,
		cache:   verdict.NewCache(cacheSize),
		aliases: onaccess.NewAliases(log.Named("aliases")),
		started: opts.Started,
		written: pol,
	}
	if d.links, err = newLinks(log); err != nil {
		log.Warn("links on watches' paths are not followed: reload after re-pointing one", "error", err)
	}
	defer d.links.close()
	d.metrics = d.newMetrics()
	d.metrics.MustRegister(outsideMetrics{d})
	ctl, err := listenControl(pol.Settings.ControlSocket)
	if err != nil {
		return err
	}
	defer ctl.Close()
	go d.serveControl(ctl)
	if addr := pol.Settings.MetricsListen; addr != "" {
		ln, err := metrics.Listen(addr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		go func() {
			if err := metrics.ServeListener(ctx, ln, d.metrics, log); err != nil {
				log.Error("metrics listener stopped", "error", err)
			}
		}()
	}

	inst, err := d.start(ctx, &onaccess.State{Policy: d.resolve(pol), Engine: engine})
	if err != nil {
		d.closeEngine(engine)
		if ctx.Err() != nil {
			// Asked to stop while the watches were placed: a stop
			// like any other, not a failure to start.
			log.Info("stopping", "while", "placing watches")
			return nil
		}
		return err
	}
	d.cur.Store(inst)
	defer func() {
		last := d.cur.Load()
		last.stop()
		d.closeEngine(last.loop.State().Engine)
	}()
	// The walk's buffers are garbage now, and the cross-check's once it
	// has caught up: give them back rather than keep the start-up peak as
	// the daemon's resident size. Off the way to ready: collecting the
	// start-up heap takes tens of milliseconds.
	go func() {
		debug.FreeOSMemory()
		select {
		case <-inst.watches.Settled():
			debug.FreeOSMemory()
		case <-ctx.Done():
		}
	}()
	keep := keptCaps
	if inst.quar != nil {
		keep = append(keep[:len(keep):len(keep)], quarantineCaps...)
	}
	switch err := dropCaps(keep); {
	case errors.Is(err, errCapsUnsupported):
		log.Warn("running with every capability", "error", err)
	case err != nil:
		return fmt.Errorf("drop capabilities: %w", err)
	}
	d.ready.Store(true)
	if err := notifyReady(); err != nil {
		log.Warn("notify systemd", "error", err)
	}
	log.Info("vigil ready", "policy", pol.Filename, "engine", engine.Name(), "workers", pol.Settings.Workers,
		"startup", time.Since(d.started).Round(time.Millisecond))

	// systemd's watchdog (WatchdogSec) hears from this loop only: a daemon
	// stuck here, in a reload or in a deadlock, is restarted.
	var watchdog <-chan time.Time
	if every := watchdogInterval(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-watchdog:
			if err := sdNotify("WATCHDOG=1"); err != nil {
				log.Warn("notify systemd watchdog", "error", err)
			}
		case <-ctx.Done():
			log.Info("stopping")
			return nil
		case <-opts.Reload:
			d.reloadLogged(ctx)
		case res := <-d.reloads:
			res <- d.reloadLogged(ctx)
		case <-d.links.Changed():
			if err := d.repoint(ctx); err != nil {
				d.log.Error("moving the watches to where their links lead now failed: they stay where they were", "error", err)
			}
		case <-opts.Reopen:
			if err := alerts.Reopen(); err != nil {
				log.Error("alert log rotation", "error", err)
			} else {
				log.Info("alert log reopened", "path", pol.Settings.AlertLog)
			}
		case err := <-d.cur.Load().failed:
			return fmt.Errorf("permission loop: %w", err)
		}
	}
}

type daemon struct {
	opts     Options
	log      hclog.Logger
	alerts   *alert.Log
	cache    *verdict.Cache
	aliases  *onaccess.Aliases
	counters onaccess.Counters
	started  time.Time
	ready    atomic.Bool
	cur      atomic.Pointer[instance]
	metrics  *prometheus.Registry
	reloads  chan chan error // reload requests from the control socket
	// written is the policy in force with its watches' paths as written,
	// links unresolved; links follows those. Both belong to Run's loop.
	written *policy.Policy
	links   *links // nil when links cannot be followed
}

// instance is one fanotify group with its loop and marks. A reload builds
// a complete new instance before the old one is retired.
type instance struct {
	group   *fanotify.Group
	loop    *onaccess.Loop
	watches *watch.Manager
	sources watch.Sources
	done    chan struct{} // closed when the loop has returned
	failed  chan error    // the loop's error, if it stopped on its own
	cancel  context.CancelFunc
	// stopLoop cancels the loop's scans: the loop does not stop with the
	// daemon's context, but once stop has drained it.
	stopLoop context.CancelFunc
	managed  chan struct{} // closed when the manager has returned; nil before
	hook     dirtrace.Hook
	quar     *quarantiner // nil when no watch quarantines
	outside  *outside     // nil unless ignore_out_of_scope is in force
	subs     *submounts   // nil without a filesystem-mode watch
	log      hclog.Logger
}

// start creates a group, runs its loop and places every watch. The loop
// runs before the first mark exists: an event that arrives while the
// rest is placed is answered, never left waiting.
func (d *daemon) start(ctx context.Context, st *onaccess.State) (*instance, error) {
	quar, err := newQuarantiner(st.Policy, d.alerts, d.log)
	if err != nil {
		return nil, err // it names the operation and the store
	}
	group, err := fanotify.Init(unix.FAN_CLASS_CONTENT|unix.FAN_UNLIMITED_QUEUE|unix.FAN_UNLIMITED_MARKS,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NONBLOCK)
	if errors.Is(err, unix.EPERM) {
		err = fmt.Errorf("%w (vigil run needs root: CAP_SYS_ADMIN)", err)
	}
	if err != nil {
		quar.close()
		return nil, fmt.Errorf("start permission loop: %w", err)
	}
	cfg := onaccess.Config{
		Source:    group,
		Responder: group,
		Ignorer:   group,
		Alerts:    d.alerts,
		Cache:     d.cache,
		Counters:  &d.counters,
		Log:       d.log.Named("onaccess"),
		Workers:   st.Policy.Settings.Workers,
		Aliases:   d.aliases,
	}
	if quar != nil {
		cfg.Quarantine = quar
	}
	out := startOutside(ctx, group, st.Policy, &d.counters, d.log)
	if out != nil {
		cfg.Quiet = out.quiet
	}
	loopCtx, stopLoop := context.WithCancel(context.WithoutCancel(ctx))
	inst := &instance{
		stopLoop: stopLoop,
		group:    group,
		loop:     onaccess.New(cfg, st),
		quar:     quar,
		outside:  out,
		done:     make(chan struct{}),
		failed:   make(chan error, 1),
		cancel:   func() {},
		log:      d.log,
	}
	go func() {
		defer close(inst.done)
		// Not ctx: a stop (SIGTERM) would fail every scan under way and
		// every event read after it, answered with on_error (deny, for
		// a clean file) until the group closed. stop and retire end
		// the loop once the marks are gone, with every event it read
		// answered with its verdict.
		if err := inst.loop.Run(loopCtx); err != nil {
			inst.failed <- err
		}
	}()

	if err := markFilesystems(group, st.Policy, d.log); err != nil {
		inst.stop()
		return nil, err
	}
	inst.subs = markSubmounts(group, st.Policy, out, d.log)
	inst.sources, inst.hook, err = d.sources()
	if err != nil {
		inst.stop()
		return nil, err
	}
	inst.watches = watch.NewManager(marker{group}, unmarker{group}, inst.sources, d.log)
	stats, err := inst.watches.Place(ctx, roots(st.Policy))
	if err != nil {
		inst.stop()
		return nil, fmt.Errorf("place watches: %w", err)
	}
	if stats.Stalled {
		d.log.Warn("watches placed in part: a walk waits on a filesystem that does not answer, and goes on when it does",
			"dirs", stats.Dirs, "missing", stats.Missing, "errors", stats.Errors, "elapsed", stats.Elapsed)
	} else {
		d.log.Info("watches placed", "dirs", stats.Dirs, "missing", stats.Missing, "errors", stats.Errors,
			"elapsed", stats.Elapsed)
	}
	mctx, cancel := context.WithCancel(ctx)
	inst.cancel = cancel
	inst.managed = make(chan struct{})
	go func() {
		defer close(inst.managed)
		inst.watches.Run(mctx)
	}()
	return inst, nil
}

// sources starts the directory event sources: the eBPF tracer on the best
// rung of its ladder that works here (or the forced one), and inotify
// beside it as cross-check, or as the primary source without the tracer.
// Without an eBPF hook, fanotify directory events (fandir) are a primary
// source beside inotify: they have no per-watch limit, so a directory
// inotify has no watch for is still followed. With none of them, only the
// start-up walk and resyncs place marks. Mounts are followed beside them.
func (d *daemon) sources() (watch.Sources, dirtrace.Hook, error) {
	var srcs watch.Sources
	hook := dirtrace.HookNone
	tr, err := dirtrace.Open(d.opts.Hook, d.log)
	switch {
	case err != nil && d.opts.Hook != "":
		return srcs, "", fmt.Errorf("directory tracing: %w", err)
	case err != nil:
		d.log.Warn("eBPF directory tracing unavailable", "error", err)
	default:
		hook = tr.Hook()
		srcs.Primary = append(srcs.Primary, tr)
	}
	var fan *fandir.Source
	if hook == dirtrace.HookNone {
		if fan, err = fandir.New(d.log); err != nil {
			d.log.Warn("fanotify directory events unavailable: inotify alone follows new directories", "error", err)
			fan = nil
		}
	}
	in, err := inotify.New(d.log)
	switch {
	case err != nil:
		d.log.Warn("inotify unavailable", "error", err)
	case len(srcs.Primary) > 0:
		if hook == dirtrace.HookNone && fan == nil { // a tracer that reports nothing
			in.Sole()
		}
		srcs.CrossCheck = append(srcs.CrossCheck, in)
	default:
		if fan == nil {
			in.Sole()
		}
		srcs.Primary = append(srcs.Primary, in)
	}
	if fan != nil {
		srcs.Primary = append(srcs.Primary, fan)
	}
	if ms, err := watch.NewMountSource(d.log); err != nil {
		d.log.Warn("filesystems mounted in a watch after start are not followed", "error", err)
	} else {
		srcs.Others = append(srcs.Others, ms)
	}
	d.log.Info("directory event sources", "primary", sourceNames(srcs.Primary), "cross_check", sourceNames(srcs.CrossCheck))
	return srcs, hook, nil
}

// sourceNames lists the sources' names for the log, "none" for none.
func sourceNames(srcs []watch.Source) string {
	if len(srcs) == 0 {
		return "none"
	}
	names := make([]string, len(srcs))
	for i, s := range srcs {
		names[i] = s.Name()
	}
	return strings.Join(names, ",")
}

// stop answers every event the group has queued, as retire does, then
// closes the group, which allows whatever reaches it meanwhile.
func (i *instance) stop() {
	i.windDown()
	select {
	case <-i.done:
	case <-time.After(stopGrace):
		// A hung engine: what is left fails, with on_error, at once.
		i.stopLoop()
		<-i.done
	}
	i.stopLoop()
	i.close()
	i.quar.close()
}

// windDown stops following directory events, removes the group's marks
// and has the loop answer every event already queued and return.
func (i *instance) windDown() {
	i.stopWatches()
	i.subs.close()
	i.outside.close()
	i.flush()
	i.loop.Drain()
	i.group.Wake()
}

// stopGrace bounds how long a stop waits for the scans under way and
// queued to end before it fails them.
const stopGrace = 2 * time.Second

// stopWatches stops following directory events; the marks stay.
func (i *instance) stopWatches() {
	i.cancel()
	for _, s := range i.sources.All() {
		s.Close()
	}
	if i.managed != nil {
		<-i.managed
	}
}

// retire answers every event the group has queued, then closes it. Called
// once a replacement is fully marked, so later events reach that one too.
// The close is left to end on its own: a mark still waiting on a
// filesystem that does not answer holds it, and it holds nothing else
// now that the group has no marks and no loop.
func (i *instance) retire() {
	i.windDown()
	<-i.done
	i.stopLoop()
	go func() {
		i.close()
		i.quar.close()
	}()
}

// flush removes the group's marks before the group is closed: a mark
// waiting on a filesystem that does not answer would hold the close, and
// the group with it (see fanotify.Group.Flush).
func (i *instance) flush() {
	if err := i.group.Flush(); err != nil {
		i.log.Warn("remove the group's marks before closing it", "error", err)
	}
}

func (i *instance) close() {
	if err := i.group.Close(); err != nil {
		i.log.Warn("close the fanotify group", "error", err)
	}
}

func (d *daemon) reloadLogged(ctx context.Context) error {
	err := d.reload(ctx)
	if err != nil {
		d.log.Error("reload failed: the previous policy stays in force", "error", err)
	}
	return err
}

// reload loads the policy and the databases again and swaps them in
// atomically. On any error the running instance is left untouched.
func (d *daemon) reload(ctx context.Context) error {
	d.log.Info("reloading", "policy", d.opts.PolicyFile)
	pol, err := loadPolicy(d.opts.PolicyFile, d.opts.Diagnostics, d.log)
	if err != nil {
		return err
	}
	engine, err := NewEngine(pol, d.log.Named("engine"))
	if err != nil {
		return err
	}
	old := d.cur.Load().loop.State().Policy.Settings
	if pol.Settings.ControlSocket != old.ControlSocket || pol.Settings.AlertLog != old.AlertLog {
		d.log.Warn("control_socket and alert_log changes take effect at the next start")
	}
	inst, err := d.start(ctx, &onaccess.State{Policy: d.resolve(pol), Engine: engine})
	if err != nil {
		d.links.follow(watchPaths(d.written))
		d.closeEngine(engine)
		return err
	}
	prev := d.cur.Swap(inst)
	prev.retire()
	// The old loop has ended: nothing scans with its engine any more.
	d.closeEngine(prev.loop.State().Engine)
	d.written = pol
	d.log.Info("reloaded", "policy", pol.Filename, "engine", engine.Name())
	return nil
}

// closeEngine releases an engine nothing scans with any more.
func (d *daemon) closeEngine(e scan.Engine) {
	if err := scan.Close(e); err != nil {
		d.log.Warn("close the scan engine", "engine", e.Name(), "error", err)
	}
}

// repoint resolves the watches' paths again after a name on one of them
// changed (see links). When a watch leads elsewhere now, as after a
// deploy re-pointed a link, it moves the watches there as a reload does,
// with the policy and databases in force.
func (d *daemon) repoint(ctx context.Context) error {
	st := d.cur.Load().loop.State()
	pol := d.resolve(d.written)
	was, is := watchPaths(st.Policy), watchPaths(pol)
	if slices.Equal(was, is) {
		return nil
	}
	d.log.Info("a link on a watch's path changed: moving the watches", "from", was, "to", is)
	inst, err := d.start(ctx, &onaccess.State{Policy: pol, Engine: st.Engine})
	if err != nil {
		return err
	}
	d.cur.Swap(inst).retire()
	d.log.Info("watches moved", "watches", is)
	return nil
}

// loadPolicy loads and validates a policy, and writes its diagnostics to
// diag, or logs them when diag is nil. Its watches' paths are as written:
// see resolve. A policy with errors is a *policyError, which carries the
// diagnostics as text.
func loadPolicy(filename string, diag io.Writer, log hclog.Logger) (*policy.Policy, error) {
	pol, diags := policy.Load(filename)
	var text bytes.Buffer
	policy.WriteDiagnostics(&text, diags)
	if diag != nil {
		diag.Write(text.Bytes())
	} else {
		logDiagnostics(log.Named("policy"), filename, diags)
	}
	if diags.HasErrors() {
		return nil, &policyError{file: filename, diagnostics: text.String()}
	}
	return pol, nil
}

// logDiagnostics logs each diagnostic as one record: errors at Error,
// warnings at Warn.
func logDiagnostics(log hclog.Logger, filename string, diags hcl.Diagnostics) {
	for _, d := range diags {
		args := []any{"file", filename}
		if s := d.Subject; s != nil {
			args = []any{"file", s.Filename, "line", s.Start.Line, "col", s.Start.Column}
		}
		level, severity := hclog.Error, "error"
		if d.Severity == hcl.DiagWarning {
			level, severity = hclog.Warn, "warning"
		}
		args = append(args, "severity", severity, "summary", d.Summary, "detail", d.Detail)
		log.Log(level, "policy "+severity, args...)
	}
}

// policyError is a policy that did not load (ErrPolicy), with its
// diagnostics as text, so that a reload asked over the control socket
// can show them to whoever asked.
type policyError struct {
	file        string
	diagnostics string
}

func (e *policyError) Error() string { return fmt.Sprintf("load %s: %v", e.file, ErrPolicy) }

func (e *policyError) Unwrap() error { return ErrPolicy }

// resolve follows the links on the paths of written's watches (see links)
// and matches the watches by their real paths, which is what the kernel
// reports.
func (d *daemon) resolve(written *policy.Policy) *policy.Policy {
	looks := d.links.follow(watchPaths(written))
	pol, dups := written.Resolved(func(path string) (string, error) {
		l, ok := looks[path]
		if !ok {
			d.log.Warn("watch path kept as written: its filesystem does not answer", "path", path, "waited", resolveTimeout)
			return "", errNoAnswer
		}
		return l.real, l.err
	})
	for _, dup := range dups {
		d.log.Warn("watch", "error", dup)
	}
	return pol
}

// resolveTimeout bounds the resolving of the watches' paths: a watch on a
// filesystem that does not answer keeps its path as written, and its
// walk waits on it apart (see watch.Manager).
const resolveTimeout = 5 * time.Second

var errNoAnswer = errors.New("no answer")

// watchPaths are the paths of p's watches, in p's order.
func watchPaths(p *policy.Policy) []string {
	paths := make([]string, len(p.Watches))
	for i, w := range p.Watches {
		paths[i] = w.Path
	}
	return paths
}

// roots are the trees whose directories are marked one by one: the
// watches in tree mode.
func roots(p *policy.Policy) []watch.Root {
	rs := make([]watch.Root, 0, len(p.Watches))
	for _, w := range p.Watches {
		if w.Mode == policy.ModeTree {
			rs = append(rs, watch.Root{Path: w.Path, Recursive: w.Recursive, Events: w.On})
		}
	}
	return rs
}

// unmarker removes the permission marks of a directory.
type unmarker struct{ g *fanotify.Group }

func (u unmarker) MarkDir(d watch.Dir, ev policy.Events) error {
	err := u.g.Mark(unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, permMask(ev), d.Fd, d.Name)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmark %s: %w", d.Path, err)
	}
	return nil
}

// marker places permission marks on directories for events on their
// children.
type marker struct{ g *fanotify.Group }

const markFlags = unix.FAN_MARK_ADD | unix.FAN_MARK_ONLYDIR | unix.FAN_MARK_DONT_FOLLOW

func (m marker) MarkDir(d watch.Dir, ev policy.Events) error {
	if err := m.g.Mark(markFlags, permMask(ev), d.Fd, d.Name); err != nil {
		return fmt.Errorf("mark %s: %w", d.Path, err)
	}
	return nil
}

// MarkDirs marks a walk's batch of leaves.
func (m marker) MarkDirs(ds []watch.Dir, ev policy.Events, errs []error) {
	m.g.MarkEach(markFlags, permMask(ev), len(ds), func(i int) (int, string) { return ds[i].Fd, ds[i].Name }, errs)
	for i, err := range errs[:len(ds)] {
		if err != nil {
			errs[i] = fmt.Errorf("mark %s: %w", ds[i].Path, err)
		}
	}
}

// permMask is the mark mask for the events a directory's files need,
// and the close of each writer, which drops a clean verdict (see
// onaccess.Loop.rewritten).
func permMask(ev policy.Events) uint64 {
	mask := uint64(unix.FAN_EVENT_ON_CHILD | unix.FAN_CLOSE_WRITE)
	if ev&policy.EventOpen != 0 {
		mask |= unix.FAN_OPEN_PERM
	}
	if ev&policy.EventExec != 0 {
		mask |= unix.FAN_OPEN_EXEC_PERM
	}
	if ev&policy.EventAccess != 0 {
		mask |= unix.FAN_ACCESS_PERM
	}
	return mask
}
