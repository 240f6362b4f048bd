package quarantine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Store files: <id>.data holds the content, <id>.json the record, and
// tmp-<id>.json a record being written.
const (
	dataExt   = ".data"
	recordExt = ".json"
	tmpPrefix = "tmp-"
)

// minFreePercent is the share of its filesystem's space, and of its
// inodes, that the store leaves free: a flood of large infected files
// must not fill the filesystem the system runs on (the default store is
// under /var).
const minFreePercent = 5

// ErrFull means the store's filesystem has no room for a file above what
// the store leaves free (minFreePercent).
var ErrFull = errors.New("quarantine store full")

// Store is a quarantine directory. Every operation works relative to the
// directory's fd, opened once without following symlinks, so the path
// cannot be swapped under it. A Store is safe for concurrent use.
type Store struct {
	dir string
	d   *os.File

	// hook, when set by tests, runs after each step of Add ("data",
	// "record", "unlink"); an error stops Add there, as a crash would.
	hook func(step string) error
}

// Open opens the store at dir, creating it (0700, with missing parents
// 0755) when it does not exist. It refuses a dir that is a symlink, not a
// directory, not owned by root (or by the calling user, for a store of
// one's own), or open to group or others.
func Open(dir string) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("open quarantine %s: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, fmt.Errorf("create quarantine %s: %w", dir, err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("create quarantine %s: %w", dir, err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("open quarantine %s: a symlink or not a directory", dir)
		}
		return nil, fmt.Errorf("open quarantine %s: %w", dir, err)
	}
	d := os.NewFile(uintptr(fd), dir)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.Close()
		return nil, fmt.Errorf("stat quarantine %s: %w", dir, err)
	}
	if err := checkDir(&st); err != nil {
		d.Close()
		return nil, fmt.Errorf("open quarantine %s: %w", dir, err)
	}
	return &Store{dir: dir, d: d}, nil
}

func checkDir(st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errors.New("not a directory")
	}
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, want root", st.Uid)
	}
	if st.Mode&0o077 != 0 {
		return fmt.Errorf("mode %#o lets group or others in, want 0700", st.Mode&0o7777)
	}
	return nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Removed reports whether the store's directory was removed since Open:
// nothing can be added to it any more.
func (s *Store) Removed() bool {
	var st unix.Stat_t
	return unix.Fstat(s.fd(), &st) == nil && st.Nlink == 0
}

// Close releases the store's directory.
func (s *Store) Close() error { return s.d.Close() }

func (s *Store) fd() int { return int(s.d.Fd()) }

func newID() (string, error) {
	var b [idLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func (s *Store) step(name string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(name)
}

// Add quarantines the file open as f (read through f with ReadAt, so its
// offset does not matter) whose path at open time was path, and returns
// its entry. The steps, each durable before the next:
//
//  1. copy f's content into <id>.data (fsync);
//  2. write the record <id>.json, state "pending" (temp file, fsync,
//     rename, fsync of the store directory);
//  3. unlink path, only if it still names f's inode (dev and inode of the
//     name itself, never following a symlink; its directory is reached
//     without following symlinks either), then fsync path's directory;
//  4. rewrite the record with the outcome ("quarantined" or "kept").
//
// A crash leaves the original alone before step 3, and both the original
// and a complete copy with its record ("pending") during it: never
// neither. Copying rather than renaming is what makes a store on another
// filesystem work, and it never moves a name that may have changed.
//
// When path no longer names f (replaced by another file or a symlink,
// renamed, deleted), Add removes nothing and returns the entry, state
// "kept", with an error wrapping ErrNotRemoved. A file with other hard
// links loses only this name (Entry.Nlink tells).
func (s *Store) Add(f *os.File, path string, info Info) (Entry, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Entry{}, fmt.Errorf("quarantine %s: stat: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Entry{}, fmt.Errorf("quarantine %s: not a regular file", path)
	}
	id, err := newID()
	if err != nil {
		return Entry{}, fmt.Errorf("quarantine %s: %w", path, err)
	}
	e := Entry{
		ID:        id,
		State:     StatePending,
		Watch:     info.Watch,
		Signature: info.Signature,
		Time:      info.Time,
		PID:       info.PID,
		UID:       info.UID,
		Exe:       info.Exe,
		OwnerUID:  st.Uid,
		OwnerGID:  st.Gid,
		Mode:      Perm(st.Mode & 0o7777),
		Dev:       uint64(st.Dev),
		Ino:       uint64(st.Ino),
		Nlink:     uint64(st.Nlink),
	}
	e.setPath(path)
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()

	room, err := s.room()
	if err != nil {
		return Entry{}, fmt.Errorf("quarantine %s: %w", path, err)
	}
	if st.Size > room {
		return Entry{}, fmt.Errorf("quarantine %s: %w: the file has %d bytes, %d can be taken with %d%% of the filesystem left free",
			path, ErrFull, st.Size, room, minFreePercent)
	}
	size, sum, err := s.copyIn(id, f, room)
	if err != nil {
		return Entry{}, fmt.Errorf("quarantine %s: %w", path, err)
	}
	e.Size, e.SHA256 = size, sum
	if err := s.step("data"); err != nil {
		return e, fmt.Errorf("quarantine %s: %w", path, err)
	}
	if err := s.writeRecord(e); err != nil {
		s.unlink(id + dataExt)
		return Entry{}, fmt.Errorf("quarantine %s: %w", path, err)
	}
	if err := s.step("record"); err != nil {
		return e, fmt.Errorf("quarantine %s: %w", path, err)
	}

	removeErr := removeOriginal(path, &st)
	if removeErr == nil {
		e.State = StateQuarantined
		if st.Nlink > 1 {
			e.Note = fmt.Sprintf("%d other hard links remain", st.Nlink-1)
		}
	} else {
		e.State, e.Note = StateKept, removeErr.Error()
	}
	if err := s.step("unlink"); err != nil {
		return e, fmt.Errorf("quarantine %s: %w", path, err)
	}
	if err := s.writeRecord(e); err != nil {
		// The old record ("pending") stays: still true enough, and the
		// content is safe.
		return e, fmt.Errorf("quarantine %s: %w", path, err)
	}
	if removeErr != nil {
		return e, fmt.Errorf("quarantine %s: %w: %v", path, ErrNotRemoved, removeErr)
	}
	return e, nil
}

// room returns how many bytes the store may take now, leaving
// minFreePercent of its filesystem free; 0 when an entry's two inodes
// would take the inodes left free. A filesystem that reports no size
// (tmpfs without one) has no bound.
func (s *Store) room() (int64, error) {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(s.fd(), &fs); err != nil {
		return 0, fmt.Errorf("statfs: %w", err)
	}
	if fs.Files > 0 && fs.Ffree < 2+fs.Files*minFreePercent/100 {
		return 0, nil
	}
	if fs.Blocks == 0 {
		return math.MaxInt64, nil
	}
	bsize := fs.Frsize
	if bsize == 0 {
		bsize = fs.Bsize
	}
	free, keep := int64(fs.Bavail)*bsize, int64(fs.Blocks)*bsize*minFreePercent/100
	return max(free-keep, 0), nil
}

// copyIn copies f into <id>.data, fsynced, and returns the bytes copied
// and their SHA-256. It copies limit bytes at most: a file that grew
// beyond that meanwhile is not taken (ErrFull).
func (s *Store) copyIn(id string, f *os.File, limit int64) (int64, string, error) {
	name := id + dataExt
	fd, err := unix.Openat(s.fd(), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, "", fmt.Errorf("create %s: %w", filepath.Join(s.dir, name), err)
	}
	out := os.NewFile(uintptr(fd), name)
	h := sha256.New()
	// The size may change under us: copy what is there, and record it.
	n, err := io.Copy(io.MultiWriter(out, h), io.NewSectionReader(f, 0, min(limit, math.MaxInt64-1)+1))
	if err == nil && n > limit {
		err = fmt.Errorf("%w: the file grew past the %d bytes that can be taken", ErrFull, limit)
	}
	if err == nil {
		err = unix.Fchmod(fd, 0o600) // whatever the umask
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.unlink(name)
		return 0, "", fmt.Errorf("copy into %s: %w", name, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// writeRecord replaces <id>.json atomically and durably.
func (s *Store) writeRecord(e Entry) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	b = append(b, '\n')
	tmp := tmpPrefix + e.ID + recordExt
	fd, err := unix.Openat(s.fd(), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create record %s: %w", filepath.Join(s.dir, tmp), err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(b)
	if err == nil {
		err = unix.Fchmod(fd, 0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(s.fd(), tmp, s.fd(), e.ID+recordExt)
	}
	if err == nil {
		err = s.d.Sync()
	}
	if err != nil {
		s.unlink(tmp)
		return fmt.Errorf("write record %s: %w", e.ID, err)
	}
	return nil
}

func (s *Store) unlink(name string) error {
	return unix.Unlinkat(s.fd(), name, 0)
}

// openDir opens an absolute directory path without following a symbolic
// link anywhere on it: one there is ErrSymlink. Paths from /proc/self/fd
// have none, so a symlink found now means the tree changed since.
func openDir(dir string) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := openat2(unix.AT_FDCWD, dir, &how)
	if errors.Is(err, unix.ENOSYS) {
		fd, err = walkDir(dir) // before 5.6
	}
	if errors.Is(err, unix.ELOOP) {
		err = ErrSymlink
	}
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// openat2 is unix.Openat2; tests replace it to take the fallback.
var openat2 = unix.Openat2

// walkDir opens an absolute directory path one component at a time, each
// with O_NOFOLLOW: a symlink on the way is ELOOP, as with openat2's
// RESOLVE_NO_SYMLINKS.
func walkDir(dir string) (int, error) {
	if !filepath.IsAbs(dir) {
		return -1, unix.EINVAL
	}
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(filepath.Clean(dir), "/") {
		if c == "" {
			continue
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) {
			// O_DIRECTORY answers first: say what openat2 would.
			var st unix.Stat_t
			if unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// removeOriginal unlinks path if it still names the inode st describes,
// and fsyncs its directory.
func removeOriginal(path string, st *unix.Stat_t) error {
	if st.Nlink == 0 {
		return nil // already unlinked: no name to remove
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("path %q is not absolute", path)
	}
	parent, name := filepath.Split(filepath.Clean(path))
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("path %q names no file", path)
	}
	d, err := openDir(parent)
	if err != nil {
		return err
	}
	defer d.Close()
	dfd := int(d.Fd())
	var now unix.Stat_t
	if err := unix.Fstatat(dfd, name, &now, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if now.Dev != st.Dev || now.Ino != st.Ino {
		return fmt.Errorf("%s now names another file", path)
	}
	if err := unix.Unlinkat(dfd, name, 0); err != nil {
		return fmt.Errorf("unlink %s: %w", path, err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", parent, err)
	}
	return nil
}

// readRecord reads <id>.json.
func (s *Store) readRecord(id string) (Entry, error) {
	fd, err := unix.Openat(s.fd(), id+recordExt, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return Entry{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("open record %s: %w", id, err)
	}
	f := os.NewFile(uintptr(fd), id+recordExt)
	defer f.Close()
	var e Entry
	if err := json.NewDecoder(f).Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("read record %s: %w", id, err)
	}
	if e.ID != id {
		return Entry{}, fmt.Errorf("read record %s: it names id %q", id, e.ID)
	}
	if err := e.fixPath(); err != nil {
		return Entry{}, fmt.Errorf("read record %s: %w", id, err)
	}
	return e, nil
}

// List returns every entry, oldest first, including those an interrupted
// Add left: StatePending (record, original maybe in place) and
// StateOrphan (content only), and unreadable records as StateDamaged.
func (s *Store) List() ([]Entry, error) {
	fd, err := unix.Openat(s.fd(), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list quarantine %s: %w", s.dir, err)
	}
	d := os.NewFile(uintptr(fd), s.dir)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("list quarantine %s: %w", s.dir, err)
	}
	records, data := map[string]bool{}, map[string]bool{}
	for _, n := range names {
		if id, ok := strings.CutSuffix(n, recordExt); ok && ValidID(id) {
			records[id] = true
		} else if id, ok := strings.CutSuffix(n, dataExt); ok && ValidID(id) {
			data[id] = true
		}
	}
	var entries []Entry
	for id := range records {
		e, err := s.readRecord(id)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // restored or deleted meanwhile
		case err != nil:
			e = Entry{ID: id, State: StateDamaged, Note: err.Error()}
		}
		entries = append(entries, e)
	}
	for id := range data {
		if records[id] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(s.fd(), id+dataExt, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		entries = append(entries, Entry{
			ID: id, State: StateOrphan, Size: st.Size,
			Time: time.Unix(st.Mtim.Unix()).UTC(),
			Note: "content without a record: an add was interrupted before its record, the original was left in place",
		})
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		return a.ID < b.ID
	})
	return entries, nil
}

// Get returns the entry with the given id.
func (s *Store) Get(id string) (Entry, error) {
	if !ValidID(id) {
		return Entry{}, fmt.Errorf("%q: %w", id, ErrInvalidID)
	}
	return s.readRecord(id)
}

// Restore writes entry id's content back to `to` (its original path when
// empty) with its owner and mode, durably, then removes the entry, and
// returns the path written. It refuses an id that is not a store id, a
// symbolic link anywhere on the destination path (ErrSymlink, even with
// force), a destination outside the watch that quarantined the file
// unless force, any existing file at the destination (it never
// overwrites), and content whose SHA-256 no longer matches the record.
func (s *Store) Restore(id, to string, force bool) (string, error) {
	e, err := s.Get(id)
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	dest := to
	if dest == "" {
		dest = e.Path
	}
	if !filepath.IsAbs(dest) {
		return "", fmt.Errorf("restore %s: destination %q is not an absolute path", id, dest)
	}
	dest = filepath.Clean(dest)
	parent, name := filepath.Split(dest)
	if name == "" || name == "." || name == ".." {
		return "", fmt.Errorf("restore %s: destination %q names no file", id, dest)
	}
	parent = filepath.Clean(parent)
	// With no symlink on parent, the directory opened is the one the
	// watch check below sees, and the file is created in it by name.
	d, err := openDir(parent)
	if err != nil {
		return "", fmt.Errorf("restore %s: destination directory: %w", id, err)
	}
	defer d.Close()
	if !force {
		if err := inTree(e.Watch, parent); err != nil {
			return "", fmt.Errorf("restore %s to %s: %w", id, dest, err)
		}
	}
	if err := s.copyOut(e, d, name); err != nil {
		return "", fmt.Errorf("restore %s to %s: %w", id, dest, err)
	}
	if err := s.remove(id); err != nil {
		return dest, fmt.Errorf("restore %s: restored to %s, but %w", id, dest, err)
	}
	return dest, nil
}

// inTree checks that dir lies in the watch tree root, both resolved.
func inTree(root, dir string) error {
	if root == "" || !filepath.IsAbs(root) {
		return fmt.Errorf("%w: the record names no watch", ErrOutsideWatch)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("%w: watch %s: %v", ErrOutsideWatch, root, err)
	}
	if realRoot == "/" || dir == realRoot || strings.HasPrefix(dir, realRoot+"/") {
		return nil
	}
	return fmt.Errorf("%w %s", ErrOutsideWatch, root)
}

// copyOut creates name in d (never following or replacing anything),
// copies e's content into it, sets owner and mode and syncs both.
func (s *Store) copyOut(e Entry, d *os.File, name string) error {
	sfd, err := unix.Openat(s.fd(), e.ID+dataExt, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open content: %w", err)
	}
	src := os.NewFile(uintptr(sfd), e.ID+dataExt)
	defer src.Close()

	dfd := int(d.Fd())
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EEXIST) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	out := os.NewFile(uintptr(fd), name)
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), src)
	if err == nil && e.SHA256 != "" && hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		err = errors.New("content does not match the record's sha256")
	}
	// Owner first: chown clears the setuid and setgid bits.
	if err == nil {
		err = unix.Fchown(fd, int(e.OwnerUID), int(e.OwnerGID))
	}
	if err == nil {
		err = unix.Fchmod(fd, uint32(e.Mode))
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(dfd, name, 0) // we created it: no half file left
		return err
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// Delete removes entry id from the store, whatever its state.
func (s *Store) Delete(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("delete %q: %w", id, ErrInvalidID)
	}
	if err := s.remove(id); err != nil {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

// remove unlinks an entry's files, the record first: a crash in between
// leaves an orphan that List shows, not a record without content.
func (s *Store) remove(id string) error {
	found := false
	for _, n := range []string{id + recordExt, id + dataExt, tmpPrefix + id + recordExt} {
		switch err := s.unlink(n); {
		case err == nil:
			found = true
		case !errors.Is(err, unix.ENOENT):
			return fmt.Errorf("remove %s: %w", n, err)
		}
	}
	if !found {
		return ErrNotFound
	}
	if err := s.d.Sync(); err != nil {
		return fmt.Errorf("sync quarantine %s: %w", s.dir, err)
	}
	return nil
}
