package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FUSE is a filesystem served by the test itself over /dev/fuse: a root
// in which directories can be made and looked up, and nothing else. Hang
// makes it behave as a hung NFS or FUSE server does towards the test's own
// process, whose requests it then holds unanswered, while other processes
// are still served. When the test ends the held requests are answered
// and the filesystem is unmounted.
type FUSE struct {
	Dir string

	dev  int
	done chan struct{}

	mu       sync.Mutex
	hang     bool
	held     [][]byte // requests held, answered at the end
	heldOnce sync.Once
	heldCh   chan struct{}                // closed at the first request held
	nodes    map[uint64]map[string]uint64 // directory node -> name -> node
	next     uint64
}

// MountFUSE mounts a FUSE filesystem on a new temporary directory. It
// skips when the kernel offers no FUSE (outside CI), and needs root.
func MountFUSE(t testing.TB) *FUSE {
	t.Helper()
	SkipUnlessRoot(t)
	// A blocking descriptor of its own, read by one goroutine: an
	// os.File would keep the reading from ending on Close.
	dev, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		skip(t, fmt.Sprintf("FUSE unavailable: %v", err))
		return nil
	}
	dir := TempDir(t)
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", dev)
	if err := unix.Mount("vigiltest", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		unix.Close(dev)
		skip(t, fmt.Sprintf("mount FUSE on %s: %v", dir, err))
		return nil
	}
	f := &FUSE{
		Dir:    dir,
		dev:    dev,
		done:   make(chan struct{}),
		heldCh: make(chan struct{}),
		nodes:  map[uint64]map[string]uint64{fuseRoot: {}},
		next:   fuseRoot + 1,
	}
	go f.serve()
	t.Cleanup(func() {
		f.release()
		// Unmounted, the connection ends and so does the reading.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount FUSE %s: %v", dir, err)
		}
		select {
		case <-f.done:
			unix.Close(dev)
		case <-time.After(10 * time.Second):
			t.Errorf("FUSE %s: still served 10s after unmounting", dir)
		}
	})
	return f
}

// release answers the held requests and serves every request again.
func (f *FUSE) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = false
	for _, req := range f.held {
		f.answerLocked(req)
	}
	f.held = nil
}

// Hang stops answering the requests of this process from now on.
func (f *FUSE) Hang() {
	f.mu.Lock()
	f.hang = true
	f.mu.Unlock()
}

// Held is closed once a request of this process is held by Hang.
func (f *FUSE) Held() <-chan struct{} { return f.heldCh }

// The FUSE protocol, as include/uapi/linux/fuse.h has it (7.31 replies).
const (
	fuseRoot = 1

	fuseLookup      = 1
	fuseForget      = 2
	fuseGetattr     = 3
	fuseMkdir       = 9
	fuseInit        = 26
	fuseInterrupt   = 36
	fuseBatchForget = 42

	fuseInHeader  = 40
	fuseOutHeader = 16
	fuseAttrSize  = 88
)

func (f *FUSE) serve() {
	defer close(f.done)
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(f.dev, buf)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT):
			continue // an interrupted request: the kernel forgot it
		case err != nil:
			return // ENODEV: unmounted
		case n < fuseInHeader:
			continue
		}
		f.handle(buf[:n])
	}
}

// handle answers a request, or holds it (Hang).
func (f *FUSE) handle(req []byte) {
	le := binary.LittleEndian
	op := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	pid := le.Uint32(req[32:])
	switch op {
	case fuseForget, fuseBatchForget, fuseInterrupt:
		return // no reply
	case fuseInit:
		out := make([]byte, 64)
		le.PutUint32(out[0:], 7)     // major
		le.PutUint32(out[4:], 31)    // minor
		le.PutUint32(out[8:], 0)     // max_readahead
		le.PutUint32(out[20:], 4096) // max_write
		le.PutUint32(out[24:], 1)    // time_gran
		le.PutUint16(out[28:], 1)    // max_pages
		f.reply(unique, 0, out)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hang && ownThread(pid) {
		f.held = append(f.held, slices.Clone(req))
		f.heldOnce.Do(func() { close(f.heldCh) })
		return
	}
	f.answerLocked(req)
}

// answerLocked answers a request other than those handle answers at once.
func (f *FUSE) answerLocked(req []byte) {
	le := binary.LittleEndian
	op := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	node := le.Uint64(req[16:])
	body := req[fuseInHeader:]
	switch op {
	case fuseLookup:
		child, ok := f.nodes[node][cString(body)]
		if !ok {
			f.reply(unique, -int32(unix.ENOENT), nil)
			return
		}
		f.reply(unique, 0, entryOut(child))
	case fuseGetattr:
		if _, ok := f.nodes[node]; !ok {
			f.reply(unique, -int32(unix.ENOENT), nil)
			return
		}
		out := make([]byte, 16+fuseAttrSize) // attr_valid 0: asked again each time
		putAttr(out[16:], node)
		f.reply(unique, 0, out)
	case fuseMkdir:
		name := cString(body[8:]) // after struct fuse_mkdir_in
		dir, ok := f.nodes[node]
		if !ok {
			f.reply(unique, -int32(unix.ENOENT), nil)
			return
		}
		if _, ok := dir[name]; ok {
			f.reply(unique, -int32(unix.EEXIST), nil)
			return
		}
		child := f.next
		f.next++
		dir[name] = child
		f.nodes[child] = map[string]uint64{}
		f.reply(unique, 0, entryOut(child))
	default:
		f.reply(unique, -int32(unix.ENOSYS), nil)
	}
}

// reply answers a request; a failure means the connection is gone, which
// only the end of the test does.
func (f *FUSE) reply(unique uint64, errno int32, body []byte) {
	out := make([]byte, fuseOutHeader+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(errno))
	binary.LittleEndian.PutUint64(out[8:], unique)
	copy(out[fuseOutHeader:], body)
	unix.Write(f.dev, out)
}

// entryOut is a struct fuse_entry_out for a directory node, valid for no
// time: each path walk through it asks again.
func entryOut(node uint64) []byte {
	out := make([]byte, 40+fuseAttrSize)
	binary.LittleEndian.PutUint64(out[0:], node) // nodeid; generation, timeouts 0
	putAttr(out[40:], node)
	return out
}

// putAttr writes a struct fuse_attr for a directory node.
func putAttr(b []byte, node uint64) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], node)                // ino
	le.PutUint32(b[60:], unix.S_IFDIR|0o755) // mode
	le.PutUint32(b[64:], 2)                  // nlink
	le.PutUint32(b[80:], 4096)               // blksize
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// ownThread reports whether tid is a thread of this process.
func ownThread(tid uint32) bool {
	_, err := os.Stat(filepath.Join("/proc/self/task", strconv.FormatUint(uint64(tid), 10)))
	return err == nil
}
