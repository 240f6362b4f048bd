package daemon

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/metrics"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/scan/clamav"
)

// Status is what `vigil status` shows.
type Status struct {
	Ready       bool      `json:"ready"`
	Version     string    `json:"version"`
	PID         int       `json:"pid"`
	Started     time.Time `json:"started"`
	Policy      string    `json:"policy"`
	Engine      string    `json:"engine"`
	DBVersion   string    `json:"db_version"`
	DBReport    string    `json:"db_report,omitempty"`    // the built-in engine's load report
	EngineError string    `json:"engine_error,omitempty"` // why the engine cannot scan now (clamd down)
	Watches     []string  `json:"watches"`
	// FilesystemWatches are the watches in filesystem mode: each marks
	// its filesystems whole, and none of its directories is counted in
	// WatchedDirs, the directories tree-mode watches mark.
	FilesystemWatches []string          `json:"filesystem_watches,omitempty"`
	WatchedDirs       int64             `json:"watched_dirs"`
	Hook              string            `json:"hook"` // eBPF rung tracing directories
	Counters          map[string]uint64 `json:"counters"`
}

const (
	controlTimeout = 2 * time.Second
	// reloadTimeout bounds a reload asked over the socket: it walks every
	// watched tree again.
	reloadTimeout = 10 * time.Minute
)

// listenControl opens the root-only control socket, replacing a stale one.
func listenControl(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another vigil is running", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	// Created 0600 from the start: no window where others could connect.
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

func (d *daemon) serveControl(l *net.UnixListener) {
	var delay time.Duration // since the last accept that failed
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors (a storm of event descriptors, a low
			// RLIMIT_NOFILE) or memory: the connection waits in the
			// backlog and a later accept takes it. Giving up would leave
			// status, metrics and reload unanswered for good.
			if delay == 0 {
				d.log.Error("control socket: accept failed, retrying", "error", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go d.handleControl(c)
	}
}

func (d *daemon) handleControl(c *net.UnixConn) {
	defer c.Close()
	if uid, err := peerUID(c); err != nil || uid != 0 && uid != uint32(os.Geteuid()) {
		d.log.Warn("control socket: refused a connection: only root may ask", "uid", uid, "error", err)
		return
	}
	c.SetDeadline(time.Now().Add(controlTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	enc := json.NewEncoder(c)
	switch cmd := strings.TrimSpace(line); cmd {
	case "status":
		enc.Encode(d.status())
	case "metrics":
		// Prometheus text, to the end of the connection.
		if err := metrics.WriteText(c, d.metrics); err != nil {
			d.log.Error("control socket: metrics", "error", err)
		}
	case "reload":
		// Taken at once, so that whoever asks can tell a daemon that
		// answers from one that does not (stopped, say) in seconds, and
		// then waits for the outcome as long as a walk may take.
		enc.Encode(reloadReply{Reloading: true})
		res := make(chan error, 1)
		c.SetDeadline(time.Now().Add(reloadTimeout))
		select {
		case d.reloads <- res:
		case <-time.After(reloadTimeout):
			res <- errors.New("the daemon did not take the reload")
		}
		reply := reloadReply{OK: true}
		if err := <-res; err != nil {
			reply = reloadReply{Error: err.Error()}
			var pe *policyError
			if errors.As(err, &pe) {
				reply.Diagnostics = pe.diagnostics
			}
		}
		enc.Encode(reply)
	default:
		enc.Encode(map[string]string{"error": fmt.Sprintf("unknown command %q", cmd)})
	}
}

func (d *daemon) status() Status {
	inst := d.cur.Load()
	if inst == nil {
		return Status{Version: d.opts.Version, PID: os.Getpid(), Started: d.started}
	}
	st := inst.loop.State()
	s := Status{
		Ready:       d.ready.Load(),
		Version:     d.opts.Version,
		PID:         os.Getpid(),
		Started:     d.started,
		Policy:      st.Policy.Filename,
		Engine:      st.Engine.Name(),
		DBVersion:   st.Engine.Version(),
		DBReport:    dbReport(st.Engine),
		WatchedDirs: int64(inst.watches.Dirs()),
		Hook:        string(inst.hook),
	}
	if err := scan.HealthOf(st.Engine); err != nil {
		s.EngineError = err.Error()
	}
	for _, w := range st.Policy.Watches {
		s.Watches = append(s.Watches, w.Path)
		if w.Mode == policy.ModeFilesystem {
			s.FilesystemWatches = append(s.FilesystemWatches, w.Path)
		}
	}
	c := d.counters.Snapshot()
	written, dropped, failed := d.alerts.Stats()
	ws := inst.watches.Stats()
	s.Counters = map[string]uint64{
		"events": c.Events, "allowed": c.Allowed, "denied": c.Denied,
		"blocked": c.Blocked, "alerted": c.Alerted, "scans": c.Scans,
		"cache_hits": c.CacheHits, "self": c.Self, "excluded": c.Excluded,
		"skipped": c.Skipped, "errors": c.Errors, "timeouts": c.Timeouts,
		"queue_full": c.QueueFull, "overflows": c.Overflows, "close_writes": c.CloseWrites,
		"respond_errors": c.RespondErrors, "ignore_errors": c.IgnoreErrors,
		"alerts_written": written, "alerts_dropped": dropped, "alerts_failed": failed,
		"dir_events": ws.Events, "resyncs": ws.Resyncs, "track_errors": ws.TrackErrors,
		"dir_busy": b2u(ws.Busy), "cross_check_backlog": uint64(ws.Backlog),
		"walk_stalls": ws.Stalls, "walks_stalled": uint64(ws.Stalled),
		"out_of_scope_quieted": c.Quieted, "out_of_scope_unquieted": c.Unquieted,
	}
	return s
}

// peerUID is the user of the process at the other end of c. The socket's
// mode keeps other users out; this keeps them out when the mode was
// changed (a chmod, a directory made group-writable).
func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	cerr := raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err = cmp.Or(cerr, err); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	return cred.Uid, nil
}

// reloadReply is the daemon's answer to "reload": one with Reloading set
// at once, then the outcome.
type reloadReply struct {
	Reloading bool   `json:"reloading,omitempty"`
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	// Diagnostics are those of a policy that did not load, as text.
	Diagnostics string `json:"diagnostics,omitempty"`
}

// RefusedError is a reload the daemon refused: the previous policy stays
// in force.
type RefusedError struct {
	Reason string // the daemon's error
	// Diagnostics, when the policy did not load, are its problems as
	// vigil policy check prints them: FILE:LINE,COL, the source line, a
	// caret.
	Diagnostics string
}

func (e *RefusedError) Error() string { return e.Reason }

// Reload asks the daemon listening on socket to load its policy and
// databases again, and waits for the outcome: nil when the new policy is
// in force, a *RefusedError when the daemon kept the previous one, other
// errors when it could not be asked or did not answer (ErrUnreachable
// when nothing listens on socket).
func Reload(socket string) error {
	c, err := dialControl(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	if _, err := c.Write([]byte("reload\n")); err != nil {
		return fmt.Errorf("ask %s: %w", socket, err)
	}
	dec := json.NewDecoder(c)
	var reply reloadReply
	if err := dec.Decode(&reply); err != nil {
		return fmt.Errorf("no answer from the daemon at %s: %w", socket, err)
	}
	if reply.Reloading {
		c.SetDeadline(time.Now().Add(reloadTimeout))
		reply = reloadReply{}
		if err := dec.Decode(&reply); err != nil {
			return fmt.Errorf("no outcome from the daemon at %s, which took the reload: %w", socket, err)
		}
	}
	if !reply.OK {
		return &RefusedError{Reason: reply.Error, Diagnostics: reply.Diagnostics}
	}
	return nil
}

// Metrics copies the daemon's Prometheus text exposition to w, once it
// has all of it.
func Metrics(socket string, w io.Writer) error {
	c, err := dialControl(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	if _, err := c.Write([]byte("metrics\n")); err != nil {
		return fmt.Errorf("ask %s: %w", socket, err)
	}
	// Read whole first: copied straight to an *os.File, a read error came
	// back as a write error, after half an exposition.
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(c); err != nil {
		return fmt.Errorf("read metrics from %s: %w", socket, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// QueryStatus asks the daemon listening on socket for its status.
func QueryStatus(socket string) (*Status, error) {
	c, err := dialControl(socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	if _, err := c.Write([]byte("status\n")); err != nil {
		return nil, fmt.Errorf("query %s: %w", socket, err)
	}
	var s Status
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return nil, fmt.Errorf("read status from %s: %w", socket, err)
	}
	return &s, nil
}

// ErrUnreachable means no daemon answered on the control socket: none
// runs there, or it may not be reached by this user.
var ErrUnreachable = errors.New("cannot reach the daemon")

// unreachableError says once why a control socket could not be reached
// (the dial's error repeats the path and the operation), and keeps that
// error for errors.Is and errors.As.
type unreachableError struct {
	socket string
	err    error
}

func (e *unreachableError) Error() string {
	cause := e.err
	for u := errors.Unwrap(cause); u != nil; u = errors.Unwrap(cause) {
		cause = u
	}
	return fmt.Sprintf("%v at %s: %v", ErrUnreachable, e.socket, cause)
}

func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

func dialControl(socket string) (net.Conn, error) {
	c, err := net.DialTimeout("unix", socket, controlTimeout)
	if err != nil {
		return nil, &unreachableError{socket: socket, err: err}
	}
	return c, nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// dbReport is the load report of engines that have one (the built-in).
func dbReport(e scan.Engine) string {
	if r, ok := e.(interface{ Report() clamav.Report }); ok {
		return r.Report().String()
	}
	return ""
}
