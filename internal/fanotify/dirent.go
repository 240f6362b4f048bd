package fanotify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// DirEvent is one event of a group created with FAN_REPORT_DFID_NAME: the
// directory an entry changed in, as a file handle on the filesystem Fsid,
// and the entry's name ("." for an event on the directory itself, as
// FAN_DELETE_SELF). Overflow events carry neither.
//
// A FAN_RENAME event carries the directory the entry went to in Fsid,
// Handle and Name, and the one it left in OldFsid, OldHandle and OldName;
// the kernel gives each only when the group marks that directory, and
// HasDir and HasOld tell which came.
type DirEvent struct {
	Mask   uint64
	Pid    int32
	Fsid   [2]int32 // __kernel_fsid_t, as statfs(2) reports it
	Handle unix.FileHandle
	Name   string
	HasDir bool

	OldFsid   [2]int32
	OldHandle unix.FileHandle
	OldName   string
	HasOld    bool
}

// Overflow reports whether the kernel dropped events (FAN_Q_OVERFLOW).
func (e DirEvent) Overflow() bool { return e.Mask&unix.FAN_Q_OVERFLOW != 0 }

// Layout of the info records that follow the metadata:
// struct fanotify_event_info_header { u8 info_type; u8 pad; u16 len; }
// struct fanotify_event_info_fid { header; __kernel_fsid_t fsid; struct file_handle handle; }
// struct file_handle { u32 handle_bytes; s32 handle_type; u8 f_handle[]; }
// then, for DFID_NAME, the entry's name, NUL-terminated and padded.
const (
	infoHeaderLen = 4
	fsidLen       = 8
	handleHdrLen  = 8
)

// ParseDirEvents decodes a buffer read from a FAN_REPORT_DFID_NAME group.
// Info records other than DFID_NAME, DFID and FAN_RENAME's OLD_ and
// NEW_DFID_NAME are skipped; an event without a directory record (an
// overflow) has HasDir false and a zero Handle.
func ParseDirEvents(b []byte, dst []DirEvent) ([]DirEvent, error) {
	for len(b) > 0 {
		m, err := parseMetadata(b)
		if err != nil {
			return dst, err
		}
		ev := DirEvent{Mask: m.mask, Pid: m.pid}
		if err := parseInfo(b[m.metaLen:m.eventLen], &ev); err != nil {
			return dst, err
		}
		dst = append(dst, ev)
		b = b[m.eventLen:]
	}
	return dst, nil
}

func parseInfo(b []byte, ev *DirEvent) error {
	for len(b) > 0 {
		if len(b) < infoHeaderLen {
			return errors.New("parse fanotify events: short info record")
		}
		typ, n := b[0], int(binary.NativeEndian.Uint16(b[2:4]))
		if n < infoHeaderLen || n > len(b) {
			return fmt.Errorf("parse fanotify events: bad info record length %d", n)
		}
		rec := b[infoHeaderLen:n]
		b = b[n:]
		var fsid *[2]int32
		var handle *unix.FileHandle
		var name *string
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_DFID, unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME:
			fsid, handle, name, ev.HasDir = &ev.Fsid, &ev.Handle, &ev.Name, true
		case unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
			fsid, handle, name, ev.HasOld = &ev.OldFsid, &ev.OldHandle, &ev.OldName, true
		default:
			continue
		}
		if len(rec) < fsidLen+handleHdrLen {
			return fmt.Errorf("parse fanotify events: short fid record of %d bytes", len(rec))
		}
		fsid[0] = int32(binary.NativeEndian.Uint32(rec[0:4]))
		fsid[1] = int32(binary.NativeEndian.Uint32(rec[4:8]))
		h := rec[fsidLen:]
		size := int(binary.NativeEndian.Uint32(h[0:4]))
		htype := int32(binary.NativeEndian.Uint32(h[4:8]))
		if size > len(h)-handleHdrLen {
			return fmt.Errorf("parse fanotify events: file handle of %d bytes in a %d-byte record", size, len(rec))
		}
		*handle = unix.NewFileHandle(htype, bytes.Clone(h[handleHdrLen:handleHdrLen+size]))
		*name = ""
		if typ != unix.FAN_EVENT_INFO_TYPE_DFID {
			n := h[handleHdrLen+size:]
			if i := bytes.IndexByte(n, 0); i >= 0 {
				n = n[:i]
			}
			*name = string(n)
		}
	}
	return nil
}

// ReadDirEvents is ReadEvents for a group created with
// FAN_REPORT_DFID_NAME.
func (g *Group) ReadDirEvents(dst []DirEvent) ([]DirEvent, error) {
	n, err := g.readRaw(g.buf, true)
	if err != nil || n == 0 {
		return dst, err
	}
	return ParseDirEvents(g.buf[:n], dst)
}

// IgnoreDir adds an evictable ignore mark for mask (FAN_MARK_IGNORE, so
// FAN_EVENT_ON_CHILD in mask silences the directory's files) on the
// directory open at fd. It survives modification of the directory and
// lasts until UnignoreDir or until the kernel evicts the inode.
func (g *Group) IgnoreDir(fd int, mask uint64) error {
	return g.Mark(unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORE|unix.FAN_MARK_EVICTABLE|
		unix.FAN_MARK_IGNORED_SURV_MODIFY|unix.FAN_MARK_ONLYDIR, mask, fd, "")
}

// UnignoreDir removes an ignore mark placed by IgnoreDir; a directory
// that has none is not an error.
func (g *Group) UnignoreDir(fd int, mask uint64) error {
	err := g.Mark(unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORE|unix.FAN_MARK_ONLYDIR, mask, fd, "")
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}
