package watch

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Dir is a directory a walk reached: open for the length of one call, with
// what one statx of it said, so that markers and sources need not stat it
// again.
type Dir struct {
	// Fd is the directory, open O_RDONLY|O_DIRECTORY, when Name is "";
	// else its parent, and Name its entry there (a leaf directory the
	// walk did not open). Valid only during the call.
	Fd    int
	Name  string
	Path  string // absolute and clean
	Dev   uint64 // st_dev
	Ino   uint64
	MntID uint64 // statx's mount id; 0 when the kernel reports none (before 5.8)
	// Born is the birth time (ns since the epoch) when the filesystem
	// keeps one, else 0, as for a leaf marked from its parent's listing.
	// A deleted directory's inode number is given to the next one made,
	// often at once: with the number, it tells the two apart.
	Born int64
	// Subtree says the walk covers the directories below this one too:
	// each is marked and tracked in its turn. A source may then cover
	// them all from here (dirtrace does).
	Subtree bool
}

func (d Dir) key() devIno { return devIno{d.Dev, d.Ino} }

// statDir fills a Dir for the directory open at fd and returns its link
// count too.
func statDir(fd int, path string) (Dir, uint32, error) {
	d, nlink, err := stat(fd, "", unix.AT_EMPTY_PATH)
	d.Path = path
	return d, nlink, err
}

// statAt is statDir for the entry name of the directory open at fd,
// which must be a directory itself (a symlink is not followed).
func statAt(fd int, name string) (Dir, uint32, error) {
	return stat(fd, name, unix.AT_SYMLINK_NOFOLLOW)
}

func stat(fd int, name string, flags int) (Dir, uint32, error) {
	var stx unix.Statx_t
	err := ignoringEINTR(func() error {
		return unix.Statx(fd, name, flags|unix.AT_STATX_SYNC_AS_STAT,
			unix.STATX_TYPE|unix.STATX_INO|unix.STATX_NLINK|unix.STATX_MNT_ID|unix.STATX_BTIME, &stx)
	})
	if err != nil {
		return Dir{}, 0, fmt.Errorf("statx: %w", err)
	}
	if stx.Mode&unix.S_IFMT != unix.S_IFDIR {
		return Dir{}, 0, fmt.Errorf("statx: %w", unix.ENOTDIR)
	}
	d := Dir{
		Fd:   fd,
		Name: name,
		Dev:  unix.Mkdev(stx.Dev_major, stx.Dev_minor),
		Ino:  stx.Ino,
	}
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		d.MntID = stx.Mnt_id
	}
	if stx.Mask&unix.STATX_BTIME != 0 {
		d.Born = stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
	}
	return d, stx.Nlink, nil
}
