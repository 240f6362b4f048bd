package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/alert"
	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/onaccess"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/verdict"
	"github.com/vigilsec/vigil/internal/watch"
)

// ErrPolicy means the policy did not load; its diagnostics were written.
var ErrPolicy = errors.New("policy has errors")

// Options configure Run.
type Options struct {
	PolicyFile string
	Version    string
	Log        hclog.Logger
	// Diagnostics receives policy errors and warnings with their source.
	Diagnostics io.Writer
}

// cacheSize bounds the user-space clean cache (about 100 bytes an entry).
const cacheSize = 1 << 16

// Run serves until ctx is done. It returns ErrPolicy (wrapped) when the
// policy does not load, and any error that stops protection.
func Run(ctx context.Context, opts Options) error {
	log := opts.Log
	pol, err := loadPolicy(opts.PolicyFile, opts.Diagnostics, log)
	if err != nil {
		return err
	}
	engine, err := NewEngine(pol, log.Named("engine"))
	if err != nil {
		return err
	}
	alerts, err := alert.Open(pol.Settings.AlertLog, log.Named("alert"))
	if err != nil {
		return fmt.Errorf("open alert log: %w", err)
	}
	defer alerts.Close()

	group, err := fanotify.Init(unix.FAN_CLASS_CONTENT|unix.FAN_UNLIMITED_QUEUE|unix.FAN_UNLIMITED_MARKS,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return fmt.Errorf("start permission loop: %w", err)
	}
	d := &daemon{
		opts:    opts,
		log:     log,
		group:   group,
		alerts:  alerts,
		started: time.Now(),
	}
	d.loop = onaccess.New(onaccess.Config{
		Source:    group,
		Responder: group,
		Ignorer:   group,
		Alerts:    alerts,
		Cache:     verdict.NewCache(cacheSize),
		Log:       log.Named("onaccess"),
		Workers:   pol.Settings.Workers,
	}, &onaccess.State{Policy: pol, Engine: engine})

	ctl, err := listenControl(pol.Settings.ControlSocket)
	if err != nil {
		group.Close()
		return err
	}
	defer ctl.Close()
	go d.serveControl(ctl)

	// The loop runs before the first mark exists: an event that arrives
	// while the rest is placed is answered, never left waiting.
	var wg sync.WaitGroup
	loopErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		loopErr <- d.loop.Run(ctx)
	}()
	defer wg.Wait()
	defer group.Close()

	stats, err := watch.Place(ctx, marker{group}, roots(pol), log.Named("watch"))
	if err != nil {
		return fmt.Errorf("place watches: %w", err)
	}
	d.dirs.Store(int64(stats.Dirs))
	log.Info("watches placed", "dirs", stats.Dirs, "missing", stats.Missing, "errors", stats.Errors,
		"elapsed", stats.Elapsed)
	d.ready.Store(true)
	if err := notifyReady(); err != nil {
		log.Warn("notify systemd", "error", err)
	}
	log.Info("vigil ready", "policy", pol.Filename, "engine", engine.Name(), "workers", pol.Settings.Workers)

	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case err := <-loopErr:
		return fmt.Errorf("permission loop: %w", err)
	}
}

type daemon struct {
	opts    Options
	log     hclog.Logger
	group   *fanotify.Group
	loop    *onaccess.Loop
	alerts  *alert.Log
	started time.Time
	ready   atomic.Bool
	dirs    atomic.Int64
}

// loadPolicy loads and validates a policy and matches its watches by
// their real paths, which is what the kernel reports.
func loadPolicy(filename string, diag io.Writer, log hclog.Logger) (*policy.Policy, error) {
	pol, diags := policy.Load(filename)
	if len(diags) > 0 && diag != nil {
		policy.WriteDiagnostics(diag, diags)
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("load %s: %w", filename, ErrPolicy)
	}
	pol, errs := pol.Resolved(filepath.EvalSymlinks)
	for _, err := range errs {
		log.Warn("watch", "error", err)
	}
	return pol, nil
}

func roots(p *policy.Policy) []watch.Root {
	rs := make([]watch.Root, 0, len(p.Watches))
	for _, w := range p.Watches {
		rs = append(rs, watch.Root{Path: w.Path, Recursive: w.Recursive, Events: w.On})
	}
	return rs
}

// marker places permission marks on directories for events on their
// children.
type marker struct{ g *fanotify.Group }

func (m marker) MarkDir(fd int, path string, ev policy.Events) error {
	mask := uint64(unix.FAN_EVENT_ON_CHILD)
	if ev&policy.EventOpen != 0 {
		mask |= unix.FAN_OPEN_PERM
	}
	if ev&policy.EventExec != 0 {
		mask |= unix.FAN_OPEN_EXEC_PERM
	}
	if ev&policy.EventAccess != 0 {
		mask |= unix.FAN_ACCESS_PERM
	}
	if err := m.g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, mask, fd, ""); err != nil {
		return fmt.Errorf("mark %s: %w", path, err)
	}
	return nil
}
