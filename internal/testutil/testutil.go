package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI (CI=true), where root and the
// kernel features are known to be present: there a missing one fails the
// test rather than skipping it, so a broken probe cannot hide as a skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// skip skips t, or fails it in CI.
func skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true: CI must provide it)", reason)
		return
	}
	t.Skip(reason)
}

// SkipUnlessRoot skips t unless it runs as root.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		skip(t, fmt.Sprintf("needs root, running as uid %d", euid))
	}
}

var fanotifyProbe struct {
	once sync.Once
	err  error
}

// probeFanotify creates and closes a permission-class fanotify group.
func probeFanotify() error {
	fanotifyProbe.once.Do(func() {
		fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY)
		if err != nil {
			fanotifyProbe.err = err
			return
		}
		unix.Close(fd)
	})
	return fanotifyProbe.err
}

// SkipUnlessFanotify skips t unless it runs as root on a kernel that offers
// fanotify permission events (fanotify_init with FAN_CLASS_CONTENT).
func SkipUnlessFanotify(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		skip(t, fmt.Sprintf("needs root for fanotify, running as uid %d", euid))
		return
	}
	err := probeFanotify()
	switch {
	case err == nil:
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM), errors.Is(err, unix.EINVAL):
		skip(t, fmt.Sprintf("fanotify permission events unavailable: fanotify_init(FAN_CLASS_CONTENT): %v", err))
	default:
		t.Fatalf("fanotify_init(FAN_CLASS_CONTENT): %v", err)
	}
}

// TempDir returns a new directory under os.TempDir(), removed when t ends.
// The path has its symlinks resolved, so it compares equal to the paths the
// kernel reports (readlink of /proc/self/fd/N).
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(os.TempDir(), "vigil-test-")
	if err != nil {
		t.Fatalf("create temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove temp dir: %v", err)
		}
	})
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatalf("resolve temp dir: %v", err)
	}
	return real
}

// Deadline calls onTimeout (may be nil) and fails t if t is still running
// after d. onTimeout is where a test releases what may hang, e.g. kills the
// daemon so the kernel allows every blocked open.
func Deadline(t testing.TB, d time.Duration, onTimeout func()) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(d, func() {
		defer close(done)
		if onTimeout != nil {
			onTimeout()
		}
		t.Errorf("deadline %v exceeded", d)
	})
	t.Cleanup(func() {
		if !timer.Stop() {
			<-done // fired: let it report before t completes
		}
	})
}

// Stop sends SIGSTOP to the process pid and waits, up to 10s, until every
// one of its threads has stopped: kill(2) returns before they do, and a
// thread still running could answer what the test means to leave pending.
func Stop(t testing.TB, pid int) {
	t.Helper()
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatalf("stop %d: %v", pid, err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		running, err := runningThreads(pid)
		if err != nil {
			t.Fatalf("stop %d: %v", pid, err)
		}
		if running == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("stop %d: %d threads still running after 10s", pid, running)
		}
	}
}

// runningThreads counts the threads of pid not in the stopped state ("T"
// in /proc/PID/task/TID/stat; "t" is a tracing stop).
func runningThreads(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no threads found in /proc: %v", err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // the thread exited
		}
		// "tid (comm) S ...": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return 0, fmt.Errorf("parse %s: %q", task, b)
		}
		if state := b[i+2]; state != 'T' && state != 't' {
			n++
		}
	}
	return n, nil
}
