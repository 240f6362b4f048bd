package quarantine

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// States of an Entry. Add writes the record as StatePending before it
// removes the original and rewrites it with the outcome, so a pending
// entry found later is an Add that was interrupted.
const (
	// StatePending: the record is written but the original was not removed
	// yet; it may still be in place.
	StatePending = "pending"
	// StateQuarantined: the original name was removed.
	StateQuarantined = "quarantined"
	// StateKept: the path no longer named the quarantined file (replaced,
	// renamed or deleted after the open): nothing was removed; Note says why.
	StateKept = "kept"
	// StateOrphan: content without a record, from an Add interrupted before
	// its record was written; the original is still in place.
	StateOrphan = "orphan"
	// StateDamaged: the record cannot be read; Note holds the error.
	StateDamaged = "damaged"
)

// Errors callers branch on with errors.Is.
var (
	ErrInvalidID    = errors.New("not a quarantine id")
	ErrNotFound     = errors.New("no such quarantine entry")
	ErrOutsideWatch = errors.New("destination outside the watch that quarantined the file")
	ErrExists       = errors.New("destination exists")
	ErrSymlink      = errors.New("a symbolic link on the path")
	// ErrNotRemoved: the file is in the store but its original name was
	// left alone (see StateKept).
	ErrNotRemoved = errors.New("original not removed")
)

// Info is what the permission loop knows about the event that found the
// file infected.
type Info struct {
	Signature string
	PID       int32  // the process that opened the file
	UID       uint32 // its uid
	Exe       string // its executable
	Watch     string // root of the watch that quarantined the file
	Time      time.Time
}

// Entry is one quarantined file, as recorded in <id>.json.
type Entry struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Path  string `json:"path"` // at open time
	// PathB64 holds the exact bytes of Path, base64, when Path is not
	// valid UTF-8 (JSON would replace them).
	PathB64   string    `json:"path_b64,omitempty"`
	Watch     string    `json:"watch"`
	Signature string    `json:"signature"`
	Time      time.Time `json:"time"`
	PID       int32     `json:"pid"`
	UID       uint32    `json:"uid"`
	Exe       string    `json:"exe,omitempty"`
	OwnerUID  uint32    `json:"owner_uid"`
	OwnerGID  uint32    `json:"owner_gid"`
	Mode      Perm      `json:"mode"`
	Size      int64     `json:"size"` // bytes copied into the store
	SHA256    string    `json:"sha256"`
	Dev       uint64    `json:"dev"`
	Ino       uint64    `json:"ino"`
	Nlink     uint64    `json:"nlink"` // links the file had when quarantined
	Note      string    `json:"note,omitempty"`
}

// setPath sets Path and, where JSON cannot carry it, PathB64.
func (e *Entry) setPath(p string) {
	e.Path, e.PathB64 = p, ""
	if !utf8.ValidString(p) {
		e.PathB64 = base64.StdEncoding.EncodeToString([]byte(p))
	}
}

// fixPath restores Path from PathB64 after decoding a record.
func (e *Entry) fixPath() error {
	if e.PathB64 == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(e.PathB64)
	if err != nil {
		return fmt.Errorf("decode path_b64: %w", err)
	}
	e.Path = string(b)
	return nil
}

// Perm is a file's permission bits (with setuid, setgid, sticky), written
// in octal in records: "0644".
type Perm uint32

func (p Perm) String() string { return fmt.Sprintf("0%03o", uint32(p)) }

// MarshalText writes p in octal.
func (p Perm) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads p in octal.
func (p *Perm) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || n > 0o7777 {
		return fmt.Errorf("mode %q: want octal permission bits such as \"0644\"", b)
	}
	*p = Perm(n)
	return nil
}

// idLen is the length of an id: 16 random bytes in hex.
const idLen = 32

// ValidID reports whether id has the form of a store id. Only such ids
// name store files, so no id can reach outside the store.
func ValidID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
