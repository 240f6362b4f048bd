package quarantine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/testutil"
)

var eicar = []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "var", "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// infected writes an infected file at path and returns it open read-only,
// as a fanotify event fd would be, with its offset not at the start.
func infected(t *testing.T, path string, mode os.FileMode) *os.File {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, eicar, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.Seek(7, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

func info(watch string) Info {
	return Info{Signature: "Eicar-Test-Signature", PID: 4242, UID: 1000, Exe: "/usr/bin/cat", Watch: watch,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func perm(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		root    bool // needs root
		wantErr string
	}{
		{name: "missing: created", setup: func(*testing.T, string) {}},
		{name: "existing 0700", setup: func(t *testing.T, dir string) { mkdir(t, dir, 0o700) }},
		{name: "group readable", setup: func(t *testing.T, dir string) { mkdir(t, dir, 0o750) }, wantErr: "want 0700"},
		{name: "world writable", setup: func(t *testing.T, dir string) { mkdir(t, dir, 0o703) }, wantErr: "want 0700"},
		{name: "symlink to a good dir", setup: func(t *testing.T, dir string) {
			real := dir + ".real"
			mkdir(t, real, 0o700)
			if err := os.Symlink(real, dir); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "symlink"},
		{name: "a file", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not a directory"},
		{name: "owned by another user", root: true, setup: func(t *testing.T, dir string) {
			mkdir(t, dir, 0o700)
			if err := os.Chown(dir, 4321, 4321); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "owned by uid 4321"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				testutil.SkipUnlessRoot(t)
			}
			dir := filepath.Join(t.TempDir(), "q")
			tt.setup(t, dir)
			s, err := Open(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v want none", err)
			}
			defer s.Close()
			if got := perm(t, dir); got != 0o700 {
				t.Errorf("got mode %v want 0700", got)
			}
		})
	}
	if _, err := Open("relative/q"); err == nil {
		t.Errorf("relative dir: got no error, want one")
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	root := os.Geteuid() == 0
	tests := []struct {
		name   string
		mode   os.FileMode
		owner  int // -1: leave
		to     string
		force  bool
		wantAt string // relative to the watch, or absolute
	}{
		{name: "to the original path", mode: 0o640, owner: -1, wantAt: "sub/evil.exe"},
		{name: "owner and setuid kept", mode: 0o4755 | os.ModeSetuid, owner: 1234, wantAt: "sub/evil.exe"},
		{name: "elsewhere in the tree", mode: 0o600, owner: -1, to: "other/name", wantAt: "other/name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.owner >= 0 && !root {
				testutil.SkipUnlessRoot(t)
			}
			s := newStore(t)
			watch := filepath.Join(t.TempDir(), "srv")
			path := filepath.Join(watch, "sub", "evil.exe")
			f := infected(t, path, tt.mode)
			if tt.owner >= 0 {
				if err := os.Chown(path, tt.owner, tt.owner+1); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // chown cleared setuid
					t.Fatal(err)
				}
			}
			var before unix.Stat_t
			if err := unix.Stat(path, &before); err != nil {
				t.Fatal(err)
			}

			e, err := s.Add(f, path, info(watch))
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if exists(path) {
				t.Errorf("original still at %s after Add", path)
			}
			want := Entry{
				ID: e.ID, State: StateQuarantined, Path: path, Watch: watch, Signature: "Eicar-Test-Signature",
				Time: info(watch).Time, PID: 4242, UID: 1000, Exe: "/usr/bin/cat",
				OwnerUID: before.Uid, OwnerGID: before.Gid, Mode: Perm(before.Mode & 0o7777),
				Size: int64(len(eicar)), SHA256: sum(eicar), Dev: uint64(before.Dev), Ino: before.Ino, Nlink: 1,
			}
			if e != want {
				t.Errorf("Add: got %+v\nwant %+v", e, want)
			}
			if !ValidID(e.ID) {
				t.Errorf("got id %q, want %d hex digits", e.ID, idLen)
			}
			data, err := os.ReadFile(filepath.Join(s.Dir(), e.ID+dataExt))
			if err != nil || !bytes.Equal(data, eicar) {
				t.Errorf("stored content: got %q, %v want %q", data, err, eicar)
			}
			list, err := s.List()
			if err != nil || len(list) != 1 || list[0] != want {
				t.Fatalf("List: got %+v, %v want [%+v]", list, err, want)
			}

			to := tt.to
			if to != "" {
				to = filepath.Join(watch, to)
				mkdir(t, filepath.Dir(to), 0o755)
			}
			got, err := s.Restore(e.ID, to, tt.force)
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			wantAt := filepath.Join(watch, tt.wantAt)
			if got != wantAt {
				t.Errorf("Restore: got path %s want %s", got, wantAt)
			}
			back, err := os.ReadFile(wantAt)
			if err != nil || !bytes.Equal(back, eicar) {
				t.Errorf("restored content: got %q, %v want %q", back, err, eicar)
			}
			var after unix.Stat_t
			if err := unix.Stat(wantAt, &after); err != nil {
				t.Fatal(err)
			}
			if after.Mode != before.Mode || after.Uid != before.Uid || after.Gid != before.Gid {
				t.Errorf("restored: got mode %#o uid %d gid %d want %#o %d %d",
					after.Mode, after.Uid, after.Gid, before.Mode, before.Uid, before.Gid)
			}
			if list, err := s.List(); err != nil || len(list) != 0 {
				t.Errorf("List after Restore: got %+v, %v want none", list, err)
			}
			if names := storeNames(t, s); len(names) != 0 {
				t.Errorf("store after Restore: got files %v want none", names)
			}
		})
	}
}

func storeNames(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestDelete(t *testing.T) {
	s := newStore(t)
	watch := t.TempDir()
	path := filepath.Join(watch, "evil")
	e, err := s.Add(infected(t, path, 0o644), path, info(watch))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"traversal", "../" + e.ID, ErrInvalidID},
		{"entry", e.ID, nil},
		{"again", e.ID, ErrNotFound},
		{"never existed", strings.Repeat("0", idLen), ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Delete(tt.id)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("got %v want %v", err, tt.wantErr)
			}
		})
	}
	if names := storeNames(t, s); len(names) != 0 {
		t.Errorf("store after Delete: got files %v want none", names)
	}
	if exists(path) {
		t.Errorf("Delete brought back %s", path)
	}
}

func TestRestoreRefused(t *testing.T) {
	base := t.TempDir()
	watch := filepath.Join(base, "srv")
	outside := filepath.Join(base, "etc")
	mkdir(t, outside, 0o755)
	path := filepath.Join(watch, "evil")
	s := newStore(t)
	e, err := s.Add(infected(t, path, 0o644), path, info(watch))
	if err != nil {
		t.Fatal(err)
	}
	// A directory in the tree that leads out of it.
	if err := os.Symlink(outside, filepath.Join(watch, "escape")); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(watch, "dir"), 0o755)
	if err := os.WriteFile(filepath.Join(watch, "taken"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "planted"), filepath.Join(watch, "link")); err != nil {
		t.Fatal(err)
	}
	// Files a traversal would reach, if it worked.
	for _, n := range []string{"x.json", "x.data"} {
		if err := os.WriteFile(filepath.Join(filepath.Dir(s.Dir()), n), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name    string
		id, to  string
		force   bool
		wantErr error  // errors.Is
		wantMsg string // or a substring
		created string // must not exist afterwards
	}{
		{name: "parent traversal", id: "../x", wantErr: ErrInvalidID},
		{name: "absolute", id: "/etc/passwd", wantErr: ErrInvalidID},
		{name: "id plus traversal", id: e.ID + "/../../x", wantErr: ErrInvalidID},
		{name: "dot dot", id: "..", wantErr: ErrInvalidID},
		{name: "empty", id: "", wantErr: ErrInvalidID},
		{name: "upper case", id: strings.ToUpper(e.ID), wantErr: ErrInvalidID},
		{name: "short", id: e.ID[1:], wantErr: ErrInvalidID},
		{name: "unknown", id: strings.Repeat("a", idLen), wantErr: ErrNotFound},
		{name: "outside the tree", id: e.ID, to: filepath.Join(outside, "evil"), wantErr: ErrOutsideWatch, created: filepath.Join(outside, "evil")},
		{name: "out through a symlinked dir", id: e.ID, to: filepath.Join(watch, "escape", "evil"), wantErr: ErrSymlink, created: filepath.Join(outside, "evil")},
		{name: "out through a symlinked dir, forced", id: e.ID, to: filepath.Join(watch, "escape", "evil"), force: true, wantErr: ErrSymlink, created: filepath.Join(outside, "evil")},
		{name: "lexically out", id: e.ID, to: watch + "/../etc/evil", wantErr: ErrOutsideWatch, created: filepath.Join(outside, "evil")},
		{name: "sibling with the tree as prefix", id: e.ID, to: watch + "2/evil", wantMsg: "destination directory"},
		{name: "existing file", id: e.ID, to: filepath.Join(watch, "taken"), wantErr: ErrExists},
		{name: "symlink at the destination", id: e.ID, to: filepath.Join(watch, "link"), wantErr: ErrExists, created: filepath.Join(outside, "planted")},
		{name: "symlink at the destination, forced", id: e.ID, to: filepath.Join(watch, "link"), force: true, wantErr: ErrExists, created: filepath.Join(outside, "planted")},
		{name: "relative destination", id: e.ID, to: "evil", wantMsg: "not an absolute path"},
		{name: "a directory", id: e.ID, to: filepath.Join(watch, "dir"), wantErr: ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Restore(tt.id, tt.to, tt.force)
			switch {
			case err == nil:
				t.Fatalf("got %s, nil want an error", got)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("got %v want %v", err, tt.wantErr)
			case tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg):
				t.Fatalf("got %v want one containing %q", err, tt.wantMsg)
			}
			if tt.created != "" && exists(tt.created) {
				t.Errorf("%s was created", tt.created)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(watch, "taken")); string(b) != "mine" {
		t.Errorf("existing file: got %q, %v want it untouched", b, err)
	}
	if _, err := s.Get(e.ID); err != nil {
		t.Errorf("entry after refused restores: %v, want it kept", err)
	}

	// force lets the file out of its tree.
	to := filepath.Join(outside, "evil")
	if got, err := s.Restore(e.ID, to, true); err != nil || got != to {
		t.Fatalf("forced restore: got %s, %v want %s", got, err, to)
	}
	if b, _ := os.ReadFile(to); !bytes.Equal(b, eicar) {
		t.Errorf("forced restore: got %q want %q", b, eicar)
	}
}

// TestRestoreNoSymlink replaces a directory on the original path with a
// symlink after the file was quarantined: restore, even forced, must not
// write through it, with openat2 and with the walk kernels before 5.6 take.
func TestRestoreNoSymlink(t *testing.T) {
	tests := []struct {
		name    string
		replace string // relative to base: the directory swapped for a symlink; "" none
		wantErr error
	}{
		{name: "no symlink", replace: ""},
		{name: "parent", replace: "srv/sub", wantErr: ErrSymlink},
		{name: "grandparent", replace: "srv", wantErr: ErrSymlink},
	}
	for _, fallback := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/fallback=%v", tt.name, fallback), func(t *testing.T) {
				if fallback {
					openat2 = func(int, string, *unix.OpenHow) (int, error) { return -1, unix.ENOSYS }
					t.Cleanup(func() { openat2 = unix.Openat2 })
				}
				base := t.TempDir()
				watch := filepath.Join(base, "srv")
				path := filepath.Join(watch, "sub", "evil")
				s := newStore(t)
				e, err := s.Add(infected(t, path, 0o644), path, info(watch))
				if err != nil {
					t.Fatal(err)
				}
				outside := filepath.Join(base, "etc")
				if tt.replace != "" {
					// The same layout elsewhere, so only the symlink stands in the way.
					mkdir(t, outside, 0o755)
					mkdir(t, filepath.Join(outside, "sub"), 0o755)
					dir := filepath.Join(base, tt.replace)
					if err := os.Rename(dir, dir+".old"); err != nil {
						t.Fatal(err)
					}
					target := outside
					if tt.replace == "srv/sub" {
						target = filepath.Join(outside, "sub")
					}
					if err := os.Symlink(target, dir); err != nil {
						t.Fatal(err)
					}
				}
				got, err := s.Restore(e.ID, "", true)
				if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
					t.Fatalf("got %s, %v want %v", got, err, tt.wantErr)
				}
				if tt.wantErr == nil {
					if b, _ := os.ReadFile(path); got != path || !bytes.Equal(b, eicar) {
						t.Errorf("got %s with %q want %s with %q", got, b, path, eicar)
					}
					return
				}
				if planted := filepath.Join(outside, "sub", "evil"); exists(planted) {
					t.Errorf("%s was created through the symlink", planted)
				}
				if _, err := s.Get(e.ID); err != nil {
					t.Errorf("entry after a refused restore: %v, want it kept", err)
				}
			})
		}
	}
}

func TestAddPathChanged(t *testing.T) {
	replace := func(t *testing.T, path string) {
		other := path + ".new"
		if err := os.WriteFile(other, []byte("innocent"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(other, path); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		// change runs after the open; it returns a path that must still
		// exist afterwards with the content want.
		change    func(t *testing.T, path string) (keep string, want []byte)
		wantState string
	}{
		{"replaced by another file, original linked elsewhere", func(t *testing.T, path string) (string, []byte) {
			if err := os.Link(path, path+".link"); err != nil {
				t.Fatal(err)
			}
			replace(t, path)
			return path, []byte("innocent")
		}, StateKept},
		{"replaced by another file", func(t *testing.T, path string) (string, []byte) {
			// The original has no name left: nothing to remove, and the
			// newcomer stays.
			replace(t, path)
			return path, []byte("innocent")
		}, StateQuarantined},
		{"replaced by a symlink to the same file", func(t *testing.T, path string) (string, []byte) {
			moved := path + ".moved"
			if err := os.Rename(path, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(moved, path); err != nil {
				t.Fatal(err)
			}
			return moved, eicar
		}, StateKept},
		{"directory replaced by a symlink to it", func(t *testing.T, path string) (string, []byte) {
			dir := filepath.Dir(path)
			if err := os.Rename(dir, dir+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(dir+".moved", dir); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir+".moved", filepath.Base(path)), eicar
		}, StateKept},
		{"renamed away", func(t *testing.T, path string) (string, []byte) {
			moved := path + ".moved"
			if err := os.Rename(path, moved); err != nil {
				t.Fatal(err)
			}
			return moved, eicar
		}, StateKept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			watch := t.TempDir()
			path := filepath.Join(watch, "up", "evil")
			f := infected(t, path, 0o644)
			keep, want := tt.change(t, path)

			e, err := s.Add(f, path, info(watch))
			if tt.wantState == StateKept && !errors.Is(err, ErrNotRemoved) || tt.wantState != StateKept && err != nil {
				t.Fatalf("got error %v want %v", err, ErrNotRemoved)
			}
			if b, err := os.ReadFile(keep); err != nil || !bytes.Equal(b, want) {
				t.Errorf("%s: got %q, %v want %q", keep, b, err, want)
			}
			if e.State != tt.wantState || (tt.wantState == StateKept) != (e.Note != "") {
				t.Errorf("got state %q note %q want %q", e.State, e.Note, tt.wantState)
			}
			list, err := s.List()
			if err != nil || len(list) != 1 || list[0].State != tt.wantState || list[0].SHA256 != sum(eicar) {
				t.Errorf("List: got %+v, %v want one %s entry with the content", list, err, tt.wantState)
			}
		})
	}
}

func TestAddUnlinked(t *testing.T) {
	s := newStore(t)
	watch := t.TempDir()
	path := filepath.Join(watch, "evil")
	f := infected(t, path, 0o644)
	os.Remove(path)
	e, err := s.Add(f, path+" (deleted)", info(watch))
	if err != nil || e.State != StateQuarantined || e.Size != int64(len(eicar)) {
		t.Errorf("got %+v, %v want a quarantined entry of %d bytes", e, err, len(eicar))
	}
}

func TestAddHardLinks(t *testing.T) {
	s := newStore(t)
	watch := t.TempDir()
	path := filepath.Join(watch, "evil")
	f := infected(t, path, 0o644)
	if err := os.Link(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	e, err := s.Add(f, path, info(watch))
	if err != nil || e.State != StateQuarantined || e.Nlink != 2 || !strings.Contains(e.Note, "1 other hard link") {
		t.Errorf("got %+v, %v want quarantined, nlink 2, a note", e, err)
	}
	if exists(path) || !exists(path+".2") {
		t.Errorf("got %s %v, %s.2 %v want only the second", path, exists(path), path, exists(path+".2"))
	}
}

func TestInterrupted(t *testing.T) {
	tests := []struct {
		name      string
		step      string
		wantState string
		wantPath  bool // the entry knows the original path
	}{
		{"after the copy", "data", StateOrphan, false},
		{"after the record", "record", StatePending, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			crash := errors.New("crash")
			s.hook = func(step string) error {
				if step == tt.step {
					return crash
				}
				return nil
			}
			watch := t.TempDir()
			path := filepath.Join(watch, "evil")
			if _, err := s.Add(infected(t, path, 0o644), path, info(watch)); !errors.Is(err, crash) {
				t.Fatalf("Add: got %v want %v", err, crash)
			}
			if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, eicar) {
				t.Errorf("original: got %q, %v want it in place", b, err)
			}
			list, err := s.List()
			if err != nil || len(list) != 1 {
				t.Fatalf("List: got %+v, %v want one entry", list, err)
			}
			e := list[0]
			if e.State != tt.wantState || (e.Path == path) != tt.wantPath || e.Size != int64(len(eicar)) {
				t.Errorf("List: got %+v want state %s, path known %v", e, tt.wantState, tt.wantPath)
			}
			if tt.wantPath {
				// The original is still there: restoring must not clobber it.
				if _, err := s.Restore(e.ID, "", false); !errors.Is(err, ErrExists) {
					t.Errorf("Restore: got %v want %v", err, ErrExists)
				}
			}
			if err := s.Delete(e.ID); err != nil {
				t.Errorf("Delete: %v", err)
			}
			if names := storeNames(t, s); len(names) != 0 {
				t.Errorf("store after Delete: got %v want empty", names)
			}
		})
	}
}

func TestPermissions(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	s := newStore(t)
	if got := perm(t, s.Dir()); got != 0o700 {
		t.Errorf("store dir: got %v want 0700", got)
	}
	watch := t.TempDir()
	path := filepath.Join(watch, "evil")
	e, err := s.Add(infected(t, path, 0o777), path, info(watch))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{e.ID + dataExt, e.ID + recordExt} {
		if got := perm(t, filepath.Join(s.Dir(), n)); got != 0o600 {
			t.Errorf("%s: got %v want 0600", n, got)
		}
	}
	if names := storeNames(t, s); len(names) != 2 {
		t.Errorf("store: got %v want the record and the content only", names)
	}
}

func TestCrossFilesystem(t *testing.T) {
	mnt := testutil.MountTmpfs(t)
	s := newStore(t)
	watch := filepath.Join(mnt, "srv")
	path := filepath.Join(watch, "evil")
	f := infected(t, path, 0o640)
	var a, b unix.Stat_t
	if err := unix.Stat(path, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(s.Dir(), &b); err != nil {
		t.Fatal(err)
	}
	if a.Dev == b.Dev {
		t.Fatalf("store and file on one filesystem (dev %d): not a cross-filesystem test", a.Dev)
	}
	e, err := s.Add(f, path, info(watch))
	if err != nil || e.State != StateQuarantined {
		t.Fatalf("Add: got %+v, %v want quarantined", e, err)
	}
	if exists(path) {
		t.Errorf("original still at %s", path)
	}
	if _, err := s.Restore(e.ID, "", false); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, eicar) || perm(t, path) != 0o640 {
		t.Errorf("restored: got %q, %v want the content back with mode 0640", b, err)
	}
}

func TestNonUTF8Path(t *testing.T) {
	s := newStore(t)
	watch := t.TempDir()
	path := filepath.Join(watch, "evil\xff\xfe.exe")
	e, err := s.Add(infected(t, path, 0o644), path, info(watch))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(e.ID)
	if err != nil || got.Path != path || got.PathB64 == "" {
		t.Fatalf("Get: got path %q (b64 %q), %v want %q", got.Path, got.PathB64, err, path)
	}
	if to, err := s.Restore(e.ID, "", false); err != nil || to != path || !exists(path) {
		t.Errorf("Restore: got %q, %v want %q", to, err, path)
	}
}

func TestDamagedRecord(t *testing.T) {
	s := newStore(t)
	id := strings.Repeat("b", idLen)
	if err := os.WriteFile(filepath.Join(s.Dir(), id+recordExt), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].State != StateDamaged || list[0].ID != id {
		t.Fatalf("List: got %+v, %v want one damaged entry", list, err)
	}
	if _, err := s.Restore(id, "/tmp/x", true); err == nil {
		t.Errorf("Restore of a damaged record: got no error")
	}
	if err := s.Delete(id); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

func TestPerm(t *testing.T) {
	tests := []struct {
		text    string
		want    Perm
		wantErr bool
	}{
		{"0644", 0o644, false},
		{"04755", 0o4755, false},
		{"0000", 0, false},
		{"0999", 0, true},
		{"010000", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		var p Perm
		err := p.UnmarshalText([]byte(tt.text))
		if (err != nil) != tt.wantErr || p != tt.want {
			t.Errorf("%q: got %v, %v want %v, error %v", tt.text, p, err, tt.want, tt.wantErr)
		}
		if err == nil && p.String() != tt.text {
			t.Errorf("%q: got %q back", tt.text, p.String())
		}
	}
}

// The store leaves minFreePercent of its filesystem free: a file that
// would take that is refused, and stays where it is.
func TestStoreFull(t *testing.T) {
	mnt := testutil.MountTmpfs(t) // 64 MiB: 3.2 MiB left free
	s, err := Open(filepath.Join(mnt, "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Leaves 4 MiB free.
	if err := os.WriteFile(filepath.Join(mnt, "filler"), make([]byte, 60<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	add := func(name string, size int) (Entry, error) {
		path := filepath.Join(t.TempDir(), name)
		content := append(bytes.Clone(eicar), make([]byte, size-len(eicar))...)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return s.Add(f, path, info(filepath.Dir(path)))
	}

	if e, err := add("big", 1<<20); !errors.Is(err, ErrFull) || e.ID != "" {
		t.Errorf("1 MiB with 4 MiB free: got %+v, %v, want ErrFull and no entry", e, err)
	}
	if es, err := s.List(); err != nil || len(es) != 0 {
		t.Errorf("store after a refused file: %d entries, %v; want none", len(es), err)
	}
	if e, err := add("small", 64<<10); err != nil || e.State != StateQuarantined {
		t.Errorf("64 KiB with 4 MiB free: got %+v, %v, want quarantined", e, err)
	}
}

// A filesystem that reports no size (tmpfs without one) does not bound
// the store.
func TestStoreUnbounded(t *testing.T) {
	dir := testutil.MountTmpfsSized(t, "size=0,nr_inodes=0")
	s, err := Open(filepath.Join(dir, "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := filepath.Join(t.TempDir(), "evil")
	f := infected(t, path, 0o600)
	if e, err := s.Add(f, path, info(filepath.Dir(path))); err != nil || e.State != StateQuarantined {
		t.Errorf("Add: got %+v, %v, want quarantined", e, err)
	}
}

// A file that grew past the room the store had when Add looked is not
// taken: no data is left behind.
func TestCopyInBounded(t *testing.T) {
	s := newStore(t)
	f := infected(t, filepath.Join(t.TempDir(), "evil"), 0o600)
	if _, _, err := s.copyIn("grown", f, int64(len(eicar)-1)); !errors.Is(err, ErrFull) {
		t.Errorf("copy of %d bytes with room for one less: got %v, want ErrFull", len(eicar), err)
	}
	if exists(filepath.Join(s.Dir(), "grown"+dataExt)) {
		t.Error("data of a file not taken left in the store")
	}
	if n, _, err := s.copyIn("fits", f, int64(len(eicar))); err != nil || n != int64(len(eicar)) {
		t.Errorf("copy of %d bytes with room for them: got %d, %v", len(eicar), n, err)
	}
}
