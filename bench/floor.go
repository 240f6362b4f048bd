package main

import (
	"cmp"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// floorOnce does on root's tree what any walk placing marks must, and
// nothing more: it lists each directory that has subdirectories, marks
// every directory as watch.Place's row does, and stats each to learn
// whether it has any, on as many threads as watch.Place uses. Its rate is
// what this kernel allows on this machine today: the walks' rows are read
// against it, as the kernel's share moves twofold from one virtual
// machine to the next while the walk's own share does not.
func floorOnce(root string) (int, time.Duration, error) {
	gfd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_UNLIMITED_MARKS|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return 0, 0, fmt.Errorf("notification group: %w", err)
	}
	defer unix.Close(gfd)
	const mask = unix.FAN_OPEN | unix.FAN_EVENT_ON_CHILD
	const flags = unix.FAN_MARK_ADD | unix.FAN_MARK_ONLYDIR | unix.FAN_MARK_DONT_FOLLOW

	start := time.Now()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", root, err)
	}
	if err := unix.FanotifyMark(gfd, flags, mask, fd, ""); err != nil {
		unix.Close(fd)
		return 0, 0, fmt.Errorf("mark %s: %w", root, err)
	}
	// Level by level: each level's directories are listed in parallel, and
	// those of their subdirectories that have subdirectories in turn make
	// the next level. The bench's trees are two levels deep.
	var dirs atomic.Int64
	dirs.Add(1)
	level := []int{fd}
	for len(level) > 0 {
		var (
			next     []int
			mu       sync.Mutex
			taken    atomic.Int64
			firstErr error
			wg       sync.WaitGroup
		)
		fail := func(err error) {
			mu.Lock()
			firstErr = cmp.Or(firstErr, err)
			mu.Unlock()
		}
		for range runtime.NumCPU() {
			wg.Go(func() {
				buf := make([]byte, 64<<10)
				var names []string
				for i := int(taken.Add(1) - 1); i < len(level); i = int(taken.Add(1) - 1) {
					parent := level[i]
					names = names[:0]
					for {
						n, err := unix.Getdents(parent, buf)
						if err != nil {
							fail(fmt.Errorf("list: %w", err))
							break
						}
						if n == 0 {
							break
						}
						names = appendDirs(names, buf[:n])
					}
					for _, name := range names {
						var stx unix.Statx_t
						err := unix.FanotifyMark(gfd, flags, mask, parent, name)
						if err == nil {
							err = unix.Statx(parent, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE|unix.STATX_NLINK, &stx)
						}
						if err != nil {
							fail(fmt.Errorf("%s: %w", name, err))
							continue
						}
						dirs.Add(1)
						if stx.Nlink == 2 {
							continue
						}
						child, err := unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
						if err != nil {
							fail(fmt.Errorf("%s: %w", name, err))
							continue
						}
						mu.Lock()
						next = append(next, child)
						mu.Unlock()
					}
					unix.Close(parent)
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			for _, fd := range next {
				unix.Close(fd)
			}
			return 0, 0, fmt.Errorf("floor walk of %s: %w", root, firstErr)
		}
		level = next
	}
	return int(dirs.Load()), time.Since(start), nil
}

// appendDirs appends the names of the subdirectories in a getdents
// listing to names; the filesystems the bench uses fill in d_type.
func appendDirs(names []string, buf []byte) []string {
	for len(buf) > 0 {
		de := (*unix.Dirent)(unsafe.Pointer(&buf[0]))
		name := unix.ByteSliceToString(buf[unsafe.Offsetof(de.Name):de.Reclen])
		if de.Type == unix.DT_DIR && name != "." && name != ".." {
			names = append(names, name)
		}
		buf = buf[de.Reclen:]
	}
	return names
}
