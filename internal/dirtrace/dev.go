package dirtrace

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/mountinfo"
	"github.com/vigilsec/vigil/internal/watch"
)

// kernelDev converts a device number as stat reports it to the kernel's
// dev_t, which is what the programs read: MKDEV(major, minor).
func kernelDev(dev uint64) uint32 {
	return mkdev(unix.Major(dev), unix.Minor(dev))
}

func mkdev(major, minor uint32) uint32 {
	const minorBits = 20 // include/linux/kdev_t.h MINORBITS; x/sys has no constant
	return major<<minorBits | minor
}

// keyOfLocked returns the watched-map key of d: its inode and its
// superblock's device, which is what the programs read from
// inode->i_sb->s_dev. stat's st_dev can differ from that (btrfs subvolumes
// report their own device), so the device comes from the mount's line in
// mountinfo, by statx's mount id. A Dir without an inode is stat'ed here.
func (t *Tracer) keyOfLocked(d watch.Dir) (dirwatchDwKey, error) {
	if d.Ino == 0 {
		var stx unix.Statx_t
		if err := unix.Statx(d.Fd, d.Name, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
			return dirwatchDwKey{}, fmt.Errorf("statx: %w", err)
		}
		d.Dev, d.Ino = unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino
		if stx.Mask&unix.STATX_MNT_ID != 0 {
			d.MntID = stx.Mnt_id
		}
	}
	k := dirwatchDwKey{Ino: d.Ino, Dev: kernelDev(d.Dev)}
	if d.MntID == 0 {
		return k, nil // before 5.8: stat's device is the best guess
	}
	dev, ok := t.sbDev[d.MntID]
	if !ok {
		devs, err := mountDevs()
		if err != nil {
			return k, nil
		}
		t.sbDev = devs
		if dev, ok = devs[d.MntID]; !ok {
			return k, nil
		}
	}
	k.Dev = dev
	return k, nil
}

// mount is a line of /proc/self/mountinfo, with the kernel's dev_t.
type mount struct {
	id    uint64
	dev   uint32 // the superblock's, as the kernel's dev_t
	root  string // the directory of the filesystem mounted
	point string // where
}

func mounts() ([]mount, error) {
	all, err := mountinfo.Read()
	ms := make([]mount, len(all))
	for i, m := range all {
		ms[i] = mount{id: m.ID, dev: mkdev(m.Major, m.Minor), root: m.Root, point: m.Point}
	}
	return ms, err
}

// mountDevs maps mount ids to their superblock's device.
func mountDevs() (map[uint64]uint32, error) {
	ms, err := mounts()
	devs := make(map[uint64]uint32, len(ms))
	for _, m := range ms {
		devs[m.id] = m.dev
	}
	return devs, err
}

// topPath returns a path to the directory at rel from the top of the
// filesystem dev, through the mount of it nearest its top that shows rel,
// and checks that the path leads there: a directory on that filesystem,
// and inode ino when ino is not 0. A mount over the way, or a filesystem
// this mount namespace does not show, gives false.
func topPath(dev uint32, rel string, ino uint64) (string, bool) {
	ms, err := mounts()
	if err != nil {
		return "", false
	}
	var best *mount
	for i, m := range ms {
		if m.dev == dev && mountinfo.Under(rel, m.root) && (best == nil || len(m.root) < len(best.root)) {
			best = &ms[i]
		}
	}
	if best == nil {
		return "", false
	}
	p := filepath.Join(best.point, strings.TrimPrefix(rel, best.root))
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		return "", false
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR || (ino != 0 && stx.Ino != ino) {
		return "", false
	}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		for _, m := range ms {
			if m.id == stx.Mnt_id && m.dev != dev {
				return "", false
			}
		}
	}
	return p, true
}
