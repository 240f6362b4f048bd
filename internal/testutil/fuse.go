package testutil

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// FUSE is a filesystem served over /dev/fuse by a process the test
// starts: a root in which directories can be made and looked up, and
// files added by the test opened and read; nothing else. Hang makes it
// behave as a hung NFS or FUSE server does towards one process, whose
// requests it then holds unanswered, while other processes are still
// served. At Release, or when the test ends, the held requests are
// answered; then the filesystem is unmounted.
//
// The server is a process of its own, never the test's: a process exiting
// closes its files, and closing a file on FUSE waits for the server, which
// in the test's own process would be gone by then. It is the test binary
// again, which fuseServerEnv turns into a server before any test runs; it
// dies with the test (PR_SET_PDEATHSIG), and its death ends the
// filesystem's connection, failing whatever still waits on it.
type FUSE struct {
	Dir string

	cmd    *exec.Cmd
	cmds   *os.File // to the server: one command a line
	mu     sync.Mutex
	acks   chan string
	heldCh chan struct{} // closed when the server first holds a request
	exited chan struct{}
}

// fuseServerEnv makes a test binary that imports testutil serve FUSE on
// its descriptor 3, taking commands on 4 and answering on 5, instead of
// running tests.
const fuseServerEnv = "VIGIL_TESTUTIL_FUSE_SERVER"

func init() {
	if os.Getenv(fuseServerEnv) == "" {
		return
	}
	os.Exit(serveFUSE(3, os.NewFile(4, "commands"), os.NewFile(5, "replies")))
}

// MountFUSE mounts a FUSE filesystem on a new temporary directory. It
// skips when the kernel offers no FUSE (outside CI), and needs root.
func MountFUSE(t testing.TB) *FUSE {
	t.Helper()
	SkipUnlessRoot(t)
	return MountFUSEAt(t, TempDir(t))
}

// MountFUSEChecking is MountFUSE with default_permissions: the kernel
// checks permissions itself, from attributes it asks the server for
// first (they are never cached), as an NFS client asks its server. Each
// permission check there then waits on a hung server, even one on the
// filesystem's root, which a path lookup otherwise crosses without a
// request.
func MountFUSEChecking(t testing.TB) *FUSE {
	t.Helper()
	SkipUnlessRoot(t)
	return mountFUSE(t, TempDir(t), ",default_permissions")
}

// MountFUSEAt is MountFUSE on dir, an empty directory of the test's.
func MountFUSEAt(t testing.TB, dir string) *FUSE {
	t.Helper()
	SkipUnlessRoot(t)
	return mountFUSE(t, dir, "")
}

// mountFUSE mounts on dir with the options more added to the required.
func mountFUSE(t testing.TB, dir, more string) *FUSE {
	t.Helper()
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		skip(t, fmt.Sprintf("FUSE unavailable: %v", err))
		return nil
	}
	defer dev.Close() // the server's copy keeps the connection
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0%s", dev.Fd(), more)
	if err := unix.Mount("vigiltest", dir, "fuse", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		skip(t, fmt.Sprintf("mount FUSE on %s: %v", dir, err))
		return nil
	}
	f := &FUSE{Dir: dir, acks: make(chan string), heldCh: make(chan struct{}), exited: make(chan struct{})}
	t.Cleanup(func() { f.unmount(t) })

	self, err := os.Executable()
	if err != nil {
		t.Fatalf("FUSE server: %v", err)
	}
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	f.cmd = exec.Command(self)
	f.cmd.Env = append(os.Environ(), fuseServerEnv+"=1")
	f.cmd.ExtraFiles = []*os.File{dev, cmdR, repW}
	f.cmd.Stderr = os.Stderr
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = f.cmd.Start()
	cmdR.Close()
	repW.Close()
	if err != nil {
		cmdW.Close()
		repR.Close()
		t.Fatalf("FUSE server: %v", err)
	}
	f.cmds = cmdW
	go func() {
		f.cmd.Wait()
		close(f.exited)
	}()
	go f.readReplies(repR)
	return f
}

// readReplies closes heldCh at the server's "held" and passes on the rest.
func (f *FUSE) readReplies(r *os.File) {
	defer func() {
		r.Close()
		close(f.acks) // after: unmount waits for it, so that the test's descriptors are as before
	}()
	sc := bufio.NewScanner(r)
	var once sync.Once
	for sc.Scan() {
		if sc.Text() == "held" {
			once.Do(func() { close(f.heldCh) })
			continue
		}
		f.acks <- sc.Text()
	}
}

// command sends one command and waits for the server to apply it.
func (f *FUSE) command(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := fmt.Fprintf(f.cmds, format+"\n", args...); err != nil {
		return fmt.Errorf("FUSE server: %w", err)
	}
	select {
	case ack, ok := <-f.acks:
		if !ok || ack != "ok" {
			return fmt.Errorf("FUSE server: %q", ack)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("FUSE server: no answer in 10s")
	}
}

// AddFile adds a file with content to the root.
func (f *FUSE) AddFile(t testing.TB, name string, content []byte) {
	t.Helper()
	if err := f.command("file %s %s", name, hex.EncodeToString(content)); err != nil {
		t.Fatal(err)
	}
}

// FUSEOp is a FUSE request that Hang can hold.
type FUSEOp uint32

// The requests Hang holds when given none.
const (
	FUSELookup  FUSEOp = fuseLookup
	FUSEGetattr FUSEOp = fuseGetattr
	FUSEMkdir   FUSEOp = fuseMkdir
	FUSEOpen    FUSEOp = fuseOpen
	FUSERead    FUSEOp = fuseRead
	FUSEOpendir FUSEOp = fuseOpendir
	FUSEReaddir FUSEOp = fuseReaddir
)

// Hang holds the requests ops (all of the above when none) of process pid
// until Release; a request the kernel interrupts, as for a killed
// process, is then failed with EINTR. Requests that close files are
// never held: a process that exits closes its files, and would wait on
// them for good.
func (f *FUSE) Hang(t testing.TB, pid int, ops ...FUSEOp) {
	t.Helper()
	if len(ops) == 0 {
		ops = []FUSEOp{FUSELookup, FUSEGetattr, FUSEMkdir, FUSEOpen, FUSERead, FUSEOpendir, FUSEReaddir}
	}
	list := make([]string, len(ops))
	for i, op := range ops {
		list[i] = strconv.FormatUint(uint64(op), 10)
	}
	if err := f.command("hang %d %s", pid, strings.Join(list, ",")); err != nil {
		t.Fatal(err)
	}
}

// HangOthers is Hang for every process but the test's: for a process
// that is yet to start, as a daemon whose start-up meets the hung
// filesystem.
func (f *FUSE) HangOthers(t testing.TB, ops ...FUSEOp) {
	t.Helper()
	f.Hang(t, -os.Getpid(), ops...)
}

// Release answers the held requests and serves every request again.
func (f *FUSE) Release(t testing.TB) {
	t.Helper()
	if err := f.command("release"); err != nil {
		t.Error(err)
	}
}

// Held is closed once the server holds a request.
func (f *FUSE) Held() <-chan struct{} { return f.heldCh }

// unmount releases what is held, unmounts and waits for the server to
// end with the connection; one still serving (files left open) is killed,
// which fails what still uses the filesystem.
func (f *FUSE) unmount(t testing.TB) {
	if f.cmd != nil && f.cmd.Process != nil {
		if err := f.command("release"); err != nil {
			t.Logf("release FUSE: %v", err)
		}
	}
	if err := unix.Unmount(f.Dir, unix.MNT_DETACH); err != nil {
		t.Errorf("unmount FUSE %s: %v", f.Dir, err)
	}
	if f.cmd == nil || f.cmd.Process == nil {
		return
	}
	f.cmds.Close()
	select {
	case <-f.exited:
	case <-time.After(2 * time.Second):
		t.Logf("FUSE %s still in use after unmounting: server killed", f.Dir)
		f.cmd.Process.Kill()
		<-f.exited
	}
	for range f.acks { // readReplies ends at the server's end
	}
}

// The FUSE protocol, as include/uapi/linux/fuse.h has it (7.31 replies).
const (
	fuseRoot = 1

	fuseLookup      = 1
	fuseForget      = 2
	fuseGetattr     = 3
	fuseMkdir       = 9
	fuseOpen        = 14
	fuseRead        = 15
	fuseRelease     = 18
	fuseFlush       = 25
	fuseInit        = 26
	fuseOpendir     = 27
	fuseReaddir     = 28
	fuseReleasedir  = 29
	fuseInterrupt   = 36
	fuseBatchForget = 42

	fuseInHeader  = 40
	fuseOutHeader = 16
	fuseAttrSize  = 88
)

// fuseServer is the server's state, in the server process.
type fuseServer struct {
	dev     int
	replies io.Writer

	mu      sync.Mutex
	hang    int                          // the process whose requests are held, 0 none, -pid every other
	hangOps map[uint32]bool              // the requests held
	held    [][]byte                     // requests held
	nodes   map[uint64]map[string]uint64 // directory node -> name -> node
	files   map[uint64][]byte            // file node -> content
	next    uint64
}

// serveFUSE is the server process: it serves dev until the connection
// ends, and applies commands as they come.
func serveFUSE(dev int, cmds, replies *os.File) int {
	s := &fuseServer{
		dev:     dev,
		replies: replies,
		nodes:   map[uint64]map[string]uint64{fuseRoot: {}},
		files:   map[uint64][]byte{},
		next:    fuseRoot + 1,
	}
	go s.commands(cmds)
	buf := make([]byte, 1<<20)
	for {
		n, err := unix.Read(dev, buf)
		switch {
		case errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT):
			continue // an interrupted request: the kernel forgot it
		case err != nil:
			return 0 // ENODEV: unmounted
		case n < fuseInHeader:
			continue
		}
		s.handle(slices.Clone(buf[:n]))
	}
}

func (s *fuseServer) commands(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		reply := "ok"
		s.mu.Lock()
		switch {
		case len(f) == 3 && f[0] == "file":
			content, err := hex.DecodeString(f[2])
			if err != nil {
				reply = err.Error()
				break
			}
			node := s.next
			s.next++
			s.nodes[fuseRoot][f[1]] = node
			s.files[node] = content
		case len(f) == 3 && f[0] == "hang":
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				reply = err.Error()
				break
			}
			s.hang, s.hangOps = pid, map[uint32]bool{}
			for _, op := range strings.Split(f[2], ",") {
				n, err := strconv.ParseUint(op, 10, 32)
				if err != nil {
					reply = err.Error()
				}
				s.hangOps[uint32(n)] = true
			}
		case len(f) == 1 && f[0] == "release":
			s.hang = 0
			for _, req := range s.held {
				s.answerLocked(req)
			}
			s.held = nil
		default:
			reply = "unknown command " + sc.Text()
		}
		s.mu.Unlock()
		fmt.Fprintln(s.replies, reply)
	}
}

// handle answers a request, or holds it (Hang).
func (s *fuseServer) handle(req []byte) {
	le := binary.LittleEndian
	op := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	pid := le.Uint32(req[32:])
	switch op {
	case fuseForget, fuseBatchForget:
		return // no reply
	case fuseInterrupt:
		s.interrupt(le.Uint64(req[fuseInHeader:]))
		return
	case fuseInit:
		out := make([]byte, 64)
		le.PutUint32(out[0:], 7)     // major
		le.PutUint32(out[4:], 31)    // minor
		le.PutUint32(out[20:], 4096) // max_write
		le.PutUint32(out[24:], 1)    // time_gran
		le.PutUint16(out[28:], 1)    // max_pages
		s.reply(unique, 0, out)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hangOps[op] && s.holds(pid) {
		s.held = append(s.held, req)
		fmt.Fprintln(s.replies, "held") // the test's side closes Held at the first
		return
	}
	s.answerLocked(req)
}

// holds reports whether Hang holds the requests of thread tid.
func (s *fuseServer) holds(tid uint32) bool {
	switch {
	case s.hang > 0:
		return threadOf(s.hang, tid)
	case s.hang < 0:
		return !threadOf(-s.hang, tid)
	}
	return false
}

// interrupt fails a held request the kernel gave up waiting for.
func (s *fuseServer) interrupt(unique uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, req := range s.held {
		if binary.LittleEndian.Uint64(req[8:]) == unique {
			s.held = slices.Delete(s.held, i, i+1)
			s.reply(unique, -int32(unix.EINTR), nil)
			return
		}
	}
}

// answerLocked answers a request.
func (s *fuseServer) answerLocked(req []byte) {
	le := binary.LittleEndian
	op := le.Uint32(req[4:])
	unique := le.Uint64(req[8:])
	node := le.Uint64(req[16:])
	body := req[fuseInHeader:]
	switch op {
	case fuseLookup:
		child, ok := s.nodes[node][cString(body)]
		if !ok {
			s.reply(unique, -int32(unix.ENOENT), nil)
			return
		}
		s.reply(unique, 0, s.entryOut(child))
	case fuseGetattr:
		if !s.exists(node) {
			s.reply(unique, -int32(unix.ENOENT), nil)
			return
		}
		out := make([]byte, 16+fuseAttrSize) // attr_valid 0: asked again each time
		s.putAttr(out[16:], node)
		s.reply(unique, 0, out)
	case fuseOpen, fuseOpendir:
		s.reply(unique, 0, make([]byte, 16)) // struct fuse_open_out, fh 0
	case fuseRead:
		off := le.Uint64(body[8:]) // struct fuse_read_in: fh, offset, size
		size := uint64(le.Uint32(body[16:]))
		data := s.files[node]
		off = min(off, uint64(len(data)))
		s.reply(unique, 0, data[off:min(off+size, uint64(len(data)))])
	case fuseReaddir, fuseRelease, fuseReleasedir, fuseFlush:
		s.reply(unique, 0, nil) // a listing: empty
	case fuseMkdir:
		name := cString(body[8:]) // after struct fuse_mkdir_in
		dir, ok := s.nodes[node]
		if !ok {
			s.reply(unique, -int32(unix.ENOENT), nil)
			return
		}
		if _, ok := dir[name]; ok {
			s.reply(unique, -int32(unix.EEXIST), nil)
			return
		}
		child := s.next
		s.next++
		dir[name] = child
		s.nodes[child] = map[string]uint64{}
		s.reply(unique, 0, s.entryOut(child))
	default:
		s.reply(unique, -int32(unix.ENOSYS), nil)
	}
}

// reply answers a request; a failure means the connection is gone.
func (s *fuseServer) reply(unique uint64, errno int32, body []byte) {
	out := make([]byte, fuseOutHeader+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
	binary.LittleEndian.PutUint32(out[4:], uint32(errno))
	binary.LittleEndian.PutUint64(out[8:], unique)
	copy(out[fuseOutHeader:], body)
	unix.Write(s.dev, out)
}

func (s *fuseServer) exists(node uint64) bool {
	_, dir := s.nodes[node]
	_, file := s.files[node]
	return dir || file
}

// entryOut is a struct fuse_entry_out for a node, valid for no time: each
// path walk through it asks again.
func (s *fuseServer) entryOut(node uint64) []byte {
	out := make([]byte, 40+fuseAttrSize)
	binary.LittleEndian.PutUint64(out[0:], node) // nodeid; generation, timeouts 0
	s.putAttr(out[40:], node)
	return out
}

// putAttr writes a struct fuse_attr for a node.
func (s *fuseServer) putAttr(b []byte, node uint64) {
	le := binary.LittleEndian
	le.PutUint64(b[0:], node) // ino
	if data, ok := s.files[node]; ok {
		le.PutUint64(b[8:], uint64(len(data)))   // size
		le.PutUint32(b[60:], unix.S_IFREG|0o644) // mode
		le.PutUint32(b[64:], 1)                  // nlink
	} else {
		le.PutUint32(b[60:], unix.S_IFDIR|0o755)
		le.PutUint32(b[64:], 2)
	}
	le.PutUint32(b[80:], 4096) // blksize
}

func cString(b []byte) string {
	if i := slices.Index(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// threadOf reports whether tid is a thread of process pid.
func threadOf(pid int, tid uint32) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.FormatUint(uint64(tid), 10)))
	return err == nil
}
