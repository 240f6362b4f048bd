package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// parseKernelList reads a kernel list: one kernel a line (a Debian package
// name, a release or an image file), # comments.
func parseKernelList(r io.Reader) ([]string, error) {
	var list []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		switch len(f) {
		case 0:
		case 1:
			list = append(list, f[0])
		default:
			return nil, fmt.Errorf("kernel list: one kernel a line, got %q", strings.TrimSpace(line))
		}
	}
	return list, sc.Err()
}

// testPackage is a package whose test binary the suite runs.
type testPackage struct {
	Name string // relative to the module root: internal/dirtrace
	Dir  string
	Bin  string // its test binary
}

// tally reads a run's output as it streams past and counts what it tells.
type tally struct {
	w       io.Writer
	mu      sync.Mutex
	partial []byte

	hook                    string
	passed, failed, skipped int
	failedTests             []string
	failedSteps             []string
}

var (
	testResult = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	// vigil features: "directory events  hook=fentry, with inotify beside it".
	hookLine = regexp.MustCompile(`^directory \w+\s.*\bhook=([a-z]+)`)
	stepLine = regexp.MustCompile(`^` + markerStep + `(\S+): exit (\d+) in`)
)

func (t *tally) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.line(string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	if t.w != nil {
		return t.w.Write(p)
	}
	return len(p), nil
}

func (t *tally) line(s string) {
	if m := testResult.FindStringSubmatch(s); m != nil {
		switch m[1] {
		case "PASS":
			t.passed++
		case "FAIL":
			t.failed++
			t.failedTests = append(t.failedTests, m[2])
		case "SKIP":
			t.skipped++
		}
		return
	}
	if m := hookLine.FindStringSubmatch(s); m != nil && t.hook == "" {
		t.hook = m[1]
		return
	}
	if m := stepLine.FindStringSubmatch(s); m != nil && m[2] != "0" {
		t.failedSteps = append(t.failedSteps, m[1]+" exit "+m[2])
	}
}

// row is one line of the suite's table.
type row struct {
	kernel, accel string
	t             *tally
	tests         bool // tests ran (the host row may show the hook only)
	elapsed       time.Duration
	result        string
	ok            bool
}

func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tACCEL\tHOOK\tPASSED\tFAILED\tSKIPPED\tTIME\tRESULT")
	for _, r := range rows {
		hook := r.t.hook
		if hook == "" {
			hook = "?"
		}
		counts := "-\t-\t-"
		if r.tests {
			counts = fmt.Sprintf("%d\t%d\t%d", r.t.passed, r.t.failed, r.t.skipped)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.kernel, r.accel, hook, counts, r.elapsed.Round(100*time.Millisecond), r.result)
	}
	tw.Flush()
	// The totals, as the plain closing line CI reads.
	var passed, failed, skipped int
	for _, r := range rows {
		passed, failed, skipped = passed+r.t.passed, failed+r.t.failed, skipped+r.t.skipped
		if !r.ok {
			failed++ // a kernel that panicked, hung or failed a step counts too
		}
	}
	fmt.Fprintf(w, "vmtest: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}

// verdict sums a finished run up for the table.
func (r *row) verdict(status int, err error) {
	switch {
	case err != nil:
		r.result = "ERROR: " + err.Error()
		switch {
		case errors.Is(err, errPanic):
			r.result = "PANIC: " + err.Error()
		case errors.Is(err, errTimeout):
			r.result = "HUNG: " + err.Error()
		}
	case status != 0 || len(r.t.failedSteps) > 0 || r.t.failed > 0:
		r.result = fmt.Sprintf("FAIL (status %d", status)
		if len(r.t.failedSteps) > 0 {
			r.result += "; " + strings.Join(r.t.failedSteps, ", ")
		}
		r.result += ")"
	default:
		r.result, r.ok = "ok", true
	}
}

// suiteTimeout is how long a guest of the suite may run under KVM; TCG
// multiplies it (-tcg-scale).
const suiteTimeout = 6 * time.Minute

// binaryTimeout is the go test -timeout of each test binary: the one
// asked for, or by default five sixths of the guest's. A binary is as long
// as its tests, which grow; what bounds the guest is its own timeout, and
// under it a test that hangs is stopped by go test, with every goroutine's
// stack printed, before the guest is.
func binaryTimeout(asked, guest time.Duration) time.Duration {
	if asked > 0 {
		return asked
	}
	return guest * 5 / 6
}

func cmdSuite(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f vmFlags
	f.register(fs, suiteTimeout)
	var kernels multiFlag
	listFile := fs.String("kernels", "", "file listing the kernels to boot (Debian package names, releases or image files)")
	fs.Var(&kernels, "kernel", "a kernel to boot besides the list (repeatable)")
	run := fs.String("run", "", "run only the tests matching this regular expression (go test -run)")
	testTimeout := fs.Duration("test-timeout", 0, "go test -timeout of each test binary under KVM, scaled under TCG (0: five sixths of -timeout, so that a hung test prints its goroutines before the guest is stopped)")
	host := fs.Bool("host", false, "run the suite on the host too (as its row of the table)")
	outDir := fs.String("out", "", "where the binaries are built (default: bin/vmtest.d in -workdir)")
	parallel := fs.Int("parallel", 0, "kernels run at once (0: one per host CPU under TCG, whose guests run in one thread each; one under KVM)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *listFile != "" {
		fh, err := os.Open(*listFile)
		if err != nil {
			fmt.Fprintf(stderr, "vmtest: %v\n", err)
			return 2
		}
		list, err := parseKernelList(fh)
		fh.Close()
		if err != nil {
			fmt.Fprintf(stderr, "vmtest: %s: %v\n", *listFile, err)
			return 2
		}
		kernels = append(list, kernels...)
	}
	if f.workDir == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "vmtest suite: want -workdir (the module) and packages")
		return 2
	}
	if *outDir == "" {
		*outDir = filepath.Join(f.workDir, "bin", "vmtest.d")
	}

	pkgs, vigil, err := buildSuite(ctx, f.workDir, *outDir, fs.Args(), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: %v\n", err)
		return 1
	}
	f.env = append(f.env, "VIGIL_BIN="+vigil)
	stepsFor := func(accel string) []step {
		bin := vigil
		if accel != "host" {
			bin = staged(vigil)
		}
		steps := []step{{Name: "features", Dir: f.workDir, Argv: []string{bin, "features"}}}
		for _, p := range pkgs {
			argv := []string{p.Bin, "-test.v", "-test.count=1", "-test.timeout=" + f.scaled(binaryTimeout(*testTimeout, f.timeout), accel).String()}
			if *run != "" {
				argv = append(argv, "-test.run="+*run)
			}
			steps = append(steps, step{Name: p.Name, Dir: p.Dir, Argv: argv})
		}
		return steps
	}

	rows := []row{hostRow(ctx, &f, stepsFor("host"), *host, stdout)}
	// Each kernel is made ready in turn, the first one choosing the
	// accelerator for all; then they run side by side, -parallel at once,
	// and each one's output is printed whole when it is done, in the
	// list's order.
	runs := make([]*kernelRun, len(kernels))
	var probed string // why the first kernel's probe chose the accelerator
	for i, name := range kernels {
		kr := &kernelRun{done: make(chan struct{})}
		kr.r = row{kernel: name, t: &tally{w: &kr.out}, tests: true}
		runs[i] = kr
		k, err := prepareKernel(findKernel(name), f.cache)
		if err != nil {
			kr.r.verdict(0, fmt.Errorf("kernel %s: %w (make vmtest-deps installs the listed ones)", name, err))
			continue
		}
		kr.r.kernel = k.Release
		v, err := f.newVM(k, nil, kr.r.t)
		if err == nil {
			var accel, why string
			accel, why, err = f.accelerator(ctx, v)
			if err == nil {
				// One probe is enough for every kernel of the suite.
				if f.accel == "auto" {
					f.accel, probed = accel, why
				} else if probed != "" {
					why = probed
				}
				kr.r.accel = accel
				v.Accel, v.Steps, v.Timeout = accel, stepsFor(accel), f.scaled(f.timeout, accel)
				// The tests execute vigil hundreds of times: from the
				// guest's memory, not over 9p each time.
				v.Stage, v.Env = []string{vigil}, append(v.Env, "VIGIL_BIN="+staged(vigil))
				fmt.Fprintf(stdout, "=== vmtest: %s under %s (%s), timeout %s\n", k.Release, accel, why, v.Timeout)
				if k.Note != "" {
					fmt.Fprintf(&kr.out, "=== vmtest: %s\n", k.Note)
				}
				kr.v = &v
			}
		}
		if err != nil {
			kr.r.verdict(0, err)
		}
	}
	n := *parallel
	if n <= 0 {
		// Under TCG a guest runs in one host thread (see vm.args).
		n = 1
		if f.accel == "tcg" {
			n = runtime.NumCPU()
		}
	}
	slots := make(chan struct{}, n)
	for _, kr := range runs {
		if kr.v == nil {
			close(kr.done)
			continue
		}
		go func() {
			defer close(kr.done)
			slots <- struct{}{}
			defer func() { <-slots }()
			start := time.Now()
			out, err := kr.v.Run(ctx)
			kr.r.verdict(out.Status, err)
			for _, l := range out.Console {
				fmt.Fprintf(kr.r.t, "=== vmtest: console: %s\n", l)
			}
			kr.r.elapsed = time.Since(start)
		}()
	}
	for _, kr := range runs {
		<-kr.done
		stdout.Write(kr.out.Bytes())
		rows = append(rows, kr.r)
	}
	fmt.Fprintln(stdout)
	printTable(stdout, rows)
	for _, r := range rows {
		if !r.ok {
			return 1
		}
	}
	return 0
}

// kernelRun is one kernel of the suite: its row, and the guest to boot
// (nil when it could not be made ready: the row says why), whose output
// is kept until the run is done.
type kernelRun struct {
	r    row
	v    *vm
	out  bytes.Buffer // written through r.t
	done chan struct{}
}

// hostRow runs vigil features on the host for the hook it chooses, and
// with tests the whole suite, outside any VM.
func hostRow(ctx context.Context, f *vmFlags, steps []step, tests bool, stdout io.Writer) row {
	u := new(bytes.Buffer)
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		u.Write(bytes.TrimSpace(out))
	}
	r := row{kernel: "host " + u.String(), accel: "-", t: &tally{w: stdout}, tests: tests}
	start := time.Now()
	if !tests {
		steps = steps[:1]
		r.t.w = io.Discard
	} else {
		fmt.Fprintln(stdout, "=== vmtest: the suite on the host")
	}
	status := 0
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
		cmd.Dir = s.Dir
		cmd.Env = append(os.Environ(), f.env...)
		cmd.Stdout, cmd.Stderr = r.t, r.t
		code := 0
		if err := cmd.Run(); err != nil {
			code = 1
			var exit *exec.ExitError
			if errors.As(err, &exit) && exit.ExitCode() > 0 {
				code = exit.ExitCode()
			}
		}
		fmt.Fprintf(r.t, "%s%s: exit %d in %s\n", markerStep, s.Name, code, time.Since(start).Round(time.Millisecond))
		if code != 0 {
			status = 1
		}
	}
	r.verdict(status, nil)
	r.elapsed = time.Since(start)
	return r
}

// buildSuite builds vigil and the test binaries of patterns (go list
// patterns, relative to workDir) into outDir, which the guest sees at the
// same path.
func buildSuite(ctx context.Context, workDir, outDir string, patterns []string, log io.Writer) ([]testPackage, string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, "", err
	}
	goCmd := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = workDir
		// Static: the binaries run in guests whatever their libc.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stderr = log
		return cmd
	}
	vigil := filepath.Join(outDir, "vigil")
	if err := goCmd("build", "-o", vigil, "./cmd/vigil").Run(); err != nil {
		return nil, "", fmt.Errorf("build vigil: %w", err)
	}
	modRoot, err := goCmd("list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return nil, "", fmt.Errorf("go list -m: %w", err)
	}
	root := strings.TrimSpace(string(modRoot))
	listArgs := append([]string{"list", "-f", "{{.Dir}}\t{{if or .TestGoFiles .XTestGoFiles}}tests{{end}}"}, patterns...)
	listed, err := goCmd(listArgs...).Output()
	if err != nil {
		return nil, "", fmt.Errorf("go list: %w", err)
	}
	var pkgs []testPackage
	for line := range strings.Lines(string(listed)) {
		dir, has, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if has != "tests" {
			continue
		}
		name, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, "", err
		}
		p := testPackage{Name: name, Dir: dir, Bin: filepath.Join(outDir, strings.ReplaceAll(name, "/", "_")+".test")}
		fmt.Fprintf(log, "vmtest: go test -c %s\n", name)
		if err := goCmd("test", "-c", "-o", p.Bin, "./"+name).Run(); err != nil {
			return nil, "", fmt.Errorf("build the tests of %s: %w", name, err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, "", fmt.Errorf("no tests in %s", strings.Join(patterns, " "))
	}
	return pkgs, vigil, nil
}
