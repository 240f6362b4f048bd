package onaccess

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/alert"
	"github.com/vigilsec/vigil/internal/fanotify"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/verdict"
)

// fakeSource hands out batches sent on a channel; closing it ends Run.
type fakeSource chan []fanotify.Event

func (s fakeSource) ReadEvents(dst []fanotify.Event) ([]fanotify.Event, error) {
	b, ok := <-s
	if !ok {
		return dst, errors.New("source closed")
	}
	if b == nil {
		return dst, errWoken
	}
	return append(dst, b...), nil
}

func (s fakeSource) PendingEvents(dst []fanotify.Event) ([]fanotify.Event, error) {
	select {
	case b, ok := <-s:
		if !ok {
			return dst, errors.New("source closed")
		}
		return append(dst, b...), nil
	default:
		return dst, nil
	}
}

// InRead: the fake's reads never wait in the kernel.
func (s fakeSource) InRead() uint64 { return 0 }

// errWoken is what the fake's ReadEvents returns for a nil batch, as a
// woken fanotify group returns a deadline error.
var errWoken = errors.New("woken")

type response struct {
	fd    int
	allow bool
	path  string
}

// fakeResponder records each response with the path its fd named.
type fakeResponder struct {
	mu     sync.Mutex
	got    []response
	done   chan struct{} // one send per response
	answer func()        // if set, called as each response is given
}

func (r *fakeResponder) Respond(fd int, allow bool) error {
	if r.answer != nil {
		r.answer()
	}
	p, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	r.mu.Lock()
	r.got = append(r.got, response{fd, allow, p})
	r.mu.Unlock()
	r.done <- struct{}{}
	return nil
}

// fakeEngine finds "INFECTED" in a file, fails on "FAIL" and hangs until
// its context ends on "HANG" (or the test does), each at the file's start.
// The contents of the tests are over scan.TooSmall: the loop scans no
// smaller file.
type fakeEngine struct {
	mu    sync.Mutex
	scans int
	stuck chan struct{} // "STUCK" waits for it to close, whatever ctx says
	hung  chan hungScan // what each "HANG" saw of its context, if there is room
}

type hungScan struct {
	deadline time.Time
	cause    error
}

func (e *fakeEngine) Scan(ctx context.Context, f *os.File) (scan.Result, error) {
	e.mu.Lock()
	e.scans++
	e.mu.Unlock()
	b := make([]byte, 64)
	n, _ := f.ReadAt(b, 0)
	switch s := string(b[:n]); {
	case strings.HasPrefix(s, "INFECTED"):
		return scan.Result{Infected: true, Signature: "Test.Sig"}, nil
	case strings.HasPrefix(s, "FAIL"):
		return scan.Result{}, errors.New("engine broke")
	case strings.HasPrefix(s, "HANG"):
		select {
		case <-ctx.Done():
		case <-e.stuck: // the test is over
		}
		dl, _ := ctx.Deadline()
		select {
		case e.hung <- hungScan{dl, context.Cause(ctx)}:
		default:
		}
		return scan.Result{}, ctx.Err()
	case strings.HasPrefix(s, "STUCK"):
		// A read of a file on a hung FUSE or NFS mount: deaf to ctx.
		<-e.stuck
		return scan.Result{}, nil
	}
	return scan.Result{}, nil
}

func (e *fakeEngine) Name() string    { return "fake" }
func (e *fakeEngine) Version() string { return "1" }

func (e *fakeEngine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.scans
}

type fakeAlerts struct {
	mu   sync.Mutex
	recs []alert.Record
}

func (a *fakeAlerts) Emit(r alert.Record) {
	a.mu.Lock()
	a.recs = append(a.recs, r)
	a.mu.Unlock()
}

func (a *fakeAlerts) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var s []string
	for _, r := range a.recs {
		s = append(s, r.Action)
	}
	return s
}

type harness struct {
	t       *testing.T
	dir     string
	src     fakeSource
	resp    *fakeResponder
	engine  *fakeEngine
	alerts  *fakeAlerts
	loop    *Loop
	done    chan error
	stopped bool
}

func newHarness(t *testing.T, queue int, policyFmt string) *harness {
	t.Helper()
	return newHarnessWith(t, queue, policyFmt, func(*Config) {})
}

// newHarnessWith is newHarness with the loop's configuration changed by
// tweak.
func newHarnessWith(t *testing.T, queue int, policyFmt string, tweak func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(policyFmt, dir, dir, dir)
	pol, diags := policy.Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("policy: %v", diags)
	}
	h := &harness{
		t:      t,
		dir:    dir,
		src:    make(fakeSource),
		resp:   &fakeResponder{done: make(chan struct{}, 1024)},
		engine: &fakeEngine{stuck: make(chan struct{}), hung: make(chan hungScan, 1)},
		alerts: &fakeAlerts{},
		done:   make(chan error, 1),
	}
	cfg := Config{
		Source:    h.src,
		Responder: h.resp,
		Alerts:    h.alerts,
		Cache:     verdict.NewCache(128),
		Workers:   2,
		QueueSize: queue,
	}
	tweak(&cfg)
	h.loop = New(cfg, &State{Policy: pol, Engine: h.engine})
	go func() { h.done <- h.loop.Run(context.Background()) }()
	t.Cleanup(h.stop)
	t.Cleanup(func() { close(h.engine.stuck) }) // runs first
	return h
}

// stop ends Run, which returns once every worker is done: alerts included.
func (h *harness) stop() {
	if h.stopped {
		return
	}
	h.stopped = true
	close(h.src)
	<-h.done
}

const basePolicy = `
settings {
  scan_timeout  = "200ms"
  max_file_size = "1KiB"
}
watch "%s" {
  exclude  = ["*.skip"]
  on_error = "deny"
}
watch "%s/logs" {
  action   = "alert"
  on_error = "allow"
}
watch "%s/bin" {
  on = ["exec"]
}
`

// event opens name (created with content) and returns an event for it
// from another process.
func (h *harness) event(name, content string, mask uint64) fanotify.Event {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return fanotify.Event{Mask: mask, Fd: fd, Pid: 1}
}

// counters waits up to 5 s (a kernel under TCG is slow) for the loop's
// counters to satisfy ok, as they are counted just after the response
// they follow, and returns them.
func (h *harness) counters(ok func(Snapshot) bool) Snapshot {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := h.loop.Counters()
		if ok(c) || time.Now().After(deadline) {
			return c
		}
		time.Sleep(time.Millisecond)
	}
}

// waitFor waits up to 5 seconds for ok, and fails the test after.
func waitFor(t *testing.T, ok func() bool, format string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no "+format+" after 5s", args...)
		}
	}
}

// send delivers events and waits for n responses.
func (h *harness) send(n int, evs ...fanotify.Event) []response {
	h.t.Helper()
	h.resp.mu.Lock()
	start := len(h.resp.got)
	h.resp.mu.Unlock()
	h.src <- evs
	for range n {
		select {
		case <-h.resp.done:
		case <-time.After(5 * time.Second):
			h.t.Fatalf("%d of %d responses after 5s", len(h.resp.got)-start, n)
		}
	}
	h.resp.mu.Lock()
	defer h.resp.mu.Unlock()
	return append([]response(nil), h.resp.got[start:]...)
}

func TestDecisions(t *testing.T) {
	open, exec := uint64(unix.FAN_OPEN_PERM), uint64(unix.FAN_OPEN_EXEC_PERM)
	tests := []struct {
		name      string
		file      string
		content   string
		mask      uint64
		wantAllow bool
		wantScan  bool
		wantAlert string
	}{
		{"clean", "a/clean", "hello, world", open, true, true, ""},
		{"empty, engine would fail", "a/empty", "", open, true, false, ""},
		{"5 bytes, engine would fail", "a/tiny", "FAIL!", open, true, false, ""},
		{"6 bytes, engine fails", "a/small", "FAIL!!", open, false, true, "error"},
		{"infected in block watch", "a/evil", "INFECTED", open, false, true, "blocked"},
		{"infected in alert watch", "logs/evil", "INFECTED", open, true, true, "alerted"},
		{"excluded glob", "a/evil.skip", "INFECTED", open, true, false, ""},
		{"engine error, on_error deny", "a/broken", "FAIL to scan", open, false, true, "error"},
		{"engine error, on_error allow", "logs/broken", "FAIL to scan", open, true, true, "error"},
		{"engine hangs, deadline decides", "a/hang", "HANG forever", open, false, true, "error"},
		{"over max_file_size", "a/big", "INFECTED" + strings.Repeat("x", 2000), open, true, false, ""},
		{"open in exec-only watch", "bin/tool", "INFECTED", open, true, false, ""},
		{"exec in exec-only watch", "bin/tool2", "INFECTED", exec, false, true, "blocked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 16, basePolicy)
			got := h.send(1, h.event(tt.file, tt.content, tt.mask))
			if got[0].allow != tt.wantAllow {
				t.Errorf("allow: got %v, want %v", got[0].allow, tt.wantAllow)
			}
			if want := filepath.Join(h.dir, tt.file); got[0].path != want {
				t.Errorf("responded to fd of %q, want %q", got[0].path, want)
			}
			h.stop()
			if scanned := h.engine.count() > 0; scanned != tt.wantScan {
				t.Errorf("scanned: got %v, want %v", scanned, tt.wantScan)
			}
			var want []string
			if tt.wantAlert != "" {
				want = []string{tt.wantAlert}
			}
			if got := h.alerts.actions(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("alerts: got %v, want %v", got, want)
			}
		})
	}
}

// An exec of an infected file that an alert watch allows is one alert and
// one scan, though the kernel asks twice (FAN_OPEN_EXEC_PERM, then
// FAN_OPEN_PERM). A hard link of it in a block watch is still denied to
// the same process.
func TestExecAlertedOnce(t *testing.T) {
	h := newHarness(t, 16, basePolicy)
	exe := h.event("logs/evil", "INFECTED", unix.FAN_OPEN_EXEC_PERM)
	link := filepath.Join(h.dir, "a", "evil")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(h.dir, "logs", "evil"), link); err != nil {
		t.Fatal(err)
	}
	open := func(p string) fanotify.Event {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fanotify.Event{Mask: unix.FAN_OPEN_PERM, Fd: fd, Pid: 1}
	}
	var got []bool
	for _, ev := range []fanotify.Event{exe, open(link), open(filepath.Join(h.dir, "logs", "evil"))} {
		got = append(got, h.send(1, ev)[0].allow)
	}
	if fmt.Sprint(got) != "[true false true]" {
		t.Errorf("exec, open of the link in the block watch, open of the exec: allowed %v, want [true false true]", got)
	}
	h.stop()
	acts := h.alerts.actions()
	slices.Sort(acts) // each is emitted after its answer
	if got := acts; fmt.Sprint(got) != "[alerted blocked]" {
		t.Errorf("alerts: got %v, want [alerted blocked]", got)
	}
	if n := h.engine.count(); n != 2 {
		t.Errorf("scans: got %d, want 2", n)
	}
}

// An alert names the process that opened the file, even one gone as soon
// as it has its answer, as most programs are after a denied open.
func TestAlertNamesOpenerGoneAfterAnswer(t *testing.T) {
	for _, tt := range []struct{ name, file, content, action string }{
		{"blocked", "a/evil", "INFECTED", "blocked"},
		{"alerted", "logs/evil", "INFECTED", "alerted"},
		{"engine error", "a/broken", "FAIL to scan", "error"},
		{"deadline", "a/hang", "HANG forever", "error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 16, basePolicy)
			opener, exe := startSleep(t)
			h.resp.answer = func() {
				opener.Process.Kill()
				opener.Wait()
			}
			ev := h.event(tt.file, tt.content, unix.FAN_OPEN_PERM)
			ev.Pid = int32(opener.Process.Pid)
			h.send(1, ev)
			h.stop()
			h.alerts.mu.Lock()
			defer h.alerts.mu.Unlock()
			if len(h.alerts.recs) != 1 {
				t.Fatalf("alerts: got %d, want 1", len(h.alerts.recs))
			}
			rec := h.alerts.recs[0]
			if rec.Action != tt.action || rec.Exe != exe || rec.UID != uint32(os.Geteuid()) {
				t.Errorf("alert: got action %q exe %q uid %d, want %q %q %d",
					rec.Action, rec.Exe, rec.UID, tt.action, exe, os.Geteuid())
			}
		})
	}
}

// startSleep starts sleep(1) and returns it once /proc names its program:
// Start may return before the child's execve has switched its memory, when
// /proc/PID/exe still names the test binary (seen on 6.1 under TCG).
func startSleep(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	want, err := filepath.EvalSymlinks(cmd.Path)
	if err != nil {
		t.Fatal(err)
	}
	link := fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)
	waitFor(t, func() bool {
		exe, err := os.Readlink(link)
		return err == nil && exe == want
	}, "%s naming %s", link, want)
	return cmd, want
}

// fileIgnorer counts the ignore marks placed on files.
type fileIgnorer struct{ marks atomic.Int32 }

func (f *fileIgnorer) IgnoreFile(fd int, mask uint64) error {
	f.marks.Add(1)
	return nil
}

func (f *fileIgnorer) UnignoreFile(fd int, mask uint64) error {
	f.marks.Add(-1)
	return nil
}

// Every infected file and every failed scan is alerted, but the log
// takes logBurst lines a second of them; the next line says how many it
// did not take. A soak reading EICAR in a loop had the daemon log 745
// lines a second, past journald's rate limit.
func TestLogLimited(t *testing.T) {
	const n = 3 * logBurst
	for _, tt := range []struct {
		name, content, line string
		blocked             uint64
	}{
		{"detections", "INFECTED", "infected file blocked", n + 1},
		{"failures", "FAIL to scan", "scan failed, on_error decides", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			var mu sync.Mutex
			h := newHarnessWith(t, 256, basePolicy, func(c *Config) {
				c.Log = hclog.New(&hclog.LoggerOptions{Output: &logs, Mutex: &mu, Level: hclog.Info})
			})
			var evs []fanotify.Event
			for i := range n {
				evs = append(evs, h.event(fmt.Sprintf("a/f%d", i), tt.content, unix.FAN_OPEN_PERM))
			}
			start := time.Now()
			h.send(n, evs...)
			took := time.Since(start)
			time.Sleep(time.Second) // a second later, the log takes lines again
			h.send(1, h.event("a/later", tt.content, unix.FAN_OPEN_PERM))
			h.stop()
			if got := len(h.alerts.actions()); got != n+1 {
				t.Errorf("alerts: got %d, want %d: every one", got, n+1)
			}
			if got := h.loop.Counters().Blocked; got != tt.blocked {
				t.Errorf("blocked: got %d, want %d", got, tt.blocked)
			}
			mu.Lock()
			defer mu.Unlock()
			lines := strings.Count(logs.String(), tt.line)
			if most := logBurst*(int(took/time.Second)+1) + 1; lines > most || lines < logBurst+1 {
				t.Errorf("log lines of %d within %v, then one: %d, want %d to %d:\n%s", n, took, lines, logBurst+1, most, logs.String())
			}
			if !strings.Contains(logs.String(), "not_logged_before=") {
				t.Errorf("no line says how many were not logged:\n%s", logs.String())
			}
		})
	}
}

// A file over max_file_size is allowed unscanned and logged once for each
// version, however often it is opened. It gets no ignore mark: the skip
// is its watch's, and a hard link may put the same inode in a watch with
// a larger max_file_size, which must still scan it.
func TestOversizeLoggedOnce(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	ign := &fileIgnorer{}
	h := newHarnessWith(t, 16, basePolicy, func(c *Config) {
		c.Ignorer = ign
		c.Log = hclog.New(&hclog.LoggerOptions{Output: &logs, Mutex: &mu, Level: hclog.Info})
	})
	ev := h.event("a/big", "INFECTED"+strings.Repeat("x", 2000), unix.FAN_OPEN_PERM)
	for i := range 3 {
		if i > 0 { // the same file, unchanged, opened again
			fd, err := unix.Open(filepath.Join(h.dir, "a/big"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			ev.Fd = fd
		}
		if got := h.send(1, ev); !got[0].allow {
			t.Error("a file over max_file_size denied")
		}
	}
	h.stop()
	if n := h.engine.count(); n != 0 {
		t.Errorf("a file over max_file_size scanned %d times", n)
	}
	if n := ign.marks.Load(); n != 0 {
		t.Errorf("ignore marks on a file over max_file_size: got %d, want 0", n)
	}
	mu.Lock()
	defer mu.Unlock()
	line := "[INFO]  file over max_file_size not scanned: path=" + filepath.Join(h.dir, "a/big")
	if n := strings.Count(logs.String(), line); n != 1 {
		t.Errorf("INFO lines for the file over max_file_size opened 3 times: %d, want 1:\n%s", n, logs.String())
	}
}

func TestOwnProcessAllowedUnscanned(t *testing.T) {
	h := newHarness(t, 16, basePolicy)
	ev := h.event("a/evil", "INFECTED", unix.FAN_OPEN_PERM)
	ev.Pid = int32(os.Getpid())
	if got := h.send(1, ev); !got[0].allow {
		t.Errorf("own open: got deny, want allow")
	}
	if n := h.engine.count(); n != 0 {
		t.Errorf("own open scanned %d times, want 0", n)
	}
}

func TestCleanCacheHit(t *testing.T) {
	h := newHarness(t, 16, basePolicy)
	ev := h.event("a/clean", "hello, world", unix.FAN_OPEN_PERM)
	// A verdict taken within 20 ms of the file's last change is not kept
	// where the filesystem gives no inode generation (tmpfs; see
	// verdict.Cache.Add).
	time.Sleep(30 * time.Millisecond)
	h.send(1, ev)
	p := filepath.Join(h.dir, "a/clean")
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.send(1, fanotify.Event{Mask: unix.FAN_OPEN_PERM, Fd: fd, Pid: 1}); !got[0].allow {
		t.Errorf("cached clean file denied")
	}
	if n := h.engine.count(); n != 1 {
		t.Errorf("scans: got %d, want 1 (second open from the cache)", n)
	}
	// A write changes the key: scanned again, and found.
	h.send(1, h.event("a/clean", "INFECTED now", unix.FAN_OPEN_PERM))
	if n := h.engine.count(); n != 2 {
		t.Errorf("scans after a write: got %d, want 2", n)
	}
}

// A writer's close drops the file's clean verdict, though its key did
// not change: a write through a shared mapping leaves tmpfs's times and
// raises no modification event.
func TestCloseWriteForgetsClean(t *testing.T) {
	ign := new(fileIgnorer)
	h := newHarnessWith(t, 16, basePolicy, func(c *Config) { c.Ignorer = ign })
	p := filepath.Join(h.dir, "a/mapped")
	ev := h.event("a/mapped", "hello, world", unix.FAN_OPEN_PERM)
	time.Sleep(30 * time.Millisecond) // see TestCleanCacheHit
	h.send(1, ev)
	if n := ign.marks.Load(); n != 1 {
		t.Fatalf("ignore marks after a clean scan: got %d, want 1", n)
	}
	open := func(mask uint64) fanotify.Event {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fanotify.Event{Mask: mask, Fd: fd, Pid: 1}
	}
	h.send(1, open(unix.FAN_CLOSE_WRITE), open(unix.FAN_OPEN_PERM))
	if n := h.engine.count(); n != 2 {
		t.Errorf("scans after a writer's close: got %d, want 2", n)
	}
	if n := ign.marks.Load(); n != 1 {
		t.Errorf("ignore marks: got %d, want 1 (removed at the close, placed after the scan)", n)
	}
	if c := h.loop.Counters(); c.CloseWrites != 1 || c.Events != 2 {
		t.Errorf("counters: got %d close-writes and %d permission events, want 1 and 2", c.CloseWrites, c.Events)
	}
}

// A loop whose ignore mark stands for a clean verdict scans the file
// again when it is asked about it: the mark is gone, which a write does,
// and a write stamped before the scan and copied after it leaves the key
// unchanged. A loop after it (a reload) takes the cached verdict.
func TestOwnMarkedVerdictRescanned(t *testing.T) {
	ign := new(fileIgnorer)
	cache := verdict.NewCache(128)
	h := newHarnessWith(t, 16, basePolicy, func(c *Config) { c.Ignorer, c.Cache = ign, cache })
	p := filepath.Join(h.dir, "a/clean")
	ev := h.event("a/clean", "hello, world", unix.FAN_OPEN_PERM)
	time.Sleep(30 * time.Millisecond) // see TestCleanCacheHit
	h.send(1, ev)
	open := func() fanotify.Event {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fanotify.Event{Mask: unix.FAN_OPEN_PERM, Fd: fd, Pid: 1}
	}
	h.send(1, open())
	if n := h.engine.count(); n != 2 {
		t.Errorf("scans by the loop that marked the file: got %d, want 2", n)
	}
	h.stop()

	next := newHarnessWith(t, 16, basePolicy, func(c *Config) { c.Ignorer, c.Cache = ign, cache })
	next.loop.Swap(&State{Policy: h.loop.State().Policy, Engine: next.engine}) // h's directory
	next.send(1, open())
	if n := next.engine.count(); n != 0 {
		t.Errorf("scans by the next loop: got %d, want 0 (cached)", n)
	}
}

func TestSpecialFilesNeverRead(t *testing.T) {
	h := newHarness(t, 16, basePolicy)
	fifo := filepath.Join(h.dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.send(1, fanotify.Event{Mask: unix.FAN_OPEN_PERM, Fd: fd, Pid: 1}); !got[0].allow {
		t.Errorf("fifo: got deny, want allow")
	}
	if n := h.engine.count(); n != 0 {
		t.Errorf("fifo scanned %d times", n)
	}
}

func TestQueueFullUsesOnError(t *testing.T) {
	// One slot, two workers busy with hanging scans: the rest overflow.
	h := newHarness(t, 1, basePolicy)
	var evs []fanotify.Event
	for i := range 8 {
		evs = append(evs, h.event(fmt.Sprintf("a/hang%d", i), "HANG forever", unix.FAN_OPEN_PERM))
	}
	got := h.send(len(evs), evs...)
	for _, r := range got {
		if r.allow {
			t.Errorf("%s: got allow, want on_error deny", r.path)
		}
	}
	c := h.counters(func(c Snapshot) bool { return c.QueueFull+c.Timeouts == uint64(len(evs)) })
	if c.QueueFull == 0 || c.QueueFull+c.Timeouts != uint64(len(evs)) {
		t.Errorf("counters: queue_full %d + timeouts %d, want %d with queue_full > 0", c.QueueFull, c.Timeouts, len(evs))
	}
}

// Every event gets exactly one response, whatever the mix.
func TestExactlyOneResponse(t *testing.T) {
	h := newHarness(t, 4, basePolicy)
	contents := []string{"clean file", "INFECTED", "FAIL to scan", "HANG forever"}
	var evs []fanotify.Event
	for i := range 200 {
		evs = append(evs, h.event(fmt.Sprintf("a/f%d", i), contents[i%len(contents)], unix.FAN_OPEN_PERM))
	}
	got := h.send(len(evs), evs...)
	// Late duplicates would arrive after the deadline: wait past it.
	time.Sleep(400 * time.Millisecond)
	h.resp.mu.Lock()
	total := len(h.resp.got)
	h.resp.mu.Unlock()
	if total != len(evs) {
		t.Errorf("responses: got %d, want %d", total, len(evs))
	}
	seen := map[string]int{}
	for _, r := range got {
		seen[r.path]++
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s answered %d times", p, n)
		}
	}
	c := h.loop.Counters()
	if c.Allowed+c.Denied != uint64(len(evs)) || c.Events != uint64(len(evs)) {
		t.Errorf("counters: allowed %d + denied %d, events %d, want %d", c.Allowed, c.Denied, c.Events, len(evs))
	}
}

func TestOverflowCounted(t *testing.T) {
	h := newHarness(t, 4, basePolicy)
	ev := h.event("a/clean", "hello, world", unix.FAN_OPEN_PERM)
	h.send(1, fanotify.Event{Mask: unix.FAN_Q_OVERFLOW, Fd: unix.FAN_NOFD}, ev)
	if c := h.loop.Counters(); c.Overflows != 1 {
		t.Errorf("overflows: got %d, want 1", c.Overflows)
	}
}

// Drain answers what is queued, then Run returns nil.
func TestDrain(t *testing.T) {
	dir := t.TempDir()
	pol, diags := policy.Parse([]byte(fmt.Sprintf("watch %q {}\n", dir)), "t.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	src := make(fakeSource, 4)
	resp := &fakeResponder{done: make(chan struct{}, 16)}
	l := New(Config{Source: src, Responder: resp, Alerts: &fakeAlerts{}, Workers: 1},
		&State{Policy: pol, Engine: &fakeEngine{}})
	// Queued before the wake-up, as in the kernel: drained, not dropped.
	h := &harness{t: t, dir: dir}
	l.Drain()
	src <- nil // wake
	src <- []fanotify.Event{h.event("a", "clean file", unix.FAN_OPEN_PERM), h.event("b", "INFECTED", unix.FAN_OPEN_PERM)}
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Drain")
	}
	if len(resp.got) != 2 || !resp.got[0].allow || resp.got[1].allow {
		t.Errorf("responses after drain: got %+v, want allow then deny", resp.got)
	}
}

// A scan that never returns, alone in its batch (so possibly scanned by
// the reader itself), must not stop the reading: later events are
// answered before its deadline, and it is answered by its deadline.
func TestStuckScanDoesNotStallReading(t *testing.T) {
	// A deadline far enough for a slow guest to answer three events
	// before it: the order of the answers is what the test checks.
	h := newHarness(t, 16, strings.Replace(basePolicy, `"200ms"`, `"2s"`, 1))
	h.src <- []fanotify.Event{h.event("a/stuck", "STUCK on NFS", unix.FAN_OPEN_PERM)}
	for i := range 3 {
		got := h.send(1, h.event(fmt.Sprintf("a/clean%d", i), "hello, world", unix.FAN_OPEN_PERM))
		if want := filepath.Join(h.dir, fmt.Sprintf("a/clean%d", i)); got[0].path != want || !got[0].allow {
			t.Fatalf("response %d: got %+v, want allow of %s before the stuck scan's deadline", i, got[0], want)
		}
	}
	select {
	case <-h.resp.done:
	case <-time.After(5 * time.Second):
		t.Fatal("stuck scan not answered by its deadline")
	}
	h.resp.mu.Lock()
	last := h.resp.got[len(h.resp.got)-1]
	h.resp.mu.Unlock()
	if want := filepath.Join(h.dir, "a/stuck"); last.path != want || last.allow {
		t.Errorf("deadline response: got %+v, want deny (on_error) of %s", last, want)
	}
	if c := h.counters(func(c Snapshot) bool { return c.Timeouts == 1 }); c.Timeouts != 1 {
		t.Errorf("timeouts: got %d, want 1", c.Timeouts)
	}
}

// A scan still running at its deadline is canceled when the deadline
// answers the event, and was told that deadline when it started.
func TestHungScanCanceledAtDeadline(t *testing.T) {
	h := newHarness(t, 16, basePolicy)
	ev := h.event("a/hang", "HANG forever", unix.FAN_OPEN_PERM)
	sent := time.Now()
	got := h.send(1, ev)
	answered := time.Now()
	if got[0].allow {
		t.Errorf("deadline response: got allow, want deny (on_error)")
	}
	select {
	case hs := <-h.engine.hung:
		// basePolicy's scan_timeout is 200ms.
		if earliest := sent.Add(200 * time.Millisecond); hs.deadline.Before(earliest) || hs.deadline.After(answered) {
			t.Errorf("scan's deadline: got %v, want from %v to the answer at %v", hs.deadline, earliest, answered)
		}
		if !errors.Is(hs.cause, errTimeout) {
			t.Errorf("scan's context ended by %v, want %v", hs.cause, errTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hung scan's context not canceled at the deadline")
	}
}

// As many stuck scans as workers: the next events find every worker busy
// and get on_error at once, as with a full queue, rather than waiting.
func TestStuckScansUseEveryWorkerThenOnError(t *testing.T) {
	h := newHarness(t, 1, basePolicy)
	for i := range 2 { // Workers
		h.src <- []fanotify.Event{h.event(fmt.Sprintf("a/stuck%d", i), "STUCK on NFS", unix.FAN_OPEN_PERM)}
		// Each in a scan before the next: a worker not yet started
		// leaves the first in the queue of one, and the second is
		// answered with on_error, a worker short of the test's aim.
		waitFor(t, func() bool { return h.engine.count() == i+1 }, "start of stuck scan %d", i)
	}
	var evs []fanotify.Event
	for i := range 4 {
		evs = append(evs, h.event(fmt.Sprintf("a/next%d", i), "hello, world", unix.FAN_OPEN_PERM))
	}
	// One fits in the queue; the stuck ones are answered at their
	// deadline, perhaps among these on a slow guest.
	for _, r := range h.send(3, evs...) {
		if strings.Contains(r.path, "/next") && r.allow {
			t.Errorf("%s: got allow, want on_error deny (queue full)", r.path)
		}
	}
	// Answered for a full queue, not at the deadline.
	var failed []alert.Record
	waitFor(t, func() bool {
		h.alerts.mu.Lock()
		defer h.alerts.mu.Unlock()
		failed = failed[:0]
		for _, rec := range h.alerts.recs {
			if strings.Contains(rec.Path, "/next") {
				failed = append(failed, rec)
			}
		}
		return len(failed) >= 3
	}, "alerts for 3 of the next events")
	if len(failed) != 3 {
		t.Errorf("alerts for the next events: got %d, want 3 (one is in the queue)", len(failed))
	}
	for _, rec := range failed {
		if rec.Action != alert.ActionError || rec.Error != errQueueFull.Error() {
			t.Errorf("%s: alert %q, error %q, want %q, %q", rec.Path, rec.Action, rec.Error, alert.ActionError, errQueueFull)
		}
	}
}

// emfileSource fails its first read as fanotify does when vigil is out of
// descriptors, then reads from the fake.
type emfileSource struct {
	fakeSource
	failed bool
}

func (s *emfileSource) ReadEvents(dst []fanotify.Event) ([]fanotify.Event, error) {
	if !s.failed {
		s.failed = true
		return dst, fmt.Errorf("read fanotify: %w", unix.EMFILE)
	}
	return s.fakeSource.ReadEvents(dst)
}

// Running out of descriptors costs the event the kernel could not hand
// over, not the loop.
func TestOutOfDescriptorsKeepsReading(t *testing.T) {
	dir := t.TempDir()
	pol, diags := policy.Parse([]byte(fmt.Sprintf("watch %q {}\n", dir)), "t.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	src := &emfileSource{fakeSource: make(fakeSource, 1)}
	resp := &fakeResponder{done: make(chan struct{}, 4)}
	l := New(Config{Source: src, Responder: resp, Alerts: &fakeAlerts{}, Workers: 1},
		&State{Policy: pol, Engine: &fakeEngine{}})
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	h := &harness{t: t, dir: dir}
	src.fakeSource <- []fanotify.Event{h.event("f", "clean file", unix.FAN_OPEN_PERM)}
	select {
	case <-resp.done:
	case err := <-done:
		t.Fatalf("Run returned after EMFILE: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no answer after an EMFILE read")
	}
	if c := l.Counters(); c.NoFd != 1 {
		t.Errorf("NoFd: got %d, want 1", c.NoFd)
	}
	close(src.fakeSource)
	<-done
}

// blockedSource's first read waits in the kernel until released, as a
// read(2) of fanotify does while the kernel opens an event's file on a
// hung NFS or FUSE server; then it returns slow. The other reads are the
// fake's.
type blockedSource struct {
	fakeSource
	first   atomic.Bool
	inRead  atomic.Uint64
	release chan struct{}
	once    sync.Once
	slow    []fanotify.Event
}

func newBlockedSource(slow ...fanotify.Event) *blockedSource {
	return &blockedSource{fakeSource: make(fakeSource), release: make(chan struct{}), slow: slow}
}

// feed hands evs to the read after the blocked one, which must take them
// within 5s.
func (s *blockedSource) feed(t *testing.T, evs ...fanotify.Event) {
	t.Helper()
	select {
	case s.fakeSource <- evs:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d events not read while the first read is blocked", len(evs))
	}
}

// unblock lets the blocked read return.
func (s *blockedSource) unblock() { s.once.Do(func() { close(s.release) }) }

// run runs a loop of two workers reading s, with a queue of queue (0: the
// default), and returns its responder. At the end of the test the stuck
// scans and the blocked read are let go, and the loop stopped.
func (s *blockedSource) run(t *testing.T, pol *policy.Policy, queue int) *fakeResponder {
	resp := &fakeResponder{done: make(chan struct{}, 16)}
	engine := &fakeEngine{stuck: make(chan struct{})}
	l := New(Config{Source: s, Responder: resp, Alerts: &fakeAlerts{}, Workers: 2, QueueSize: queue},
		&State{Policy: pol, Engine: engine})
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	t.Cleanup(func() {
		close(engine.stuck)
		s.unblock()
		close(s.fakeSource)
		<-done
	})
	return resp
}

func (s *blockedSource) ReadEvents(dst []fanotify.Event) ([]fanotify.Event, error) {
	if s.first.CompareAndSwap(false, true) {
		s.inRead.Store(1)
		<-s.release
		s.inRead.Store(0)
		return append(dst, s.slow...), nil
	}
	return s.fakeSource.ReadEvents(dst)
}

func (s *blockedSource) InRead() uint64 { return s.inRead.Load() }

// A read blocked in the kernel loses the reading: the events behind it
// are answered meanwhile, and its own once it returns.
func TestBlockedReadDoesNotStallReading(t *testing.T) {
	h := newHarness(t, 16, basePolicy) // for its files; its loop stays idle
	src := newBlockedSource(h.event("a/slow", "hello, world", unix.FAN_OPEN_PERM))
	resp := src.run(t, h.loop.State().Policy, 0)
	for i := range 3 {
		src.feed(t, h.event(fmt.Sprintf("a/next%d", i), "hello, world", unix.FAN_OPEN_PERM))
		select {
		case <-resp.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not answered while the first read is blocked", i)
		}
	}
	src.unblock()
	select {
	case <-resp.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked read's event not answered once it returned")
	}
	resp.mu.Lock()
	defer resp.mu.Unlock()
	if got, want := resp.got[len(resp.got)-1], filepath.Join(h.dir, "a/slow"); got.path != want || !got.allow {
		t.Errorf("last response: got %+v, want allow of %s", got, want)
	}
}

// What a blocked read returns once the reading has gone to another member
// is queued like the rest: with every worker busy and the queue full, it
// gets on_error at once rather than a scan beyond the loop's bound.
func TestBlockedReadKeepsTheBound(t *testing.T) {
	h := newHarness(t, 1, basePolicy) // for its files; its loop stays idle
	src := newBlockedSource(
		h.event("a/slow0", "hello, world", unix.FAN_OPEN_PERM),
		h.event("a/slow1", "hello, world", unix.FAN_OPEN_PERM),
	)
	resp := src.run(t, h.loop.State().Policy, 1)
	// Both workers stuck in scans, a third stuck file in the queue.
	for i := range 3 {
		src.feed(t, h.event(fmt.Sprintf("a/stuck%d", i), "STUCK on NFS", unix.FAN_OPEN_PERM))
		time.Sleep(50 * time.Millisecond) // a scan that lasts loses the reading
	}
	src.unblock()
	slow := map[string]bool{filepath.Join(h.dir, "a/slow0"): true, filepath.Join(h.dir, "a/slow1"): true}
	answered := 0
	for answered < len(slow) {
		select {
		case <-resp.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the blocked read's events not answered")
		}
		resp.mu.Lock()
		answered = 0
		for _, r := range resp.got {
			if slow[r.path] {
				answered++
				if r.allow {
					t.Errorf("%s: got allow, want on_error deny (queue full)", r.path)
				}
			}
		}
		resp.mu.Unlock()
	}
}

// deepFile makes a file deeper than PATH_MAX under dir, with content, and
// returns it open: its path cannot be read back.
func deepFile(t *testing.T, dir, content string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 250)
	for range 20 { // 5,000 bytes of path
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	defer unix.Close(fd)
	f, err := unix.Openat(fd, "f", unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(f, []byte(content)); err != nil {
		t.Fatal(err)
	}
	return f
}

// A file deeper than PATH_MAX, whose path and so whose watch cannot be
// told, is scanned all the same and blocked if infected: a path cannot
// evade the scan by its length.
func TestPathTooLongScanned(t *testing.T) {
	h := newHarness(t, 16, basePolicy)
	evil := fanotify.Event{Mask: unix.FAN_OPEN_PERM, Fd: deepFile(t, h.dir, "INFECTED"), Pid: 1}
	if got := h.send(1, evil); got[0].allow {
		t.Error("an infected file deeper than PATH_MAX allowed")
	}
	other := filepath.Join(h.dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	clean := fanotify.Event{Mask: unix.FAN_OPEN_PERM, Fd: deepFile(t, other, "clean content"), Pid: 1}
	if got := h.send(1, clean); !got[0].allow {
		t.Error("a clean file deeper than PATH_MAX denied")
	}
	h.stop()
	if n := h.engine.count(); n != 2 {
		t.Errorf("scans: got %d, want 2", n)
	}
	if got := h.alerts.actions(); fmt.Sprint(got) != "[blocked]" {
		t.Errorf("alerts: got %v, want [blocked]", got)
	}
}
