package watch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets into a struct linux_dirent64 as returned by getdents64, taken from
// x/sys rather than retyped.
var (
	direntIno    = int(unsafe.Offsetof(unix.Dirent{}.Ino))
	direntReclen = int(unsafe.Offsetof(unix.Dirent{}.Reclen))
	direntType   = int(unsafe.Offsetof(unix.Dirent{}.Type))
	direntName   = int(unsafe.Offsetof(unix.Dirent{}.Name))
)

var errBadDirent = errors.New("malformed dirent")

// parseDirents calls fn for each entry of a getdents64 buffer, skipping "."
// and ".." and entries without an inode. name aliases buf.
func parseDirents(buf []byte, fn func(name []byte, typ uint8, ino uint64)) error {
	for len(buf) > 0 {
		if len(buf) < direntName {
			return errBadDirent
		}
		reclen := int(binary.NativeEndian.Uint16(buf[direntReclen:]))
		if reclen < direntName || reclen > len(buf) {
			return errBadDirent
		}
		rec := buf[:reclen]
		buf = buf[reclen:]
		ino := binary.NativeEndian.Uint64(rec[direntIno:])
		if ino == 0 {
			continue
		}
		name := rec[direntName:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		fn(name, rec[direntType], ino)
	}
	return nil
}

// isDir reports whether the entry name in dirfd is a directory, asking the
// filesystem when getdents could not tell (DT_UNKNOWN). Symlinks are never
// directories here: the walk does not follow them.
func isDir(dirfd int, name string, typ uint8) (bool, error) {
	switch typ {
	case unix.DT_DIR:
		return true, nil
	case unix.DT_UNKNOWN:
		var st unix.Stat_t
		err := ignoringEINTR(func() error {
			return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		})
		if err != nil {
			return false, err
		}
		return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
	default:
		return false, nil
	}
}

// ignoringEINTR retries fn while it fails with EINTR, which network and FUSE
// filesystems return when the runtime's preemption signal lands mid-call.
func ignoringEINTR(fn func() error) error {
	for {
		err := fn()
		if err != unix.EINTR {
			return err
		}
	}
}
