package watch

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
)

// MountSource reports where a filesystem was mounted or unmounted since
// it started, as Created at the mount point: the directory there is
// another one now, which no directory source reports, for nothing was
// made or moved. The manager walks it when a watch covers it. The kernel
// flags the mount table changed to a poll of /proc/self/mountinfo, and
// the table is read again then; between changes the source costs nothing.
// A change the table read does not show is reported as Remounted.
type MountSource struct {
	log hclog.Logger
	// table is polled, never read. A poll of it consumes the change it
	// reports, so it must be this source's alone: not in Go's netpoller,
	// as an os.File would be.
	table  int
	wake   int // an eventfd that Close writes, to end the poll
	stop   chan struct{}
	events chan DirEvent
	done   chan struct{}
	closed sync.Once
	err    error
}

// NewMountSource starts reporting mounts and unmounts.
func NewMountSource(log hclog.Logger) (*MountSource, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	table, err := unix.Open("/proc/self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mount source: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(table)
		return nil, fmt.Errorf("mount source: eventfd: %w", err)
	}
	before, err := mountinfo.Read()
	if err != nil {
		unix.Close(table)
		unix.Close(wake)
		return nil, fmt.Errorf("mount source: %w", err)
	}
	s := &MountSource{
		log: log.Named("mounts"), table: table, wake: wake,
		stop: make(chan struct{}), events: make(chan DirEvent, 64), done: make(chan struct{}),
	}
	go s.run(before)
	return s, nil
}

// Name implements Source.
func (s *MountSource) Name() string { return "mounts" }

// Events implements Source.
func (s *MountSource) Events() <-chan DirEvent { return s.events }

// Track implements Source: mounts are reported wherever they are.
func (s *MountSource) Track(...Dir) error { return nil }

// Untrack implements Source.
func (s *MountSource) Untrack(string) {}

// Close stops the source and closes Events.
func (s *MountSource) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		var one [8]byte
		one[0] = 1 // any count but 0 ends the poll, in either byte order
		_, err := unix.Write(s.wake, one[:])
		<-s.done
		s.err = errors.Join(err, unix.Close(s.wake), unix.Close(s.table))
	})
	return s.err
}

func (s *MountSource) run(before []mountinfo.Mount) {
	defer close(s.done)
	defer close(s.events)
	was := mountSet(before)
	fds := []unix.PollFd{
		{Fd: int32(s.table), Events: unix.POLLPRI},
		{Fd: int32(s.wake), Events: unix.POLLIN},
	}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			s.log.Error("poll the mount table: mounts are no longer followed", "error", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) == 0 {
			continue
		}
		now, err := mountinfo.Read()
		if err != nil {
			s.log.Error("read the mount table", "error", err)
			continue
		}
		is := mountSet(now)
		evs := mountChanges(was, is, s.Name())
		was = is
		for _, ev := range evs {
			select {
			case s.events <- ev:
			case <-s.stop:
				return
			}
		}
	}
}

// mountChanges are the events of the mount table's change from was to
// is: Created at each mount point whose mounts differ; Remounted when
// none does, as the kernel said the table changed.
func mountChanges(was, is map[mountinfo.Mount]bool, source string) []DirEvent {
	points := map[string]bool{}
	for m := range is {
		if !was[m] {
			points[m.Point] = true
		}
	}
	for m := range was {
		if !is[m] {
			points[m.Point] = true
		}
	}
	if len(points) == 0 {
		return []DirEvent{{Op: Remounted, Source: source}}
	}
	evs := make([]DirEvent, 0, len(points))
	for p := range points {
		evs = append(evs, DirEvent{Op: Created, Path: p, Source: source})
	}
	return evs
}

func mountSet(ms []mountinfo.Mount) map[mountinfo.Mount]bool {
	set := make(map[mountinfo.Mount]bool, len(ms))
	for _, m := range ms {
		set[m] = true
	}
	return set
}
