package fanotify

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/testutil"
)

func record(mask uint64, fd, pid int32) []byte {
	b := make([]byte, unix.FAN_EVENT_METADATA_LEN)
	binary.NativeEndian.PutUint32(b[0:], unix.FAN_EVENT_METADATA_LEN)
	b[4] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(b[6:], unix.FAN_EVENT_METADATA_LEN)
	binary.NativeEndian.PutUint64(b[8:], mask)
	binary.NativeEndian.PutUint32(b[16:], uint32(fd))
	binary.NativeEndian.PutUint32(b[20:], uint32(pid))
	return b
}

func TestParse(t *testing.T) {
	two := append(record(unix.FAN_OPEN_PERM, 5, 100), record(unix.FAN_Q_OVERFLOW, -1, 0)...)
	badVersion := record(unix.FAN_OPEN_PERM, 5, 100)
	badVersion[4] = 2
	badLen := record(unix.FAN_OPEN_PERM, 5, 100)
	binary.NativeEndian.PutUint32(badLen[0:], 4096)
	tests := []struct {
		name    string
		buf     []byte
		want    []Event
		wantErr bool
	}{
		{"two events", two, []Event{{unix.FAN_OPEN_PERM, 5, 100}, {unix.FAN_Q_OVERFLOW, -1, 0}}, false},
		{"empty", nil, nil, false},
		{"short", two[:10], nil, true},
		{"bad version", badVersion, nil, true},
		{"length past buffer", badLen, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.buf, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("event %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// contentGroup returns a content-class group, which the caller closes,
// and a file in a temporary directory of its own.
func contentGroup(t *testing.T) (*Group, string) {
	t.Helper()
	path := filepath.Join(testutil.TempDir(t), "f")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := Init(unix.FAN_CLASS_CONTENT, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	return g, path
}

// TestPermissionRoundTrip marks a temp directory, denies one open and
// allows another, through a real content-class group.
func TestPermissionRoundTrip(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	g, path := contentGroup(t)
	dir := filepath.Dir(path)
	// Closing the group releases any open still waiting on it.
	testutil.Deadline(t, 10*time.Second, func() { g.Close() })
	defer g.Close()
	if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
		t.Fatal(err)
	}
	for _, allow := range []bool{false, true} {
		opened := make(chan error, 1)
		go func() {
			_, err := os.ReadFile(path)
			opened <- err
		}()
		evs, err := g.ReadEvents(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if !ev.IsPermission() {
				t.Fatalf("event %+v is not a permission event", ev)
			}
			if err := g.Respond(ev.Fd, allow); err != nil {
				t.Fatal(err)
			}
			unix.Close(ev.Fd)
		}
		err = <-opened
		if allow && err != nil {
			t.Errorf("allowed open: %v", err)
		}
		if !allow && !errors.Is(err, unix.EPERM) {
			t.Errorf("denied open: got %v, want EPERM", err)
		}
	}
}

// TestIgnoreFile: an ignore mark silences events for the file until it is
// modified.
func TestIgnoreFile(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	dir := testutil.TempDir(t)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := notifGroup(t, 0)
	if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.IgnoreFile(int(f.Fd()), unix.FAN_OPEN); err != nil {
		t.Fatal(err)
	}
	f.Close()
	drain(t, g) // the open above

	os.ReadFile(path)
	if n := drain(t, g); n != 0 {
		t.Errorf("ignored file: got %d events, want 0", n)
	}
	if err := os.WriteFile(path, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	drain(t, g) // the write's open
	os.ReadFile(path)
	if n := drain(t, g); n != 1 {
		t.Errorf("modified file: got %d events, want 1 (the modification clears the ignore mark)", n)
	}
}

// notifGroup is a notification group (nothing it marks can block) with
// the init flags more, closed when t ends.
func notifGroup(t *testing.T, more uint) *Group {
	t.Helper()
	g, err := Init(unix.FAN_CLASS_NOTIF|more, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// drain counts the events readable within 100ms.
func drain(t *testing.T, g *Group) int {
	t.Helper()
	n := 0
	for {
		g.f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		evs, err := g.ReadEvents(nil)
		for _, ev := range evs {
			unix.Close(ev.Fd)
		}
		n += len(evs)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			g.f.SetReadDeadline(time.Time{})
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestMarkEach marks several names under one directory in one call: each
// result lands in its own slot, and the marks that succeeded report
// events.
func TestMarkEach(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	dir := testutil.TempDir(t)
	for _, sub := range []string{"a", "b", "unmarked"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dirfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	g := notifGroup(t, 0)

	names := []string{"a", "missing", "file", "b"}
	want := []error{nil, unix.ENOENT, unix.ENOTDIR, nil}
	errs := make([]error, len(names))
	g.MarkEach(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, len(names),
		func(i int) (int, string) { return dirfd, names[i] }, errs)
	for i, err := range errs {
		if !errors.Is(err, want[i]) || (want[i] == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", names[i], err, want[i])
		}
	}

	for _, sub := range []string{"a", "b", "unmarked"} {
		if _, err := os.ReadFile(filepath.Join(dir, sub, "f")); err != nil {
			t.Fatal(err)
		}
	}
	if n := drain(t, g); n != 2 {
		t.Errorf("got %d events, want 2 (a/f and b/f)", n)
	}
}

// Flush removes the group's marks of every kind: no event comes after it.
func TestFlush(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	dir, fs := testutil.TempDir(t), testutil.MountTmpfs(t)
	files := []string{filepath.Join(dir, "f"), filepath.Join(fs, "f")}
	for _, f := range files {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := notifGroup(t, 0)
	open := func() {
		for _, f := range files {
			if _, err := os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, dir); err != nil {
		t.Fatal(err)
	}
	// A filesystem mark only on the filesystem the test mounted.
	if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN, unix.AT_FDCWD, fs); err != nil {
		t.Fatal(err)
	}
	open()
	if n := drain(t, g); n != 2 {
		t.Fatalf("before Flush: got %d events, want 2", n)
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	open()
	if n := drain(t, g); n != 0 {
		t.Errorf("after Flush: got %d events, want none", n)
	}
}

// A mark on a closed group says so, as os.ErrClosed: a mark that waited
// on a hung filesystem meanwhile is told from a failed one.
func TestMarkClosed(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	dir := testutil.TempDir(t)
	g, err := Init(unix.FAN_CLASS_NOTIF, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Mark(unix.FAN_MARK_ADD, unix.FAN_OPEN, unix.AT_FDCWD, dir); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Mark after Close: got %v, want os.ErrClosed", err)
	}
	errs := make([]error, 1)
	g.MarkEach(unix.FAN_MARK_ADD, unix.FAN_OPEN, 1, func(int) (int, string) { return unix.AT_FDCWD, dir }, errs)
	if !errors.Is(errs[0], os.ErrClosed) {
		t.Errorf("MarkEach after Close: got %v, want os.ErrClosed", errs[0])
	}
}

// The kernel opens each event's file inside read(2), on the file's
// filesystem: on a hung one the read blocks. InRead tells it, and another
// ReadEvents reads the events behind it meanwhile.
func TestReadBesideBlockedRead(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	fs := testutil.MountFUSE(t)
	fs.AddFile(t, "slow", []byte("x"))
	g, path := contentGroup(t)
	dir := filepath.Dir(path)
	// Closing the group releases any open still waiting on it; it waits
	// for the blocked read, which the filesystem's release lets go.
	testutil.Deadline(t, 30*time.Second, func() { fs.Release(t); g.Close() })
	defer g.Close()
	defer fs.Release(t)
	for _, d := range []string{fs.Dir, dir} {
		if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR, unix.FAN_OPEN_PERM|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, d); err != nil {
			t.Fatalf("mark %s: %v", d, err)
		}
	}
	allow := func(evs []Event) {
		for _, ev := range evs {
			if err := g.Respond(ev.Fd, true); err != nil {
				t.Error(err)
			}
			unix.Close(ev.Fd)
		}
	}

	fs.Hang(t, os.Getpid(), testutil.FUSEOpen)
	// Another process, which the filesystem serves, opens its file: the
	// kernel then opens it for this one inside read(2), and that waits.
	slow := exec.Command("cat", filepath.Join(fs.Dir, "slow"))
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		evs []Event
		err error
	}
	blocked := make(chan result, 1)
	go func() {
		evs, err := g.ReadEvents(nil)
		blocked <- result{evs, err}
	}()
	select {
	case <-fs.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("no read(2) opened the event's file on FUSE")
	}
	if g.InRead() == 0 {
		t.Error("InRead: got 0 while a read(2) waits on FUSE")
	}

	opened := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(path)
		opened <- err
	}()
	beside := make(chan result, 1)
	go func() {
		evs, err := g.ReadEvents(nil)
		beside <- result{evs, err}
	}()
	select {
	case r := <-beside:
		if r.err != nil {
			t.Fatalf("read beside the blocked one: %v", r.err)
		}
		allow(r.evs)
	case <-time.After(5 * time.Second):
		t.Fatal("no read beside the blocked read(2)")
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("open read beside the blocked read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("open not answered while another read(2) was blocked")
	}

	fs.Release(t)
	select {
	case r := <-blocked:
		if r.err != nil || len(r.evs) != 1 {
			t.Fatalf("blocked read: got %v, %v, want the FUSE file's event", r.evs, r.err)
		}
		allow(r.evs)
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read did not return once the filesystem answered")
	}
	if err := slow.Wait(); err != nil {
		t.Errorf("cat on FUSE: %v", err)
	}
}
