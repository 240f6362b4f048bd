package main

import (
	"context"
	"crypto/md5"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/scan/clamd"
)

// clamdBin is where Debian's clamav-daemon installs clamd.
const clamdBin = "/usr/sbin/clamd"

var clamdSection = section{
	name:  "clamd",
	title: "clamd engine: per-file latency, FILDES (unix socket) vs INSTREAM (TCP)",
	needs: []need{{func(*env) string {
		if _, err := os.Stat(clamdBin); err != nil {
			return fmt.Sprintf("%s not installed (apt-get install clamav-daemon)", clamdBin)
		}
		return ""
	}}},
	run: runClamd,
}

// runClamd starts a clamd of its own on a one-signature database (EICAR's
// MD5: clamd will not start without a database) and scans clean 4 KiB
// files with internal/scan/clamd's Engine, one file at a time, over each
// transport. The time is Engine.Scan's, on a pooled session: what a
// worker of the daemon waits for each first open.
func runClamd(e *env) ([]row, error) {
	files := 2000
	if e.quick {
		files = 300
	}
	dir, err := e.dir("clamd")
	if err != nil {
		return nil, err
	}
	e.progress("clamd: starting %s", clamdBin)
	cd, err := startClamd(e, dir, fmt.Sprintf("%x:%d:Bench.EICAR\n", md5.Sum([]byte(clamav.EICAR)), len(clamav.EICAR)))
	if err != nil {
		return nil, err
	}
	defer cd.stop()

	data := randomBytes(latencyFileSize)
	paths := make([]string, files)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%04d", i))
		copy(data, fmt.Sprintf("%08d", i))
		if err := os.WriteFile(paths[i], data, 0o644); err != nil {
			return nil, fmt.Errorf("write clamd file: %w", err)
		}
	}
	eicar := filepath.Join(dir, "eicar")
	if err := os.WriteFile(eicar, []byte(clamav.EICAR), 0o644); err != nil {
		return nil, fmt.Errorf("write eicar: %w", err)
	}

	var rows []row
	for _, tr := range []struct{ name, addr string }{{"FILDES over the unix socket", cd.unix}, {"INSTREAM over TCP", cd.tcp}} {
		eng, err := clamd.New(clamd.Config{Address: tr.addr, Timeout: 10 * time.Second}, nil)
		if err != nil {
			return rows, err
		}
		lat, err := clamdLatencies(e, eng, paths, eicar)
		eng.Close()
		if err != nil {
			return rows, fmt.Errorf("%s: %w", tr.name, err)
		}
		rows = append(rows, row{
			figure:   fmt.Sprintf("clamd engine, %s: per-file latency of a clean 4 KiB file, p50 / p99 (%s files, one at a time, pooled session)", tr.name, group(int64(files))),
			aim:      "report",
			measured: p50p99(lat),
			ref:      "~1 ms median (clamonacc + clamd)",
		})
	}
	return rows, nil
}

// clamdLatencies scans eicar (it must be found), then every path once
// untimed, then again timing each Engine.Scan.
func clamdLatencies(e *env, eng *clamd.Engine, paths []string, eicar string) ([]time.Duration, error) {
	ctx := context.Background()
	scan := func(p string) (bool, time.Duration, error) {
		f, err := os.Open(p)
		if err != nil {
			return false, 0, fmt.Errorf("open %s: %w", p, err)
		}
		defer f.Close()
		start := time.Now()
		res, err := eng.Scan(ctx, f)
		return res.Infected, time.Since(start), err
	}
	if infected, _, err := scan(eicar); err != nil || !infected {
		return nil, fmt.Errorf("clamd on EICAR: infected %v, %v; want infected", infected, err)
	}
	for _, p := range paths {
		if _, _, err := scan(p); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, len(paths))
	for i, p := range paths {
		if i%200 == 0 {
			if err := e.stopped(); err != nil {
				return nil, err
			}
		}
		infected, d, err := scan(p)
		if err != nil {
			return nil, err
		}
		if infected {
			return nil, fmt.Errorf("clamd: clean file %s reported infected", p)
		}
		lat = append(lat, d)
	}
	return lat, nil
}

// clamdProc is a clamd the bench started; it is killed by its PID when
// the section ends, after the bench's deadline, or with the bench
// (Pdeathsig).
type clamdProc struct {
	cmd       *exec.Cmd
	conf      string
	unix, tcp string // engine addresses
	log       string
	exited    chan struct{}
	timer     *time.Timer
}

// startClamd writes a clamd configuration (plus the extra lines, e.g.
// clamonacc's OnAccess* options) and an .hdb database with hdb's content
// in dir, starts clamd in the foreground and waits until it answers PING
// on its unix socket. It is internal/testutil's StartClamd for a program:
// that one needs a testing.TB.
func startClamd(e *env, dir, hdb string, extra ...string) (*clamdProc, error) {
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		return nil, fmt.Errorf("create clamd database dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(db, "bench.hdb"), []byte(hdb), 0o644); err != nil {
		return nil, fmt.Errorf("write clamd database: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sock := filepath.Join(dir, "clamd.ctl")
	conf := filepath.Join(dir, "clamd.conf")
	c := &clamdProc{
		conf:   conf,
		unix:   "unix://" + sock,
		tcp:    fmt.Sprintf("tcp://127.0.0.1:%d", port),
		log:    filepath.Join(dir, "clamd.log"),
		exited: make(chan struct{}),
	}
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`LocalSocket %s
TCPSocket %d
TCPAddr 127.0.0.1
Foreground yes
DatabaseDirectory %s
LogFile %s
StreamMaxLength 1M
Bytecode no
%s`, sock, port, db, c.log, confLines(extra))), 0o644)
	if err != nil {
		return nil, fmt.Errorf("write clamd.conf: %w", err)
	}
	c.cmd = exec.Command(clamdBin, "--config-file="+conf)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start clamd: %w", err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	c.timer = time.AfterFunc(e.deadline, func() {
		fmt.Fprintf(e.log, "bench: clamd %d still running after %v: killing it\n", c.cmd.Process.Pid, e.deadline)
		c.cmd.Process.Kill()
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := clamdUp(sock)
		if err == nil {
			return c, nil
		}
		select {
		case <-c.exited:
			c.stop()
			return nil, fmt.Errorf("clamd exited before answering PING: %v\n%s", err, c.logTail())
		default:
		}
		if e.stopped() != nil || time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("clamd not answering PING: %v\n%s", err, c.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// confLines joins ls, one a line.
func confLines(ls []string) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// stop kills clamd by its PID and reaps it.
func (c *clamdProc) stop() {
	c.timer.Stop()
	c.cmd.Process.Kill()
	<-c.exited
}

func (c *clamdProc) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return fmt.Sprintf("(no clamd log: %v)", err)
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// clamdUp reports whether clamd answers, through the engine's own PING.
func clamdUp(sock string) error {
	eng, err := clamd.New(clamd.Config{Address: "unix://" + sock, Timeout: 2 * time.Second}, nil)
	if err != nil {
		return err
	}
	eng.Close()
	return nil
}
