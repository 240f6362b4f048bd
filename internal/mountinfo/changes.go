package mountinfo

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Changes tells whether a mount namespace's mounts changed: it is an
// open mountinfo of the namespace, which poll(2) flags when a filesystem
// was mounted or unmounted there since the last poll. It never reads the
// file. An open mountinfo holds its namespace, and every mount in it,
// while it is open.
type Changes struct{ fd int }

// OpenChanges opens name, a mountinfo file, to tell its namespace's
// changes from now on.
func OpenChanges(name string) (*Changes, error) {
	// Not os.Open: Go's netpoller would poll the file too, and each poll
	// of a mountinfo takes the change it reports.
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return &Changes{fd: fd}, nil
}

// Changed reports whether the mounts changed since the last call, or
// since OpenChanges; true when it cannot tell.
func (c *Changes) Changed() bool {
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLPRI}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0
}

// Close releases the file, and the namespace with it.
func (c *Changes) Close() error { return unix.Close(c.fd) }
