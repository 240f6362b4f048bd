package features

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by every probe error that means the kernel
// lacks the feature (rather than the probe failing for another reason).
var ErrNotSupported = errors.New("not supported")

// Probe is one kernel capability and what probing it found.
type Probe struct {
	Name string
	Err  error // nil: available
}

// Available reports whether the feature works here.
func (p Probe) Available() bool { return p.Err == nil }

// FanotifyPermission probes a content-class fanotify group: the
// permission events vigil answers.
func FanotifyPermission() error {
	return probeInit(unix.FAN_CLASS_CONTENT, "fanotify permission events")
}

// FanotifyDirEvents probes FAN_REPORT_DFID_NAME (5.9): directory entry
// events with names, in a notification group.
func FanotifyDirEvents() error {
	return probeInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_DFID_NAME, "fanotify FAN_REPORT_DFID_NAME")
}

// EvictableMarks probes FAN_MARK_EVICTABLE (5.19): ignore marks that do
// not pin inodes.
func EvictableMarks() error {
	return probeMark(unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK|unix.FAN_MARK_EVICTABLE, "FAN_MARK_EVICTABLE")
}

// IgnoreMarks probes FAN_MARK_IGNORE (6.0).
func IgnoreMarks() error {
	return probeMark(unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORE, "FAN_MARK_IGNORE")
}

func probeInit(flags uint, what string) error {
	fd, err := unix.FanotifyInit(flags|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		return wrap(what, err)
	}
	unix.Close(fd)
	return nil
}

// probeMark places a mark with flags on a file of its own in a
// notification group, which can never block anyone.
func probeMark(flags uint, what string) error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err != nil {
		return wrap(what, err)
	}
	defer unix.Close(fd)
	f, err := os.CreateTemp("", "vigil-probe-")
	if err != nil {
		return fmt.Errorf("probe %s: %w", what, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := unix.FanotifyMark(fd, flags, unix.FAN_OPEN, int(f.Fd()), ""); err != nil {
		return wrap(what, err)
	}
	return nil
}

// wrap maps the errors a kernel gives for unknown flags to ErrNotSupported.
func wrap(what string, err error) error {
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%s: %w (%v)", what, ErrNotSupported, err)
	}
	return fmt.Errorf("probe %s: %w", what, err)
}

// All runs every probe.
func All() []Probe {
	return []Probe{
		{"fanotify permission events", FanotifyPermission()},
		{"fanotify directory events (FAN_REPORT_DFID_NAME)", FanotifyDirEvents()},
		{"evictable ignore marks (FAN_MARK_EVICTABLE)", EvictableMarks()},
		{"ignore marks with FAN_MARK_IGNORE", IgnoreMarks()},
	}
}

// Kernel returns the running kernel's release.
func Kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// InotifyWatchLimit reads fs.inotify.max_user_watches.
func InotifyWatchLimit() (int, error) {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches")
	if err != nil {
		return 0, fmt.Errorf("read inotify watch limit: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse inotify watch limit: %w", err)
	}
	return n, nil
}
