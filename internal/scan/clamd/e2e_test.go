package clamd

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilsec/vigil/internal/scan"
)

const clamdBin = "/usr/sbin/clamd"

const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// startClamd runs a real clamd on a database the test writes (clamd has
// no built-in EICAR signature and will not start without a database) and
// returns its unix and TCP addresses. It is killed, by its PID, at the end.
func startClamd(t *testing.T, hdb string) (*exec.Cmd, string, string) {
	t.Helper()
	if _, err := os.Stat(clamdBin); err != nil {
		t.Skipf("%s not installed (apt-get install clamav-daemon): %v", clamdBin, err)
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
	cmd := exec.Command(clamdBin, "--config-file="+conf)
	// Foreground clamd logs to stdout too; the log file is shown on failure.
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
		e, err := New(Config{Address: "unix://" + sock, Timeout: 2 * time.Second}, nil)
		if err == nil {
			e.Close()
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
	return cmd, "unix://" + sock, fmt.Sprintf("tcp://127.0.0.1:%d", port)
}

func TestRealClamd(t *testing.T) {
	bad := "vigil clamd end-to-end test sample\n"
	hdb := fmt.Sprintf("%x:%d:Eicar-Test-Signature\n%x:%d:Vigil.Test.Hash\n",
		md5.Sum([]byte(eicar)), len(eicar), md5.Sum([]byte(bad)), len(bad))
	cmd, unixAddr, tcpAddr := startClamd(t, hdb)

	tests := []struct {
		name    string
		content string
		want    scan.Result
	}{
		// clamd marks signatures of databases other than ClamAV's own.
		{"eicar", eicar, scan.Result{Infected: true, Signature: "Eicar-Test-Signature.UNOFFICIAL"}},
		{"hash signature", bad, scan.Result{Infected: true, Signature: "Vigil.Test.Hash.UNOFFICIAL"}},
		{"clean", "nothing to see here\n", scan.Result{}},
	}
	engines := map[string]*Engine{}
	for _, addr := range []string{unixAddr, tcpAddr} {
		e, err := New(Config{Address: addr, Timeout: 3 * time.Second, Conns: 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		engines[addr[:strings.Index(addr, ":")]] = e
		if v := e.Version(); !strings.HasPrefix(v, "ClamAV ") {
			t.Fatalf("got version %q want ClamAV ...", v)
		}
	}
	for network, e := range engines {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				// Twice: the second goes over the pooled session.
				for range 2 {
					got, err := e.Scan(context.Background(), tempFile(t, []byte(tt.content)))
					if err != nil || got != tt.want {
						t.Fatalf("got %+v, %v want %+v", got, err, tt.want)
					}
				}
			})
		}
	}
	t.Run("tcp/stream size limit", func(t *testing.T) {
		_, err := engines["tcp"].Scan(context.Background(), tempFile(t, make([]byte, 3<<20)))
		if !errors.Is(err, ErrSizeLimit) {
			t.Fatalf("got error %v want %v", err, ErrSizeLimit)
		}
	})
	t.Run("unix/large file by descriptor", func(t *testing.T) {
		// FILDES is not subject to StreamMaxLength.
		got, err := engines["unix"].Scan(context.Background(), tempFile(t, make([]byte, 3<<20)))
		if err != nil || got.Infected {
			t.Fatalf("got %+v, %v want clean", got, err)
		}
	})

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for network, e := range engines {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := e.Scan(ctx, tempFile(t, []byte("x")))
		cancel()
		if err == nil {
			t.Fatalf("%s: got a scan with clamd killed want an error", network)
		}
		if d := time.Since(start); d > 3*time.Second+500*time.Millisecond {
			t.Fatalf("%s: got failure after %v want within the 3s timeout", network, d)
		}
		if err := e.Ping(context.Background()); err == nil {
			t.Fatalf("%s: got ping ok with clamd killed", network)
		}
	}
}
