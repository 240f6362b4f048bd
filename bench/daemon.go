package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemonProc is a `vigil run` started by the bench (or a clamonacc, see
// clamonacc.go: it shares the way out). It is killed by PID
// when the bench ends, on a signal, or when its deadline passes (which
// releases any open waiting for it); if the bench dies outright, the
// kernel kills it (Pdeathsig).
type daemonProc struct {
	e      *env
	cmd    *exec.Cmd
	log    string // its stderr, a file: complete up to READY=1 once that is read
	socket string
	exited chan struct{}
	timer  *time.Timer
	ready  time.Duration // from exec until READY=1
}

// startDaemon runs vigil with a policy watching trees (recursively, open
// and exec, the defaults) with the bench's database, and waits for
// READY=1 on NOTIFY_SOCKET.
func (e *env) startDaemon(name string, trees ...string) (*daemonProc, error) {
	var watches strings.Builder
	for _, t := range trees {
		fmt.Fprintf(&watches, "watch %q {}\n", t)
	}
	return e.startVigil(name, watches.String())
}

func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

// kill sends SIGKILL: the kernel then allows every open waiting for it.
func (d *daemonProc) kill() { d.cmd.Process.Kill() }

func (d *daemonProc) wait() { <-d.exited }

// stop asks the daemon to exit (SIGTERM), kills it after 10s, and forgets
// it. Calling it again does nothing.
func (d *daemonProc) stop() {
	d.timer.Stop()
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			fmt.Fprintf(d.e.log, "bench: daemon %d ignored SIGTERM for 10s: killing it\n", d.pid())
			d.kill()
			<-d.exited
		}
	}
	d.e.mu.Lock()
	delete(d.e.daemons, d)
	d.e.mu.Unlock()
}

// rss reads the daemon's resident set and its peak from /proc.
func (d *daemonProc) rss() (rss, peak int64, err error) { return statusMemory(d.pid()) }

// statusMemory reads a process's resident set and its peak.
func statusMemory(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	return parseStatusKiB(b, "VmRSS"), parseStatusKiB(b, "VmHWM"), nil
}

// statusField returns the value of field in /proc/PID/status text
// ("VmRSS:   12345 kB" gives "12345 kB"); false if absent.
func statusField(status []byte, field string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// parseStatusKiB returns field (e.g. "VmRSS:   12345 kB") in bytes, -1 if
// absent.
func parseStatusKiB(status []byte, field string) int64 {
	v, ok := statusField(status, field)
	f := strings.Fields(v)
	if !ok || len(f) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return -1
	}
	return n << 10
}

// placed parses the daemon's "watches placed" log line.
func (d *daemonProc) placed() (dirs int, elapsed time.Duration, err error) {
	return d.logged("watches placed")
}

// crossChecked parses the daemon's "cross-check sources placed" log line:
// inotify tracking, after start-up, what the eBPF tracer tracked during it.
func (d *daemonProc) crossChecked() (dirs int, elapsed time.Duration, err error) {
	return d.logged("cross-check sources placed")
}

func (d *daemonProc) logged(msg string) (dirs int, elapsed time.Duration, err error) {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return 0, 0, fmt.Errorf("read daemon log: %w", err)
	}
	return parsePlaced(b, msg)
}

// waitCrossCheck waits, up to the daemon's deadline, for the cross-check
// sources to have tracked the start-up directories, and for the daemon to
// have given back what start-up allocated (just after it logs the end of
// the cross-check): until then its memory is not what it runs with.
func (d *daemonProc) waitCrossCheck() error {
	for {
		c, err := d.counters()
		if err != nil {
			return err
		}
		if c["cross_check_backlog"] == 0 {
			break
		}
		if err := d.e.stopped(); err != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The line follows the last batch, which the backlog counter no longer
	// counts; without the eBPF tracer (inotify primary) it never comes.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, _, err := d.crossChecked(); err == nil {
			time.Sleep(200 * time.Millisecond) // debug.FreeOSMemory, after the log line
			return nil
		}
	}
	return nil
}

// parsePlaced finds the log line msg, with its dirs and elapsed.
func parsePlaced(log []byte, msg string) (dirs int, elapsed time.Duration, err error) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		var rec struct {
			Message string          `json:"@message"`
			Dirs    int             `json:"dirs"`
			Elapsed json.RawMessage `json:"elapsed"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Message != msg {
			continue
		}
		// hclog writes a time.Duration as nanoseconds; accept "1.5ms" too.
		var ns int64
		if json.Unmarshal(rec.Elapsed, &ns) == nil {
			return rec.Dirs, time.Duration(ns), nil
		}
		var s string
		if json.Unmarshal(rec.Elapsed, &s) == nil {
			if el, err := time.ParseDuration(s); err == nil {
				return rec.Dirs, el, nil
			}
		}
		return 0, 0, fmt.Errorf("%s: elapsed %s not understood", msg, rec.Elapsed)
	}
	return 0, 0, fmt.Errorf("no %q line in the daemon log", msg)
}

// counters asks the daemon through `vigil status --json`, the CLI
// contract.
func (d *daemonProc) counters() (map[string]uint64, error) {
	select {
	case <-d.exited:
		return nil, fmt.Errorf("vigil status: daemon %d is gone: %v", d.pid(), d.cmd.ProcessState)
	default:
	}
	out, err := exec.Command(d.e.vigil, "status", "--json", "--socket", d.socket).Output()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return nil, fmt.Errorf("vigil status: %w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	if err != nil {
		return nil, fmt.Errorf("vigil status: %w", err)
	}
	var st struct {
		Ready    bool              `json:"ready"`
		Counters map[string]uint64 `json:"counters"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("vigil status: %w", err)
	}
	if !st.Ready {
		return nil, errors.New("vigil status: not ready")
	}
	return st.Counters, nil
}

// logTail returns the end of the daemon's log, for error messages.
func (d *daemonProc) logTail(n int) string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Sprintf("(no daemon log: %v)", err)
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
