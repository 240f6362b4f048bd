package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// exitPort is where the guest finds isa-debug-exit; any free ISA port does.
const exitPort = 0xf4

// vm is one boot of a kernel under qemu.
type vm struct {
	Qemu    string // qemu-system-x86_64
	Kernel  *kernel
	Init    string // the static binary the guest runs as PID 1
	Accel   string // kvm or tcg
	CPUs    int
	MemMB   int
	WorkDir string // shared read-write at the same path; empty for none
	Tmpfs   []string
	Env     []string
	Stage   []string // files copied into the guest's stageDir (see plan)
	Steps   []step
	Timeout time.Duration
	Output  io.Writer // the guest's console, streamed
}

// Errors of a guest that gave no status: none of them is a pass.
var (
	errTimeout  = errors.New("guest timed out")
	errPanic    = errors.New("guest kernel panicked")
	errNoStatus = errors.New("guest stopped without reporting a status")
)

// outcome is what a boot came to.
type outcome struct {
	Status  int // the guest's exit status (127: 127 or more)
	Elapsed time.Duration
	Console []string // lines worth quoting when it failed: panics, oopses
}

// kernelCmdline is the guest kernel's command line: a panic or an oops
// ends the guest at once (qemu runs with -no-reboot) instead of hanging it.
const kernelCmdline = "console=ttyS0 rdinit=/init panic=-1 oops=panic quiet loglevel=4"

// args is qemu's command line for an initramfs at initrd. TCG runs every
// vCPU in one thread: with a thread each (MTTCG), a CPU can still execute a
// translation of code that another CPU has just patched, and the kernel's
// live patching (text_poke_bp, for every kprobe, fentry trampoline, static
// key) then hits a stale int3 and oopses, or livelocks in stop_machine.
func (v *vm) args(initrd string) []string {
	accel, cpu := "tcg,thread=single", "max"
	if v.Accel == "kvm" {
		accel, cpu = "kvm", "host"
	}
	a := []string{
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-machine", "pc", "-accel", accel, "-cpu", cpu,
		"-smp", strconv.Itoa(v.CPUs), "-m", strconv.Itoa(v.MemMB),
		"-kernel", v.Kernel.Image, "-initrd", initrd, "-append", kernelCmdline,
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
		"-device", fmt.Sprintf("isa-debug-exit,iobase=%#x,iosize=1", exitPort),
		// remap: the host's root spans several filesystems, whose inode
		// numbers would collide in one 9p export.
		"-fsdev", "local,id=" + tagRoot + ",path=/,security_model=none,readonly=on,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=" + tagRoot + ",mount_tag=" + tagRoot,
	}
	if v.WorkDir != "" {
		a = append(a,
			"-fsdev", "local,id="+tagWork+",path="+v.WorkDir+",security_model=none,multidevs=remap",
			"-device", "virtio-9p-pci,fsdev="+tagWork+",mount_tag="+tagWork)
	}
	return a
}

// decodeExit reads qemu's exit code: isa-debug-exit makes it code<<1|1
// with the init's statusCode, so the status byte comes back. Anything else
// carries no status: 0 (a power-off, or a reboot after a panic), 1 (qemu's
// own error), -1 (qemu killed by a signal), any even code.
func decodeExit(code int) (statusByte byte, ok bool) {
	if code < 3 || code > 255 || code&1 == 0 {
		return 0, false
	}
	return byte(code >> 1), true
}

// initramfs writes the guest's initramfs to w: the init, the plan and the
// modules the init loads.
func (v *vm) initramfs(w io.Writer, modules []string) error {
	init, err := os.ReadFile(v.Init)
	if err != nil {
		return err
	}
	p := plan{WorkDir: v.WorkDir, Tmpfs: v.Tmpfs, Env: v.Env, Stage: v.Stage, Steps: v.Steps, ExitPort: exitPort}
	c := newCPIO(w)
	for _, d := range []string{"dev", "proc", "sys", "newroot", "modules"} {
		c.Dir(d, 0o755)
	}
	for _, m := range modules {
		data, err := os.ReadFile(filepath.Join(v.Kernel.Modules, m))
		if err != nil {
			return err
		}
		name := path.Join("/modules", path.Base(m))
		c.File(name, 0o644, data)
		p.Modules = append(p.Modules, name)
	}
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	c.File(planFile, 0o644, js)
	c.File("init", 0o755, init)
	return c.Close()
}

// checkStatic fails unless file is a statically linked ELF: the guest has no
// dynamic loader before its root is mounted.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0 to serve as the guest's init", file)
		}
	}
	return nil
}

// guestModuleFiles resolves the modules the init loads for v's kernel and
// checks that the kernel can take them as they are.
func (v *vm) guestModuleFiles() ([]string, error) {
	idx, err := loadModuleIndex(v.Kernel.Modules)
	if err != nil {
		return nil, fmt.Errorf("modules of %s: %w (is the kernel's package installed?)", v.Kernel.Release, err)
	}
	files, err := idx.resolve(guestModules...)
	if err != nil {
		return nil, fmt.Errorf("modules of %s: %w", v.Kernel.Release, err)
	}
	for _, f := range files {
		if path.Ext(f) != ".ko" && v.Kernel.Config != nil && !v.Kernel.Config["CONFIG_MODULE_DECOMPRESS"] {
			return nil, fmt.Errorf("module %s is compressed and kernel %s cannot decompress modules itself (no CONFIG_MODULE_DECOMPRESS)", f, v.Kernel.Release)
		}
	}
	return files, nil
}

// Run boots the guest, streams its console to v.Output and returns the
// guest's status. A guest that panics, hangs past v.Timeout or stops
// without a status is an error, never a status.
func (v *vm) Run(ctx context.Context) (outcome, error) {
	start := time.Now()
	out := outcome{Status: -1}
	if err := checkStatic(v.Init); err != nil {
		return out, err
	}
	mods, err := v.guestModuleFiles()
	if err != nil {
		return out, err
	}
	f, err := os.CreateTemp("", "vmtest-initramfs-*.cpio")
	if err != nil {
		return out, err
	}
	defer os.Remove(f.Name())
	err = v.initramfs(f, mods)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return out, fmt.Errorf("write initramfs: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.Qemu, v.args(f.Name())...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return out, err
	}
	if err := cmd.Start(); err != nil {
		return out, fmt.Errorf("start %s: %w", v.Qemu, err)
	}
	con := newConsole(v.Output)
	var wg sync.WaitGroup
	wg.Go(func() { con.copy(stdout) })
	wg.Wait()
	werr := cmd.Wait()
	out.Elapsed = time.Since(start)
	out.Console = con.notable()

	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, fmt.Errorf("%w after %s (qemu killed)", errTimeout, v.Timeout)
	case ctx.Err() != nil:
		return out, ctx.Err()
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(werr, &exit) {
		code = exit.ExitCode()
		if code < 0 {
			return out, fmt.Errorf("qemu died: %v: %s", exit, lastLine(stderr.String()))
		}
	} else if werr != nil {
		return out, fmt.Errorf("run %s: %w", v.Qemu, werr)
	}
	if con.panicked != "" {
		return out, fmt.Errorf("%w: %s", errPanic, con.panicked)
	}
	b, ok := decodeExit(code)
	if !ok {
		if msg := strings.TrimSpace(stderr.String()); msg != "" && code != 0 {
			return out, fmt.Errorf("qemu exited with %d: %s", code, msg)
		}
		return out, fmt.Errorf("%w (qemu exit code %d)", errNoStatus, code)
	}
	// The console's status line is exact where the byte is capped, and
	// both must agree: a stray write to the port is no status.
	if con.status < 0 {
		return out, fmt.Errorf("%w: isa-debug-exit sent %d without a status line on the console", errNoStatus, b)
	}
	if statusCode(con.status) != b {
		return out, fmt.Errorf("%w: isa-debug-exit sent %d, the console says status %d", errNoStatus, b, con.status)
	}
	out.Status = con.status
	return out, nil
}

// console reads the guest's serial console line by line, passes it on and
// notes what tells a crash.
type console struct {
	w        io.Writer
	booted   bool     // past the firmware's banner
	status   int      // from the init's status line; -1 before it
	panicked string   // the "Kernel panic" line
	lines    []string // oops and panic lines, for the report
}

func newConsole(w io.Writer) *console { return &console{w: w, status: -1} }

var crashMarks = []string{"Kernel panic - not syncing", "BUG: ", "Oops: ", "general protection fault", "Attempted to kill init"}

func (c *console) copy(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			line, show := c.line(strings.TrimRight(line, "\r\n"))
			if show && c.w != nil {
				fmt.Fprintln(c.w, line)
			}
		}
		if err != nil {
			return
		}
	}
}

// firmwareDone ends SeaBIOS's banner on the serial line, where the kernel's
// output follows without a line break.
const firmwareDone = "Booting from ROM.."

// ansiEscape matches the terminal controls SeaBIOS sends before its banner.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)

// line notes what s tells and returns it as it should be shown, without the
// firmware's banner.
func (c *console) line(s string) (string, bool) {
	if !c.booted {
		s = ansiEscape.ReplaceAllString(s, "")
		if i := strings.Index(s, firmwareDone); i >= 0 {
			c.booted = true
			s = s[i+len(firmwareDone):]
		}
		if s == "" || strings.HasPrefix(s, "SeaBIOS ") {
			return "", false
		}
	}
	for _, m := range crashMarks {
		if i := strings.Index(s, m); i >= 0 {
			if len(c.lines) < 20 {
				c.lines = append(c.lines, s)
			}
			if m == crashMarks[0] && c.panicked == "" {
				c.panicked = strings.TrimSpace(s[i:])
			}
		}
	}
	if rest, ok := strings.CutPrefix(s, markerStatus); ok {
		if n, err := strconv.Atoi(rest); err == nil {
			c.status = n
		}
	}
	return s, true
}

func (c *console) notable() []string { return c.lines }
