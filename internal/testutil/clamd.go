package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// ClamdBin is where Debian's clamav-daemon installs clamd.
const ClamdBin = "/usr/sbin/clamd"

// Clamd is a clamd a test started.
type Clamd struct {
	Cmd  *exec.Cmd
	Unix string // unix:///path
	TCP  string // tcp://127.0.0.1:port
}

// StartClamd runs a real clamd on the .hdb content the test gives (clamd
// has no built-in EICAR signature and will not start without a database)
// and waits until it answers PING. It is killed, by its PID, at cleanup.
// Without clamd the test skips (fails under CI=true: CI installs it).
func StartClamd(t testing.TB, hdb string) *Clamd {
	t.Helper()
	if _, err := os.Stat(ClamdBin); err != nil {
		skip(t, fmt.Sprintf("%s not installed (apt-get install clamav-daemon): %v", ClamdBin, err))
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db, "vigil-test.hdb"), []byte(hdb), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	sock := filepath.Join(dir, "clamd.ctl")
	conf := filepath.Join(dir, "clamd.conf")
	logFile := filepath.Join(dir, "clamd.log")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`LocalSocket %s
TCPSocket %d
TCPAddr 127.0.0.1
Foreground yes
DatabaseDirectory %s
LogFile %s
StreamMaxLength 1M
Bytecode no
`, sock, port, db, logFile)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ClamdBin, "--config-file="+conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			if b, err := os.ReadFile(logFile); err == nil {
				t.Logf("clamd log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := ping(sock)
		if err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("clamd exited before answering PING: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clamd not answering PING after 90s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return &Clamd{Cmd: cmd, Unix: "unix://" + sock, TCP: fmt.Sprintf("tcp://127.0.0.1:%d", port)}
}

// ping sends clamd's zPING and expects PONG.
func ping(sock string) error {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("PONG")) {
		return fmt.Errorf("PING: got %q", buf[:n])
	}
	return nil
}
