package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// startVigil runs vigil with the watch blocks given as policy text (e.g.
// `watch "/x" { mode = "filesystem" }`), the bench's database and
// settings, and waits for READY=1 on NOTIFY_SOCKET. The daemon is killed
// by PID at its deadline and on every way out of the bench.
func (e *env) startVigil(name, watches string) (*daemonProc, error) {
	if e.vigilErr != nil {
		return nil, e.vigilErr
	}
	db, err := e.daemonDB()
	if err != nil {
		return nil, err
	}
	state, err := e.dir("daemon-" + name)
	if err != nil {
		return nil, err
	}
	d := &daemonProc{
		e:      e,
		log:    filepath.Join(state, "vigil.log"),
		socket: filepath.Join(state, "vigil.sock"),
		exited: make(chan struct{}),
	}
	pol := fmt.Sprintf(`engine "builtin" {
  databases = [%q]
}
settings {
  workers        = %d
  scan_timeout   = "5s"
  on_error       = "allow"
  control_socket = %q
  alert_log      = %q
}
%s`, db, runtime.NumCPU(), d.socket, filepath.Join(state, "alerts.jsonl"), watches)
	polFile := filepath.Join(state, "policy.hcl")
	if err := os.WriteFile(polFile, []byte(pol), 0o600); err != nil {
		return nil, fmt.Errorf("write policy: %w", err)
	}

	notify := filepath.Join(state, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", notify, err)
	}
	defer ln.Close()

	d.cmd = exec.Command(e.vigil, "run", "--policy", polFile, "--log-format", "json")
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	logFile, err := os.Create(d.log)
	if err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	defer logFile.Close()
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	e.mu.Lock()
	if e.closed || e.stop.Load() {
		e.mu.Unlock()
		return nil, errors.New("start vigil: bench is stopping")
	}
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("start vigil: %w", err)
	}
	e.daemons[d] = true
	e.mu.Unlock()
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	d.timer = time.AfterFunc(e.deadline, func() {
		fmt.Fprintf(e.log, "bench: daemon %d still running after %v: killing it\n", d.cmd.Process.Pid, e.deadline)
		d.kill()
	})

	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		ln.SetReadDeadline(time.Now().Add(time.Minute))
		n, _, err := ln.ReadFromUnix(buf)
		if err == nil && string(buf[:n]) != "READY=1" {
			err = fmt.Errorf("notify: got %q want READY=1", buf[:n])
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("vigil not ready: %w\n%s", err, d.logTail(2000))
		}
		d.ready = time.Since(start)
	case <-d.exited:
		d.stop()
		return nil, fmt.Errorf("vigil exited before ready: %v\n%s", d.cmd.ProcessState, d.logTail(2000))
	}
	return d, nil
}

// watchBlock is one watch of the policy, in mode ("tree" or "filesystem").
func watchBlock(path, mode string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "watch %q {\n", path)
	if mode != "" {
		fmt.Fprintf(&b, "  mode = %q\n", mode)
	}
	b.WriteString("}\n")
	return b.String()
}

// metrics scrapes the daemon through `vigil metrics`, the CLI contract.
func (d *daemonProc) metrics() ([]byte, error) {
	select {
	case <-d.exited:
		return nil, fmt.Errorf("vigil metrics: daemon %d is gone: %v", d.pid(), d.cmd.ProcessState)
	default:
	}
	out, err := exec.Command(d.e.vigil, "metrics", "--socket", d.socket).Output()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return nil, fmt.Errorf("vigil metrics: %w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	if err != nil {
		return nil, fmt.Errorf("vigil metrics: %w", err)
	}
	return out, nil
}
