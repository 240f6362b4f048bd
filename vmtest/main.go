package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const usage = `usage:
  vmtest run   [flags] -- COMMAND [ARG...]   boot one kernel, run COMMAND as root, exit with its status
  vmtest suite [flags] PACKAGE...            build the packages' tests, run them in every listed kernel, print a table
  vmtest kvm   [flags]                       say whether KVM really works here
run 'vmtest run -h' or 'vmtest suite -h' for the flags`

func main() {
	if os.Getpid() == 1 {
		guestInit()
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	var code int
	switch os.Args[1] {
	case "run":
		code = cmdRun(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "suite":
		code = cmdSuite(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "kvm":
		code = cmdKVM(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		fmt.Fprintln(os.Stderr, usage)
		code = 2
	}
	os.Exit(code)
}

// statusError is vmtest's own exit status when a guest gave none (it
// panicked, hung or never started): out of the range a guest's status is
// passed through in, so no crash reads as a test's result.
const statusError = 125

// vmFlags are the flags every subcommand that boots shares.
type vmFlags struct {
	qemu     string
	accel    string
	cpus     int
	mem      int
	timeout  time.Duration
	tcgScale float64
	workDir  string
	tmpfs    string
	env      multiFlag
	cache    string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func (f *vmFlags) register(fs *flag.FlagSet, timeout time.Duration) {
	wd, _ := os.Getwd()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	fs.StringVar(&f.qemu, "qemu", "qemu-system-x86_64", "qemu binary")
	fs.StringVar(&f.accel, "accel", "auto", "auto (KVM when it really works, else TCG), kvm or tcg")
	fs.IntVar(&f.cpus, "cpus", min(runtime.NumCPU(), 4), "guest CPUs")
	fs.IntVar(&f.mem, "mem", 2048, "guest memory, MiB")
	fs.DurationVar(&f.timeout, "timeout", timeout, "how long a guest may run under KVM before it counts as hung")
	fs.Float64Var(&f.tcgScale, "tcg-scale", 4, "timeouts are multiplied by this under TCG (emulation)")
	fs.StringVar(&f.workDir, "workdir", wd, "directory shared read-write at the same path (empty: none)")
	fs.StringVar(&f.tmpfs, "tmpfs", "/tmp,/var/tmp,/run,/root", "comma-separated writable places over the read-only root")
	fs.Var(&f.env, "env", "KEY=VALUE for the guest's environment (repeatable)")
	fs.StringVar(&f.cache, "cache", filepath.Join(cache, "vigil-vmtest"), "where extracted vmlinux files are kept")
}

// guestEnv is the environment of guest commands. CI is false inside: a
// kernel that lacks a feature is what vmtest is for, so tests skip there
// rather than fail (the host's CI=true run keeps the strict rule).
func (f *vmFlags) guestEnv() []string {
	env := []string{
		"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"TERM=dumb",
		"CI=false",
		"VMTEST_GUEST=1",
	}
	return append(env, f.env...)
}

// newVM returns the vm for kernel k with the flags' settings, its accelerator
// and timeout still to be chosen.
func (f *vmFlags) newVM(k *kernel, steps []step, out io.Writer) (vm, error) {
	self, err := os.Executable()
	if err != nil {
		return vm{}, err
	}
	v := vm{
		Qemu: f.qemu, Kernel: k, Init: self, CPUs: f.cpus, MemMB: f.mem,
		Env: f.guestEnv(), Steps: steps, Output: out,
	}
	if f.workDir != "" {
		if v.WorkDir, err = filepath.Abs(f.workDir); err != nil {
			return vm{}, err
		}
	}
	for _, d := range strings.Split(f.tmpfs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			v.Tmpfs = append(v.Tmpfs, d)
		}
	}
	return v, nil
}

// accelerator picks KVM or TCG for the flags, probing KVM with v when asked
// to choose; the reason is for the log.
func (f *vmFlags) accelerator(ctx context.Context, v vm) (string, string, error) {
	switch f.accel {
	case "kvm", "tcg":
		return f.accel, "asked for", nil
	case "auto":
		if err := kvmUsable(ctx, v); err != nil {
			return "tcg", fmt.Sprintf("KVM unusable: %v", err), nil
		}
		return "kvm", "KVM works", nil
	}
	return "", "", fmt.Errorf("-accel %q: want auto, kvm or tcg", f.accel)
}

// scaled is d for accel: emulation runs the same work several times slower.
func (f *vmFlags) scaled(d time.Duration, accel string) time.Duration {
	if accel == "tcg" {
		return time.Duration(float64(d) * f.tcgScale)
	}
	return d
}

// findKernel resolves a kernel argument: a file (vmlinuz or bzImage), a
// Debian package name (linux-image-<release>) or a release.
func findKernel(arg string) string {
	if _, err := os.Stat(arg); err == nil {
		return arg
	}
	return "/boot/vmlinuz-" + strings.TrimPrefix(arg, "linux-image-")
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f vmFlags
	f.register(fs, 10*time.Minute)
	kernelArg := fs.String("kernel", "", "kernel to boot: a vmlinuz/bzImage file, a Debian package name or a release")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if *kernelArg == "" || len(argv) == 0 {
		fmt.Fprintln(stderr, "vmtest run: want -kernel and a command")
		return 2
	}
	k, err := prepareKernel(findKernel(*kernelArg), f.cache)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: kernel %s: %v\n", *kernelArg, err)
		return statusError
	}
	dir := f.workDir
	if dir == "" {
		dir = "/"
	}
	v, err := f.newVM(k, []step{{Name: filepath.Base(argv[0]), Dir: dir, Argv: argv}}, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: %v\n", err)
		return statusError
	}
	out, err := boot(ctx, &f, v, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: %s: %v\n", k.Name, err)
		for _, l := range out.Console {
			fmt.Fprintf(stderr, "vmtest:   %s\n", l)
		}
		return statusError
	}
	return out.Status
}

// boot chooses v's accelerator and timeout and runs it.
func boot(ctx context.Context, f *vmFlags, v vm, log io.Writer) (outcome, error) {
	accel, why, err := f.accelerator(ctx, v)
	if err != nil {
		return outcome{}, err
	}
	v.Accel = accel
	v.Timeout = f.scaled(f.timeout, accel)
	fmt.Fprintf(log, "vmtest: booting %s under %s (%s), timeout %s\n", v.Kernel.Name, accel, why, v.Timeout)
	if v.Kernel.Note != "" {
		fmt.Fprintf(log, "vmtest: %s\n", v.Kernel.Note)
	}
	return v.Run(ctx)
}

func cmdKVM(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f vmFlags
	f.register(fs, time.Minute)
	kernelArg := fs.String("kernel", "", "kernel to boot for the probe")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	k, err := prepareKernel(findKernel(*kernelArg), f.cache)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: kernel %s: %v\n", *kernelArg, err)
		return statusError
	}
	v, err := f.newVM(k, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: %v\n", err)
		return statusError
	}
	if err := kvmUsable(ctx, v); err != nil {
		fmt.Fprintf(stdout, "KVM unusable: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "KVM works")
	return 0
}
