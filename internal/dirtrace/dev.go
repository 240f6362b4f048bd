package dirtrace

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

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

// mountDevs maps mount ids to their superblock's device from
// /proc/self/mountinfo ("36 35 98:0 /mnt1 /mnt2 rw ...").
func mountDevs() (map[uint64]uint32, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	devs := make(map[uint64]uint32)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		devs[id] = mkdev(uint32(ma), uint32(mi))
	}
	return devs, sc.Err()
}
