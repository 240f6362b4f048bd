package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// guestInit is main when vmtest runs as PID 1 in the guest: it loads the 9p
// modules, mounts the host's root and the work tree, runs the plan's steps
// and hands their status to the host through isa-debug-exit. It never
// returns: PID 1 exiting would panic the kernel.
func guestInit() {
	status := initFailed
	p, err := readPlan(planFile)
	if err == nil {
		status, err = runGuest(p)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v\n", err)
		status = initFailed
	}
	fmt.Printf("%s%d\n", markerStatus, status)
	unix.Sync()
	// The serial line sends what was written after write(2) returns, and
	// isa-debug-exit ends qemu at once: drain the console first (tcdrain),
	// or the last lines, the status line among them, are lost.
	unix.IoctlSetInt(1, unix.TCSBRK, 1)
	port := uint16(0)
	if p != nil {
		port = p.ExitPort
	}
	if err := debugExit(port, statusCode(status)); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: isa-debug-exit: %v\n", err)
	}
	// Only reached without isa-debug-exit: the host takes a power-off
	// without a status as a failure.
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// debugExit writes code to the isa-debug-exit port through /dev/port, which
// spares us assembly for an outb.
func debugExit(port uint16, code byte) error {
	if port == 0 {
		return errors.New("no port in the plan")
	}
	f, err := os.OpenFile("/dev/port", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt([]byte{code}, int64(port))
	return err
}

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	optional               bool // a kernel without it still runs the steps
}

func (m mount) do() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("mount %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

func runGuest(p *plan) (int, error) {
	if err := os.MkdirAll("/dev", 0o755); err != nil {
		return 0, err
	}
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
		return 0, fmt.Errorf("mount devtmpfs: %w", err)
	}
	// The initramfs has no /dev/console, so the kernel gave us no stdio.
	if con, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			unix.Dup3(int(con.Fd()), fd, 0)
		}
		con.Close()
	}
	for _, m := range p.Modules {
		if err := loadModule(m); err != nil {
			return 0, err
		}
	}

	const newRoot = "/newroot"
	const opts9p = "trans=virtio,version=9p2000.L,msize=512000"
	mounts := []mount{
		// The root does not change while the guest runs: cache it.
		{source: tagRoot, target: newRoot, fstype: "9p", flags: unix.MS_RDONLY, data: opts9p + ",cache=loose"},
	}
	for _, dir := range p.Tmpfs {
		mounts = append(mounts, mount{source: "tmpfs", target: newRoot + dir, fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=1777"})
	}
	if p.WorkDir != "" {
		// mmap caching: test binaries are executed from here, and what the
		// guest writes must reach the host at once.
		mounts = append(mounts, mount{source: tagWork, target: newRoot + p.WorkDir, fstype: "9p", data: opts9p + ",cache=mmap"})
	}
	mounts = append(mounts,
		mount{source: "/dev", target: newRoot + "/dev", flags: unix.MS_MOVE},
		mount{source: "proc", target: newRoot + "/proc", fstype: "proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		mount{source: "sysfs", target: newRoot + "/sys", fstype: "sysfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		mount{source: "tmpfs", target: newRoot + "/dev/shm", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=1777"},
		mount{source: "devpts", target: newRoot + "/dev/pts", fstype: "devpts", flags: unix.MS_NOSUID | unix.MS_NOEXEC, optional: true},
		mount{source: "bpf", target: newRoot + "/sys/fs/bpf", fstype: "bpf", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, data: "mode=0700", optional: true},
		mount{source: "tracefs", target: newRoot + "/sys/kernel/tracing", fstype: "tracefs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
		mount{source: "debugfs", target: newRoot + "/sys/kernel/debug", fstype: "debugfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
		mount{source: "securityfs", target: newRoot + "/sys/kernel/security", fstype: "securityfs", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
		mount{source: "cgroup2", target: newRoot + "/sys/fs/cgroup", fstype: "cgroup2", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
	)
	for _, m := range mounts {
		if err := m.do(); err != nil {
			if !m.optional {
				return 0, err
			}
			fmt.Fprintf(os.Stderr, "vmtest init: %v (going on without it)\n", err)
		}
	}
	// switch_root without deleting the initramfs: it is small.
	if err := os.Chdir(newRoot); err != nil {
		return 0, err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return 0, fmt.Errorf("move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return 0, fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return 0, err
	}
	if err := staticNodes(); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v (going on without them)\n", err)
	}
	if err := loopbackUp(); err != nil {
		fmt.Fprintf(os.Stderr, "vmtest init: %v (going on without it)\n", err)
	}
	unix.Sethostname([]byte("vmtest"))
	if err := stage(p.Stage); err != nil {
		return 0, err
	}

	// One step: its own status. Several: 1 if any failed, every one run.
	status := 0
	for _, s := range p.Steps {
		if code := runStep(s, p.Env); code != 0 {
			status = code
			if len(p.Steps) > 1 {
				status = 1
			}
		}
	}
	return status, nil
}

// stage copies files into stageDir, executable.
func stage(files []string) error {
	if len(files) == 0 {
		return nil
	}
	if err := os.MkdirAll(stageDir, 0o755); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("stage: %w", err)
		}
		if err := os.WriteFile(staged(f), data, 0o755); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
	}
	return nil
}

// runStep runs s with the console as its output and returns its status.
func runStep(s step, env []string) int {
	start := time.Now()
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	code := 0
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
		if ws, ok := exit.Sys().(unix.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	default:
		fmt.Fprintf(os.Stderr, "vmtest init: run %s: %v\n", strings.Join(s.Argv, " "), err)
		code = initFailed
	}
	fmt.Printf("%s%s: exit %d in %s\n", markerStep, s.Name, code, time.Since(start).Round(time.Millisecond))
	return code
}

// loadModule loads a module file of the initramfs; compressed ones are left
// to the kernel (CONFIG_MODULE_DECOMPRESS, checked by the host).
func loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if filepath.Ext(file) != ".ko" {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", file, err)
	}
	return nil
}

// loopbackUp brings lo up: tests talk to 127.0.0.1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// staticNodes creates the device nodes of modules.devname, as
// kmod static-nodes does for udev: opening /dev/loop-control then loads the
// loop module on demand, as on a booted system.
func staticNodes() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	file := filepath.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:]), "modules.devname")
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("static device nodes: %w", err)
	}
	nodes, err := parseDevname(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, n := range nodes {
		name := filepath.Join("/dev", n.name)
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := unix.Mknod(name, n.mode|0o600, int(unix.Mkdev(n.major, n.minor))); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mknod %s: %w", name, err)
		}
	}
	return nil
}

type devNode struct {
	name         string
	mode         uint32 // S_IFCHR or S_IFBLK
	major, minor uint32
}

// parseDevname reads modules.devname: "module devname c|bMAJOR:MINOR" lines.
func parseDevname(data string) ([]devNode, error) {
	var nodes []devNode
	for line := range strings.Lines(data) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || len(f[2]) < 4 {
			return nil, fmt.Errorf("bad line %q", strings.TrimSpace(line))
		}
		n := devNode{name: f[1]}
		switch f[2][0] {
		case 'c':
			n.mode = unix.S_IFCHR
		case 'b':
			n.mode = unix.S_IFBLK
		default:
			return nil, fmt.Errorf("bad node type in %q", strings.TrimSpace(line))
		}
		if _, err := fmt.Sscanf(f[2][1:], "%d:%d", &n.major, &n.minor); err != nil {
			return nil, fmt.Errorf("bad device number in %q: %w", strings.TrimSpace(line), err)
		}
		if strings.Contains(n.name, "..") {
			return nil, fmt.Errorf("bad device name %q", n.name)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}
