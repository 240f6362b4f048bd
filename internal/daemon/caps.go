package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// keptCaps are the capabilities vigil keeps once running; every other one
// is dropped from the effective, permitted, inheritable and bounding sets
// of every thread. Reload needs the same ones as start-up.
var keptCaps = []uintptr{
	unix.CAP_SYS_ADMIN,       // fanotify groups and marks; mounting tracefs
	unix.CAP_BPF,             // eBPF programs and maps
	unix.CAP_PERFMON,         // attaching tracing programs
	unix.CAP_DAC_READ_SEARCH, // walking and reading files it does not own
	unix.CAP_SYS_PTRACE,      // /proc/PID/exe of other users' processes
}

// quarantineCaps are kept too when a watch quarantines: removing an
// infected file from a directory vigil does not own.
var quarantineCaps = []uintptr{unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER}

// errCapsUnsupported: the binary was built with cgo, where Go cannot
// change the capabilities of every thread at once (make build uses
// CGO_ENABLED=0).
var errCapsUnsupported = errors.New("built with cgo: cannot drop capabilities on every thread")

// dropCaps reduces vigil to keep, on every thread of the process.
func dropCaps(keep []uintptr) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	keepSet := map[uintptr]bool{}
	var mask [2]uint32
	for _, c := range keep {
		keepSet[c] = true
		mask[c/32] |= 1 << (c % 32)
	}
	for c := uintptr(0); c <= last; c++ {
		if keepSet[c] {
			continue
		}
		_, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0)
		if e == syscall.ENOTSUP {
			return errCapsUnsupported
		}
		if e != 0 && e != unix.EINVAL { // EINVAL: a capability this kernel lacks
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	// Keep only what is held: a container or sandbox may not grant all of
	// keep, and asking for more than the permitted set is refused.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	mask[0] &= cur[0].Permitted
	mask[1] &= cur[1].Permitted
	data := [2]unix.CapUserData{
		{Effective: mask[0], Permitted: mask[0]},
		{Effective: mask[1], Permitted: mask[1]},
	}
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if e == syscall.ENOTSUP {
		return errCapsUnsupported
	}
	if e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}

func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return unix.CAP_LAST_CAP, nil // an older kernel: x/sys knows at least as many
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	return uintptr(n), nil
}
