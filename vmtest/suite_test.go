package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseKernelList(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{name: "packages and comments", in: "# kernels\nlinux-image-6.1.0-57-amd64\n\n  linux-image-6.12.117+deb12-amd64  # backport\n", want: []string{"linux-image-6.1.0-57-amd64", "linux-image-6.12.117+deb12-amd64"}},
		{name: "empty", in: "# none yet\n"},
		{name: "two on a line", in: "linux-image-a linux-image-b\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKernelList(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

// TestKernelListInstalls checks the list the Makefile uses: pinned Debian
// packages, each an exact versioned name.
func TestKernelListInstalls(t *testing.T) {
	f, err := os.Open("kernels.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	list, err := parseKernelList(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) < 2 {
		t.Fatalf("got %d kernels want at least 6.1 and 6.12", len(list))
	}
	// A release has three numbers: linux-image-amd64 and
	// linux-image-6.12-amd64 are the meta packages that move.
	exact := regexp.MustCompile(`^linux-image-\d+\.\d+\.\d+[-+][^ ]*-amd64$`)
	for _, k := range list {
		if !exact.MatchString(k) {
			t.Errorf("got %q want an exact linux-image-<release> package", k)
		}
	}
}

func TestTally(t *testing.T) {
	out := `kernel                                             6.12.117+deb12-amd64
eBPF directory events, hook fentry                 yes
directory events                                   hook=fentry, with inotify beside it
vmtest: step features: exit 0 in 4.2s
=== RUN   TestEventsRoot
    tracer_linux_test.go:29: [INFO]  dirtrace: tracing directory events: hook=kprobe
--- PASS: TestEventsRoot (4.19s)
    --- PASS: TestEventsRoot/fentry (1.38s)
    --- SKIP: TestEventsRoot/kprobe (0.00s)
--- FAIL: TestBlock (1.00s)
    --- FAIL: TestBlock/exec (1.00s)
FAIL
vmtest: step cmd/vigil: exit 1 in 20s
vmtest: exit status 1
`
	var passed bytes.Buffer
	tl := &tally{w: &passed}
	// In pieces that split lines, as a pipe delivers them.
	for chunk := range slices.Chunk([]byte(out), 7) {
		tl.Write(chunk)
	}
	if passed.String() != out {
		t.Errorf("got output %q want it passed on unchanged", passed.String())
	}
	got := fmt.Sprintf("hook=%s passed=%d failed=%d skipped=%d tests=%v steps=%v", tl.hook, tl.passed, tl.failed, tl.skipped, tl.failedTests, tl.failedSteps)
	want := "hook=fentry passed=2 failed=2 skipped=1 tests=[TestBlock TestBlock/exec] steps=[cmd/vigil exit 1]"
	if got != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		err         error
		failedSteps []string
		failed      int
		want        string
		wantOK      bool
	}{
		{name: "pass", want: "ok", wantOK: true},
		{name: "status", status: 1, want: "FAIL (status 1)"},
		{name: "failed step", status: 1, failedSteps: []string{"cmd/vigil exit 1"}, want: "FAIL (status 1; cmd/vigil exit 1)"},
		{name: "failed test, status 0", failed: 1, want: "FAIL (status 0)"},
		{name: "panic", err: fmt.Errorf("%w: Kernel panic - not syncing: Fatal exception", errPanic), want: "PANIC: guest kernel panicked: Kernel panic - not syncing: Fatal exception"},
		{name: "hang", err: fmt.Errorf("%w after 40m0s (qemu killed)", errTimeout), want: "HUNG: guest timed out after 40m0s (qemu killed)"},
		{name: "other", err: errors.New("kernel x: no such file"), want: "ERROR: kernel x: no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := row{t: &tally{failedSteps: tt.failedSteps, failed: tt.failed}}
			r.verdict(tt.status, tt.err)
			if r.result != tt.want || r.ok != tt.wantOK {
				t.Errorf("got %q, ok %v want %q, ok %v", r.result, r.ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestPrintTable(t *testing.T) {
	var b bytes.Buffer
	printTable(&b, []row{
		{kernel: "host 6.18.44", accel: "-", t: &tally{hook: "tracepoint"}, elapsed: 500 * time.Millisecond, result: "ok", ok: true},
		{kernel: "6.1.0-57-amd64", accel: "tcg", t: &tally{hook: "fentry", passed: 120, skipped: 3}, tests: true, elapsed: 3 * time.Minute, result: "ok", ok: true},
		{kernel: "6.12.117+deb12-amd64", accel: "tcg", t: &tally{}, tests: true, result: "HUNG: guest timed out"},
	})
	want := `KERNEL                ACCEL  HOOK        PASSED  FAILED  SKIPPED  TIME   RESULT
host 6.18.44          -      tracepoint  -       -       -        500ms  ok
6.1.0-57-amd64        tcg    fentry      120     0       3        3m0s   ok
6.12.117+deb12-amd64  tcg    ?           0       0       0        0s     HUNG: guest timed out
vmtest: 120 passed, 1 failed, 3 skipped
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestVMTestMustFail fails on purpose, inside a vmtest guest only and when
// asked for by name, so that `make vmtest VMTEST_RUN=TestVMTestMustFail`
// shows a failing guest test failing make.
// TestBinaryTimeout: under the suite's defaults a test binary may run for
// most of its guest's time (cmd/vigil's took 11-12 minutes under TCG, and
// was stopped at the 12 it was given), and a hung one is still stopped by
// go test, which prints its goroutines, before the guest is.
func TestBinaryTimeout(t *testing.T) {
	f := vmFlags{timeout: suiteTimeout, tcgScale: 4}
	for _, accel := range []string{"kvm", "tcg"} {
		bin, guest := f.scaled(binaryTimeout(0, f.timeout), accel), f.scaled(f.timeout, accel)
		if bin < guest*3/4 || guest-bin < time.Minute {
			t.Errorf("%s: a test binary gets %s of its guest's %s", accel, bin, guest)
		}
	}
	if got := binaryTimeout(time.Minute, f.timeout); got != time.Minute {
		t.Errorf("-test-timeout 1m gave %s", got)
	}
}

func TestVMTestMustFail(t *testing.T) {
	if os.Getenv("VMTEST_GUEST") != "1" || flag.Lookup("test.run").Value.String() != "TestVMTestMustFail" {
		t.Skip("fails on purpose, only in a vmtest guest with -run TestVMTestMustFail")
	}
	t.Fatal("deliberate failure: a guest test failing must make vmtest fail")
}
