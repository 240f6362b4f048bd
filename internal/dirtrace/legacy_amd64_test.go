package dirtrace

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// glibc's mkdir() and rename() use these system calls; Go's os package
// uses mkdirat and renameat.
const legacySyscalls = true

func sysMkdir(p string) error {
	b, err := unix.BytePtrFromString(p)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_MKDIR, uintptr(unsafe.Pointer(b)), 0o755, 0); e != 0 {
		return e
	}
	return nil
}

func sysRename(from, to string) error {
	f, err := unix.BytePtrFromString(from)
	if err != nil {
		return err
	}
	t, err := unix.BytePtrFromString(to)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_RENAME, uintptr(unsafe.Pointer(f)), uintptr(unsafe.Pointer(t)), 0); e != 0 {
		return e
	}
	return nil
}
