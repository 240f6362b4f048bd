package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// mounts are the filesystems a section mounted for itself: filesystem
// marks go only on these. unmountAll releases them at the end of the
// section and, lazily, as soon as a signal comes, so that no mount
// outlives the bench whatever the way out (short of SIGKILL).
type mounts struct {
	e    *env
	mu   sync.Mutex
	dirs []string
	sigs chan os.Signal
	done chan struct{}
}

func (e *env) newMounts() *mounts {
	m := &mounts{e: e, sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(m.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		select {
		case <-m.sigs:
			// main's handler kills the daemons; detach at once, since the
			// process may exit before the section returns.
			m.unmountAll(true)
		case <-m.done:
		}
	}()
	return m
}

// tmpfs mounts a fresh tmpfs of sizeMiB in the bench's temp dir.
func (m *mounts) tmpfs(sizeMiB int) (string, error) {
	dir, err := m.e.dir("tmpfs")
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := unix.Mount("vigil-bench", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%dm", sizeMiB)); err != nil {
		return "", fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	m.dirs = append(m.dirs, dir)
	return dir, nil
}

// ext4 makes an ext4 image of sizeMiB with inodes inodes (inode tables
// written now, so that no lazy initialisation runs during the
// measurements) and loop-mounts it in the bench's temp dir.
func (m *mounts) ext4(sizeMiB, inodes int) (string, error) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return "", fmt.Errorf("mkfs.ext4 not installed (e2fsprogs): %w", err)
	}
	base, err := m.e.dir("ext4")
	if err != nil {
		return "", err
	}
	img := filepath.Join(base, "ext4.img")
	out, err := exec.Command(mkfs, "-q", "-F", "-N", fmt.Sprint(inodes),
		"-E", "lazy_itable_init=0,lazy_journal_init=0", img, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("create mount point: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// mount(8) sets up the loop device, with autoclear: it goes with the
	// filesystem's last unmount, lazy or not.
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mount %s: %w: %s", img, err, out)
	}
	m.dirs = append(m.dirs, dir)
	return dir, nil
}

// unmountAll unmounts every filesystem mounted, newest first; lazily when
// busy or asked to. It may be called more than once.
func (m *mounts) unmountAll(lazy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.dirs) - 1; i >= 0; i-- {
		dir := m.dirs[i]
		var err error
		if !lazy {
			err = unix.Unmount(dir, 0)
		}
		if lazy || err != nil {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				fmt.Fprintf(m.e.log, "bench: unmount %s: %v\n", dir, err)
			}
		}
	}
	m.dirs = nil
}

// close unmounts everything and stops watching for signals.
func (m *mounts) close() {
	select {
	case <-m.done:
		return
	default:
	}
	close(m.done)
	signal.Stop(m.sigs)
	m.unmountAll(false)
}
