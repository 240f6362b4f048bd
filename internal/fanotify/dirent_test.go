package fanotify

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/testutil"
)

// info builds one info record: header, fsid, file_handle and, when name
// is not nil, the NUL-terminated name, padded to 4 bytes as the kernel does.
func info(typ uint8, fsid [2]int32, htype int32, handle []byte, name *string) []byte {
	b := make([]byte, 4, 64)
	b[0] = typ
	b = binary.NativeEndian.AppendUint32(b, uint32(fsid[0]))
	b = binary.NativeEndian.AppendUint32(b, uint32(fsid[1]))
	b = binary.NativeEndian.AppendUint32(b, uint32(len(handle)))
	b = binary.NativeEndian.AppendUint32(b, uint32(htype))
	b = append(b, handle...)
	if name != nil {
		b = append(b, *name...)
		b = append(b, 0)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.NativeEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// withInfo is record with info records appended and event_len set.
func withInfo(mask uint64, pid int32, infos ...[]byte) []byte {
	b := record(mask, unix.FAN_NOFD, pid)
	for _, in := range infos {
		b = append(b, in...)
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	return b
}

func TestParseDirEvents(t *testing.T) {
	name, other := "d", "a-longer-name"
	fsid := [2]int32{0x1234, -2}
	h := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	moved := withInfo(unix.FAN_MOVED_TO|unix.FAN_ONDIR, 42, info(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, fsid, 1, h, &name))
	pidfd := make([]byte, 8) // an info record of a type this parser skips
	pidfd[0] = unix.FAN_EVENT_INFO_TYPE_PIDFD
	binary.NativeEndian.PutUint16(pidfd[2:], 8)
	two := append(withInfo(unix.FAN_MOVED_TO, 7, pidfd, info(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, fsid, 2, h[:4], &other)),
		record(unix.FAN_Q_OVERFLOW, unix.FAN_NOFD, 0)...)
	dfid := withInfo(unix.FAN_ATTRIB|unix.FAN_ONDIR, 1, info(unix.FAN_EVENT_INFO_TYPE_DFID, fsid, 1, h, nil))
	fsid2 := [2]int32{5, 6}
	rename := withInfo(unix.FAN_RENAME|unix.FAN_ONDIR, 3,
		info(unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, fsid2, 1, h, &name),
		info(unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, fsid, 1, h[:4], &other))
	renameOut := withInfo(unix.FAN_RENAME|unix.FAN_ONDIR, 3, info(unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, fsid2, 1, h, &name))
	badHandle := withInfo(unix.FAN_MOVED_TO, 1, info(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, fsid, 1, h, &name))
	binary.NativeEndian.PutUint32(badHandle[unix.FAN_EVENT_METADATA_LEN+4+8:], 200)
	badInfoLen := withInfo(unix.FAN_MOVED_TO, 1, info(unix.FAN_EVENT_INFO_TYPE_DFID_NAME, fsid, 1, h, &name))
	binary.NativeEndian.PutUint16(badInfoLen[unix.FAN_EVENT_METADATA_LEN+2:], 2)
	shortFid := withInfo(unix.FAN_MOVED_TO, 1, []byte{unix.FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 8, 0, 0, 0, 0, 0})
	tests := []struct {
		name    string
		buf     []byte
		want    []DirEvent
		wantErr bool
	}{
		{"moved dir", moved, []DirEvent{{
			Mask: unix.FAN_MOVED_TO | unix.FAN_ONDIR, Pid: 42, Fsid: fsid, Handle: unix.NewFileHandle(1, h), Name: "d", HasDir: true,
		}}, false},
		{"skipped record, then overflow", two, []DirEvent{
			{Mask: unix.FAN_MOVED_TO, Pid: 7, Fsid: fsid, Handle: unix.NewFileHandle(2, h[:4]), Name: other, HasDir: true},
			{Mask: unix.FAN_Q_OVERFLOW},
		}, false},
		{"directory without name", dfid, []DirEvent{{
			Mask: unix.FAN_ATTRIB | unix.FAN_ONDIR, Pid: 1, Fsid: fsid, Handle: unix.NewFileHandle(1, h), HasDir: true,
		}}, false},
		{"rename, both sides", rename, []DirEvent{{
			Mask: unix.FAN_RENAME | unix.FAN_ONDIR, Pid: 3,
			Fsid: fsid, Handle: unix.NewFileHandle(1, h[:4]), Name: other, HasDir: true,
			OldFsid: fsid2, OldHandle: unix.NewFileHandle(1, h), OldName: name, HasOld: true,
		}}, false},
		{"rename, old side only", renameOut, []DirEvent{{
			Mask: unix.FAN_RENAME | unix.FAN_ONDIR, Pid: 3,
			OldFsid: fsid2, OldHandle: unix.NewFileHandle(1, h), OldName: name, HasOld: true,
		}}, false},
		{"empty", nil, nil, false},
		{"short", moved[:20], nil, true},
		{"handle past record", badHandle, nil, true},
		{"info length under header", badInfoLen, nil, true},
		{"fid record too short", shortFid, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDirEvents(tt.buf, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.want[i]) {
					t.Errorf("event %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestDirEventsLive renames a directory on a tmpfs this test mounted and
// resolves the event's handle back to the directory it landed in.
func TestDirEventsLive(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	if err := features.FanotifyDirEvents(); errors.Is(err, features.ErrNotSupported) {
		t.Skip(err)
	}
	mnt := testutil.MountTmpfs(t)
	for _, d := range []string{"out/d", "w"} {
		if err := os.MkdirAll(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g := notifGroup(t, unix.FAN_REPORT_DFID_NAME)
	if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_MOVED_TO|unix.FAN_ONDIR, unix.AT_FDCWD, mnt); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "out/d"), filepath.Join(mnt, "w/d")); err != nil {
		t.Fatal(err)
	}
	evs, err := g.ReadDirEvents(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Mask != unix.FAN_MOVED_TO|unix.FAN_ONDIR || evs[0].Name != "d" {
		t.Fatalf("got %+v, want one FAN_MOVED_TO|FAN_ONDIR for d", evs)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if got := evs[0].Fsid; got != st.Fsid.Val {
		t.Errorf("fsid: got %v want %v", got, st.Fsid.Val)
	}
	mfd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0) // not O_PATH: open_by_handle_at refuses one
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, evs[0].Handle, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	got, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if want := filepath.Join(mnt, "w"); err != nil || got != want {
		t.Errorf("handle resolves to %q (%v), want %q", got, err, want)
	}
}

// TestIgnoreDir: an ignore mark on a directory silences its files' events
// from a filesystem mark, until it is removed.
func TestIgnoreDir(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	for _, probe := range []func() error{features.IgnoreMarks, features.EvictableMarks} {
		if err := probe(); errors.Is(err, features.ErrNotSupported) {
			t.Skip(err)
		}
	}
	mnt := testutil.MountTmpfs(t)
	dir := filepath.Join(mnt, "d")
	path := filepath.Join(dir, "f")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := notifGroup(t, 0)
	if err := g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN, unix.AT_FDCWD, mnt); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := g.IgnoreDir(fd, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD); err != nil {
		t.Fatal(err)
	}
	drain(t, g)
	os.ReadFile(path)
	if n := drain(t, g); n != 0 {
		t.Errorf("ignored directory: got %d events, want 0", n)
	}
	for range 2 { // removing twice: the second finds none, not an error
		if err := g.UnignoreDir(fd, unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD); err != nil {
			t.Fatal(err)
		}
	}
	os.ReadFile(path)
	if n := drain(t, g); n != 1 {
		t.Errorf("unignored directory: got %d events, want 1", n)
	}
}
