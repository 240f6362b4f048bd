package dirtrace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/features"
)

// Hook names a rung of the ladder: the kind of kernel hook the programs
// attach to.
type Hook string

const (
	HookFentry     Hook = "fentry"     // fexit on vfs_mkdir, fentry+fexit on vfs_rename
	HookKprobe     Hook = "kprobe"     // kprobe+kretprobe on vfs_mkdir and vfs_rename
	HookTracepoint Hook = "tracepoint" // syscalls/sys_{enter,exit}_{mkdir,mkdirat,rename,renameat,renameat2}
	HookNone       Hook = "none"       // nothing attached: the tracer reports nothing
)

// Ladder is the order in which Open tries the hooks: the first one that
// loads and attaches wins.
var Ladder = []Hook{HookFentry, HookKprobe, HookTracepoint, HookNone}

// rungPrograms lists the programs of each rung, by their names in the ELF.
var rungPrograms = map[Hook][]string{
	HookFentry: {
		dirwatchProgFexitVfsMkdir,
		dirwatchProgFentryVfsRename,
		dirwatchProgFexitVfsRename,
	},
	HookKprobe: {
		dirwatchProgKprobeVfsMkdir,
		dirwatchProgKretprobeVfsMkdir,
		dirwatchProgKprobeVfsRename,
		dirwatchProgKretprobeVfsRename,
	},
	HookTracepoint: {
		dirwatchProgTpEnterMkdir,
		dirwatchProgTpEnterMkdirat,
		dirwatchProgTpEnterRename,
		dirwatchProgTpEnterRenameat,
		dirwatchProgTpEnterRenameat2,
		dirwatchProgTpExit,
	},
}

// sharedTracepoints lists where a program serving several tracepoints is
// attached; the others are attached where their sections say. The exits
// share one program, which the kernel then verifies once, not five times
// (about 100 ms of a start here).
var sharedTracepoints = map[string][]string{
	dirwatchProgTpExit: {
		"syscalls/sys_exit_mkdir",
		"syscalls/sys_exit_mkdirat",
		"syscalls/sys_exit_rename",
		"syscalls/sys_exit_renameat",
		"syscalls/sys_exit_renameat2",
	},
}

// legacyTracepoints exist only where the architecture has the old mkdir
// and rename system calls (x86 has them; arm64 and riscv64 do not).
var legacyTracepoints = map[string]bool{
	"syscalls/sys_enter_mkdir":  true,
	"syscalls/sys_exit_mkdir":   true,
	"syscalls/sys_enter_rename": true,
	"syscalls/sys_exit_rename":  true,
}

func (h Hook) valid() bool {
	for _, l := range Ladder {
		if h == l {
			return true
		}
	}
	return false
}

// rung is one hook's programs, loaded and attached.
type rung struct {
	hook  Hook
	coll  *ebpf.Collection
	links []link.Link
}

// close detaches the programs, all at once: the kernel waits for an RCU
// grace period or two to detach each tracepoint (some 120 ms here), so
// five one after the other held a daemon's stop or reload for 0.6 s.
func (r *rung) close() error {
	errs := make([]error, len(r.links))
	var wg sync.WaitGroup
	for i, l := range r.links {
		wg.Go(func() {
			if err := l.Close(); err != nil {
				errs[i] = fmt.Errorf("detach %s programs: %w", r.hook, err)
			}
		})
	}
	wg.Wait()
	r.coll.Close()
	return errors.Join(errs...)
}

// pruneSpec deletes every program not of hook's rung from spec, and the
// maps that only those programs used, so that only one rung is loaded.
func pruneSpec(spec *ebpf.CollectionSpec, h Hook) {
	keep := make(map[string]bool)
	for _, name := range rungPrograms[h] {
		keep[name] = true
	}
	for name := range spec.Programs {
		if !keep[name] {
			delete(spec.Programs, name)
		}
	}
	used := make(map[string]bool)
	for _, p := range spec.Programs {
		for _, ins := range p.Instructions {
			if ref := ins.Reference(); ref != "" {
				used[ref] = true
			}
		}
	}
	for name := range spec.Maps {
		if !used[name] && !strings.HasPrefix(name, ".") {
			delete(spec.Maps, name)
		}
	}
}

// climb is what the rungs tried in one climb down the ladder share, each
// decoded once, when first needed, and let go with the climb: the
// kernel's BTF (tens of milliseconds to decode) and the programs' object
// (about 5 ms, and 0.5 MiB kept).
type climb struct {
	kernel *btf.Cache
	spec   *ebpf.CollectionSpec
}

// newClimb starts a climb, lifting RLIMIT_MEMLOCK first for every rung.
func newClimb(log hclog.Logger) *climb {
	if err := raiseMemlock(); err != nil {
		log.Debug("raise RLIMIT_MEMLOCK (kernels before 5.11 charge BPF memory to it)", "error", err)
	}
	return &climb{kernel: btf.NewCache()}
}

// objects returns a copy of the programs' object, for one rung to load.
func (c *climb) objects() (*ebpf.CollectionSpec, error) {
	if c.spec == nil {
		spec, err := loadDirwatch()
		if err != nil {
			return nil, err
		}
		c.spec = spec
	}
	return c.spec.Copy(), nil
}

// loadRung loads and attaches hook's programs. Errors that mean the
// kernel lacks the hook wrap features.ErrNotSupported.
func loadRung(h Hook, c *climb, log hclog.Logger) (*rung, error) {
	spec, err := c.objects()
	if err != nil {
		return nil, err
	}
	if err := prepare(spec, h, c.kernel, log); err != nil {
		return nil, err
	}
	pruneSpec(spec, h)
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Cache: c.kernel})
	if err != nil {
		return nil, fmt.Errorf("load %s programs: %w", h, notSupported(refused(err)))
	}
	r := &rung{hook: h, coll: coll}
	for _, name := range rungPrograms[h] {
		ps := spec.Programs[name]
		at, ok := sharedTracepoints[name]
		if !ok {
			at = []string{ps.AttachTo}
		}
		for _, to := range at {
			l, err := attach(ps, to, coll.Programs[name])
			if err != nil {
				if h == HookTracepoint && legacyTracepoints[to] && errors.Is(err, os.ErrNotExist) && !hasLegacySyscalls() {
					log.Debug("tracepoint absent on this architecture", "hook", h, "tracepoint", to)
					continue
				}
				return nil, errors.Join(fmt.Errorf("attach %s to %s: %w", name, to, notSupported(err)), r.close())
			}
			r.links = append(r.links, l)
		}
	}
	return r, nil
}

// raiseMemlock lifts RLIMIT_MEMLOCK. Kernels before 5.11 charge BPF maps
// and programs to it, and its default outside vigil's systemd unit
// (LimitMEMLOCK=infinity), 64 KiB or 8 MiB in a container, refuses the
// ring buffer: eBPF would be given up for inotify alone. Later kernels
// charge the memory cgroup instead, and ignore it. Without
// CAP_SYS_RESOURCE the soft limit is raised as far as the hard one.
func raiseMemlock() error {
	err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
	if err == nil {
		return nil
	}
	var lim unix.Rlimit
	if gerr := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); gerr != nil {
		return errors.Join(err, gerr)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if serr := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); serr != nil {
			return errors.Join(err, serr)
		}
	}
	return fmt.Errorf("raised to the hard limit, %d bytes, not unlimited: %w", lim.Max, err)
}

// refused says what root's EPERM from a load means on a kernel that
// does not charge BPF memory to RLIMIT_MEMLOCK (5.11 on), where
// cilium/ebpf's guess, "MEMLOCK may be too low", which it adds to the
// error, cannot be the reason: a policy refused the programs.
func refused(err error) error {
	var u unix.Utsname
	if !errors.Is(err, unix.EPERM) || os.Geteuid() != 0 || unix.Uname(&u) != nil ||
		chargesMemlock(unix.ByteSliceToString(u.Release[:])) {
		return err
	}
	return fmt.Errorf("refused by a policy (lockdown, an LSM, seccomp, a capability dropped), not for memory: this kernel does not charge BPF to RLIMIT_MEMLOCK: %w", err)
}

// chargesMemlock reports whether a kernel of release may charge BPF maps
// and programs to RLIMIT_MEMLOCK: before 5.11, or when it cannot tell.
func chargesMemlock(release string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return true
	}
	return major < 5 || major == 5 && minor < 11
}

// prepare does what a rung needs before loading: kernel facts for the
// fentry and kprobe rungs, tracefs for the probe and tracepoint ones.
func prepare(spec *ebpf.CollectionSpec, h Hook, kernel *btf.Cache, log hclog.Logger) error {
	switch h {
	case HookFentry, HookKprobe:
		if h == HookKprobe && runtime.GOARCH != "amd64" {
			// bpf_tracing.h reads kprobe arguments from x86 registers.
			return fmt.Errorf("kprobe programs are built for amd64, not %s: %w", runtime.GOARCH, features.ErrNotSupported)
		}
		ptr, err := mkdirReturnsDentry(kernel)
		if err != nil {
			return err
		}
		var v uint8
		if ptr {
			v = 1
		}
		if err := spec.Variables[dirwatchVarMkdirReturnsDentry].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", dirwatchVarMkdirReturnsDentry, err)
		}
	}
	if h == HookKprobe || h == HookTracepoint {
		// The kprobe fallback and tracepoints find their ids in tracefs,
		// and cilium/ebpf looks for it once per process: mount it first.
		if err := ensureTracefs(log); err != nil {
			return err
		}
	}
	return nil
}

// mkdirReturnsDentry reads vfs_mkdir's return type from kernel BTF: int
// up to 6.14, struct dentry * from 6.15 on. It also checks that
// vfs_rename takes a struct renamedata (5.12 on), as the programs expect.
func mkdirReturnsDentry(kernel *btf.Cache) (bool, error) {
	spec, err := kernel.Kernel()
	if err != nil {
		return false, fmt.Errorf("load kernel BTF: %w", notSupported(err))
	}
	var fn *btf.Func
	if err := spec.TypeByName("vfs_mkdir", &fn); err != nil {
		return false, fmt.Errorf("find vfs_mkdir in kernel BTF: %w (%v)", features.ErrNotSupported, err)
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return false, fmt.Errorf("vfs_mkdir in kernel BTF is a %T, not a function prototype", fn.Type)
	}
	var rd *btf.Struct
	if err := spec.TypeByName("renamedata", &rd); err != nil {
		return false, fmt.Errorf("find struct renamedata in kernel BTF (vfs_rename before 5.12): %w (%v)", features.ErrNotSupported, err)
	}
	_, ptr := btf.UnderlyingType(proto.Return).(*btf.Pointer)
	return ptr, nil
}

// attach attaches prog, of spec's type and section, to the kernel
// function or tracepoint to.
func attach(spec *ebpf.ProgramSpec, to string, prog *ebpf.Program) (link.Link, error) {
	switch spec.Type {
	case ebpf.Tracing:
		return link.AttachTracing(link.TracingOptions{Program: prog})
	case ebpf.Kprobe:
		if strings.HasPrefix(spec.SectionName, "kretprobe/") {
			return link.Kretprobe(to, prog, nil)
		}
		return link.Kprobe(to, prog, nil)
	case ebpf.TracePoint:
		group, name, ok := strings.Cut(to, "/")
		if !ok {
			return nil, fmt.Errorf("tracepoint %q has no group", to)
		}
		return link.Tracepoint(group, name, prog, nil)
	}
	return nil, fmt.Errorf("program %s: unexpected type %s", spec.Name, spec.Type)
}

func hasLegacySyscalls() bool {
	return runtime.GOARCH == "amd64" || runtime.GOARCH == "386"
}

// notSupported wraps features.ErrNotSupported around errors that mean the
// kernel lacks something: a missing hook, program type or attach point,
// or, for root, a refusal (EPERM where the capabilities are present).
func notSupported(err error) error {
	switch {
	case errors.Is(err, features.ErrNotSupported):
		return err
	case errors.Is(err, ebpf.ErrNotSupported),
		errors.Is(err, os.ErrNotExist),
		errors.Is(err, unix.EOPNOTSUPP),
		errors.Is(err, unix.ENOTSUP),
		errors.Is(err, unix.ENOSYS),
		errors.Is(err, unix.EPERM) && os.Geteuid() == 0:
		return fmt.Errorf("%w: %w", features.ErrNotSupported, err)
	}
	return err
}
