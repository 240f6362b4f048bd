package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeTB records what a helper does to its test instead of doing it.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	skipped  string
	fatal    string
	errs     []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipped = fmt.Sprint(args...)
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatal = fmt.Sprintf(format, args...)
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestSkip(t *testing.T) {
	tests := []struct {
		name      string
		ci        string
		wantSkip  bool
		wantFatal bool
	}{
		{name: "local", ci: "", wantSkip: true},
		{name: "ci", ci: "true", wantFatal: true},
		{name: "ci false", ci: "false", wantSkip: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			f := &fakeTB{}
			skip(f, "no widget")
			if got := f.skipped != ""; got != tt.wantSkip {
				t.Errorf("skipped: got %v (%q) want %v", got, f.skipped, tt.wantSkip)
			}
			if got := f.fatal != ""; got != tt.wantFatal {
				t.Errorf("fatal: got %v (%q) want %v", got, f.fatal, tt.wantFatal)
			}
			if msg := f.skipped + f.fatal; !strings.Contains(msg, "no widget") {
				t.Errorf("reason: got %q want it to contain %q", msg, "no widget")
			}
		})
	}
}

func TestSkipUnlessRoot(t *testing.T) {
	t.Setenv("CI", "")
	f := &fakeTB{}
	SkipUnlessRoot(f)
	if got, want := f.skipped != "", os.Geteuid() != 0; got != want {
		t.Errorf("skipped: got %v want %v", got, want)
	}
}

func TestSkipUnlessFanotify(t *testing.T) {
	t.Setenv("CI", "")
	f := &fakeTB{}
	SkipUnlessFanotify(f)
	if f.fatal != "" {
		t.Fatalf("got fatal %q want a pass or a skip", f.fatal)
	}
	if f.skipped == "" && probeFanotify() != nil {
		t.Errorf("not skipped although the probe failed: %v", probeFanotify())
	}
}

func TestTempDir(t *testing.T) {
	var dir string
	t.Run("use", func(t *testing.T) {
		dir = TempDir(t)
		tmp, err := filepath.EvalSymlinks(os.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(dir) != tmp {
			t.Errorf("got %s want a directory directly under %s", dir, tmp)
		}
		if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after the test: got %v want the directory removed", err)
	}
}

func TestDeadline(t *testing.T) {
	tests := []struct {
		name     string
		d        time.Duration
		work     time.Duration
		wantFire bool
	}{
		{name: "fires", d: 10 * time.Millisecond, work: 200 * time.Millisecond, wantFire: true},
		{name: "stopped at cleanup", d: 200 * time.Millisecond, work: 0, wantFire: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTB{}
			fired := make(chan struct{})
			Deadline(f, tt.d, func() { close(fired) })
			time.Sleep(tt.work)
			f.runCleanups()
			time.Sleep(2 * tt.d) // a timer left armed would fire now
			var got bool
			select {
			case <-fired:
				got = true
			default:
			}
			if got != tt.wantFire {
				t.Errorf("onTimeout called: got %v want %v", got, tt.wantFire)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := len(f.errs) > 0; got != tt.wantFire {
				t.Errorf("errors: got %q want failed=%v", f.errs, tt.wantFire)
			}
		})
	}
}

func TestStop(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1): %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	if n, err := runningThreads(pid); err != nil || n != 1 {
		t.Fatalf("before Stop: got %d threads not stopped (%v), want 1", n, err)
	}
	Stop(t, pid)
	if n, err := runningThreads(pid); err != nil || n != 0 {
		t.Errorf("after Stop: got %d threads not stopped (%v), want 0", n, err)
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// MountFUSE serves directories; after Hang it holds this process's
// requests and still serves other processes'; at the end it answers what
// it held and is unmounted.
func TestMountFUSE(t *testing.T) {
	var dir string
	stat := make(chan error, 1)
	t.Run("use", func(t *testing.T) {
		fs := MountFUSE(t)
		dir = fs.Dir
		a := filepath.Join(dir, "a")
		if err := os.Mkdir(a, 0o755); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(a); err != nil || !fi.IsDir() {
			t.Fatalf("stat %s: %v, %v", a, fi, err)
		}
		fs.Hang(t, os.Getpid())
		if out, err := exec.Command("mkdir", filepath.Join(a, "b")).CombinedOutput(); err != nil {
			t.Fatalf("mkdir by another process after Hang: %v: %s", err, out)
		}
		go func() {
			_, err := os.Stat(filepath.Join(a, "b"))
			stat <- err
		}()
		select {
		case <-fs.Held():
		case <-time.After(10 * time.Second):
			t.Fatal("this process's stat was not held")
		}
		select {
		case err := <-stat:
			t.Fatalf("stat answered while held: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	})
	select {
	case <-stat: // answered (or failed) once released
	case <-time.After(10 * time.Second):
		t.Fatal("held stat not released at the end of the test")
	}
	// Removed by TempDir's cleanup, which it could not be while mounted.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after the test: got %v want the mount point unmounted and removed", err)
	}
}
