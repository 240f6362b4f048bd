package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilsec/vigil/internal/testutil"
)

var initBin struct {
	once sync.Once
	path string
	err  error
}

// buildInit builds vmtest as the guest's init: static, as the guest needs.
func buildInit(t *testing.T) string {
	t.Helper()
	initBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "vmtest-init-")
		if err != nil {
			initBin.err = err
			return
		}
		initBin.path = filepath.Join(dir, "vmtest")
		cmd := exec.Command("go", "build", "-o", initBin.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			initBin.err = errors.New(string(out))
		}
	})
	if initBin.err != nil {
		t.Fatalf("build vmtest: %v", initBin.err)
	}
	return initBin.path
}

// TestBootRoot boots the first installed kernel of kernels.txt for real.
// It skips where no listed kernel is installed (make vmtest-deps); once
// one is, a missing qemu is a failure in CI, since the same script installs
// both.
func TestBootRoot(t *testing.T) {
	if os.Getenv("VMTEST_GUEST") == "1" {
		t.Skip("already in a vmtest guest")
	}
	if testing.Short() {
		t.Skip("boots a kernel: not in -short")
	}
	testutil.SkipUnlessRoot(t)
	kernels := listedKernels(t)
	if len(kernels) == 0 {
		t.Skip("no kernel of vmtest/kernels.txt is installed (make vmtest-deps)")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if testutil.InCI() {
			t.Fatalf("kernels installed but no qemu: %v (make vmtest-deps installs both)", err)
		}
		t.Skipf("no qemu: %v", err)
	}
	k, err := prepareKernel(kernels[0], t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := vmFlags{accel: "auto", cpus: 2, mem: 1024, tcgScale: 4}
	base := vm{Qemu: qemu, Kernel: k, Init: buildInit(t), CPUs: 2, MemMB: 1024, Tmpfs: []string{"/tmp", "/run", "/root"}, Env: f.guestEnv()}
	accel, why, err := f.accelerator(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booting %s under %s (%s)", k.Name, accel, why)
	base.Accel = accel

	work := t.TempDir()
	tool := filepath.Join(work, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho staged tool\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }
	tests := []struct {
		name       string
		argv       []string
		timeout    time.Duration
		wantStatus int
		wantOut    string
		wantErr    error
		stage      []string
		check      func(t *testing.T)
	}{
		{name: "status passes through", argv: sh("exit 7"), wantStatus: 7},
		{name: "output streams", argv: sh("echo hello from $(uname -r)"), wantOut: "hello from " + k.Release},
		{
			name: "mounts, read-only root, writable work tree",
			argv: sh(`set -e
for fs in proc sysfs devtmpfs tmpfs bpf tracefs securityfs cgroup2 9p; do grep -q " $fs " /proc/mounts || { echo "no $fs"; exit 9; }; done
if touch /etc/vmtest-was-here 2>/dev/null; then echo "root is writable"; exit 8; fi
touch /tmp/x /root/x
echo guest > ` + work + `/from-guest
test "$(id -u)" = 0`),
			check: func(t *testing.T) {
				got, err := os.ReadFile(filepath.Join(work, "from-guest"))
				if err != nil || string(got) != "guest\n" {
					t.Errorf("got %q, %v from the guest's write want %q", got, err, "guest\n")
				}
			},
		},
		{
			name:  "staged in memory",
			stage: []string{tool},
			// Executed from the guest's tmpfs, not over 9p.
			argv:    sh(`test "$(stat -f -c %T ` + staged(tool) + `)" = tmpfs && ` + staged(tool)),
			wantOut: "staged tool",
		},
		{name: "kernel panic", argv: sh("echo c > /proc/sysrq-trigger; sleep 60"), wantErr: errPanic},
		{name: "hang", argv: []string{"/bin/sleep", "3600"}, timeout: 20 * time.Second, wantErr: errTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			v := base
			v.WorkDir = work
			v.Steps = []step{{Name: "sh", Dir: "/", Argv: tt.argv}}
			v.Stage = tt.stage
			v.Output = &out
			v.Timeout = f.scaled(time.Minute, accel)
			if tt.timeout != 0 {
				v.Timeout = tt.timeout // unscaled: the guest boots in seconds, then hangs
			}
			start := time.Now()
			got, err := v.Run(context.Background())
			if elapsed := time.Since(start); elapsed > v.Timeout+10*time.Second {
				t.Errorf("got an outcome after %s want one within its %s timeout", elapsed, v.Timeout)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got status %d, error %v want %v\n%s", got.Status, err, tt.wantErr, out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v want status %d\n%s", err, tt.wantStatus, out.String())
			}
			if got.Status != tt.wantStatus {
				t.Errorf("got status %d want %d\n%s", got.Status, tt.wantStatus, out.String())
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("got output %q want it to contain %q", out.String(), tt.wantOut)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}
