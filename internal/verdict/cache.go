package verdict

import (
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// Key identifies one state of one file: any write changes Mtime or Ctime
// (and a chmod or rename changes Ctime), so a changed file has a new Key.
//
// Another file may have the same Dev, Ino, times and size: ext4 and xfs
// give a deleted file's inode number to the next one made, and kernels
// before 6.13 stamp times at the clock's tick (4 ms), so a clean file
// swapped at once for an infected one of its size, moved in from outside
// the watches, would take its verdict. Gen, the inode's generation, which
// these filesystems draw anew for each file, tells the two apart; where
// there is none (overlayfs, over such a filesystem), Add keeps no verdict
// taken so soon after a change.
type Key struct {
	Dev, Ino     uint64
	Gen          uint32 // 0 where the filesystem tells none (tmpfs, which does not reuse numbers at once)
	Mtime, Ctime int64  // unix ns
	Size         int64
}

// fsIocGetVersion is FS_IOC_GETVERSION, _IOR('v', 1, long), which x/sys
// does not define.
const fsIocGetVersion = 0x80007601 | uint(unsafe.Sizeof(uintptr(0)))<<16

// KeyOf is the Key of the file open at fd, whose statx is st: st must
// hold the fields of StatxMask.
func KeyOf(fd int, st *unix.Statx_t) Key {
	k := stateOf(st)
	// Regular files only: a device's driver would take the ioctl for one
	// of its own.
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		if gen, err := unix.IoctlGetUint32(fd, fsIocGetVersion); err == nil {
			k.Gen = gen
		}
	}
	return k
}

// StatxMask is what a statx must ask for to make a Key.
const StatxMask = unix.STATX_TYPE | unix.STATX_INO | unix.STATX_MTIME | unix.STATX_CTIME | unix.STATX_SIZE

// Unchanged reports whether st, a later statx of the descriptor k was
// taken from, shows the same state. The inode open is the same one, and
// so is its generation, which is not asked for again.
func (k Key) Unchanged(st *unix.Statx_t) bool {
	now := stateOf(st)
	now.Gen = k.Gen
	return now == k
}

// DevOf is the device number of st, as stat(2) gives it.
func DevOf(st *unix.Statx_t) uint64 { return unix.Mkdev(st.Dev_major, st.Dev_minor) }

// stateOf is the Key of st but for the generation.
func stateOf(st *unix.Statx_t) Key {
	return Key{
		Dev:   DevOf(st),
		Ino:   st.Ino,
		Mtime: nanos(st.Mtime),
		Ctime: nanos(st.Ctime),
		Size:  int64(st.Size),
	}
}

func nanos(t unix.StatxTimestamp) int64 { return t.Sec*1e9 + int64(t.Nsec) }

// inode is the part of a Key that names the file rather than its state:
// the cache holds at most one verdict per inode.
type inode struct{ dev, ino uint64 }

type slot struct {
	key     Key
	version string
	owner   uint64 // whose kernel mark stands for the verdict; 0: none
	ref     bool   // CLOCK's second-chance bit
}

type shard struct {
	mu     sync.Mutex
	index  map[inode]int32 // into slots
	slots  []slot
	cap    int
	hand   int
	hits   uint64
	misses uint64
	_      cpu.CacheLinePad // shards are hit from every worker: no false sharing
}

// Cache is a bounded set of clean verdicts keyed by (Key, database
// version), safe for concurrent use. It is sharded by inode, each shard
// with its own lock and CLOCK eviction, so that workers seldom contend.
type Cache struct {
	shards []shard
	mask   uint64
}

const maxShards = 64

// NewCache returns a cache of at most capacity verdicts; a capacity below 1
// gives a cache that holds nothing.
func NewCache(capacity int) *Cache {
	capacity = max(capacity, 0)
	n := maxShards
	// Small caches get fewer shards so that each holds a useful number.
	for n > 1 && capacity/n < 16 {
		n /= 2
	}
	c := &Cache{shards: make([]shard, n), mask: uint64(n - 1)}
	for i := range c.shards {
		s := &c.shards[i]
		s.cap = capacity / n
		if i < capacity%n {
			s.cap++
		}
		s.index = make(map[inode]int32)
	}
	return c
}

func (c *Cache) shard(k Key) *shard {
	// Inode numbers are often sequential: mix them before masking.
	h := (k.Ino ^ k.Dev*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	return &c.shards[(h>>32)&c.mask]
}

// Clean reports whether k was found clean under version, to owner (see
// Add). A stale verdict for k's inode (older state or other version) is
// dropped, and so is one whose kernel mark owner placed itself: owner
// asks because that mark is gone, which a modification does, and a write
// that stamped the file's times before the scan and copied its data
// after it leaves k as it was.
func (c *Cache) Clean(k Key, version string, owner uint64) bool {
	s := c.shard(k)
	id := inode{k.Dev, k.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[id]
	if !ok {
		s.misses++
		return false
	}
	sl := &s.slots[i]
	if sl.key != k || sl.version != version || owner != 0 && sl.owner == owner {
		s.remove(id, i)
		s.misses++
		return false
	}
	sl.ref = true
	s.hits++
	return true
}

// recentChange is how near a file's last change its verdict may be
// taken and not kept, when its key has no generation: two ticks of the
// clock that stamps times before Linux 6.13, at its slowest (HZ=100).
// Another file with the same key must have been changed last in the same
// tick as the one scanned, after that one was scanned and deleted (see
// Key): so the scan too fell within a tick of the change.
const recentChange = 20 * time.Millisecond

// Add records that k was found clean under version, replacing whatever
// was known of k's inode. owner, when not 0, names the fanotify group
// (its permission loop) that holds a kernel ignore mark for the verdict:
// while that mark stands, owner's events for the file never come, so
// the verdict serves the groups after it (a reload) and not owner. It
// records nothing of a file without a generation changed within
// recentChange: the kernel's ignore mark, on the inode itself, still
// spares its unchanged re-opens the round trip.
func (c *Cache) Add(k Key, version string, owner uint64) {
	if k.Gen == 0 && time.Now().UnixNano()-k.Ctime < int64(recentChange) {
		return
	}
	s := c.shard(k)
	id := inode{k.Dev, k.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cap == 0 {
		return
	}
	if i, ok := s.index[id]; ok {
		s.slots[i] = slot{key: k, version: version, owner: owner, ref: true}
		return
	}
	if len(s.slots) < s.cap {
		s.index[id] = int32(len(s.slots))
		s.slots = append(s.slots, slot{key: k, version: version, owner: owner})
		return
	}
	// CLOCK: sweep, clearing reference bits, to the first slot not used
	// since the last sweep. New entries start unreferenced so that a burst
	// of one-off files does not push out the ones opened again and again.
	for {
		if s.hand >= len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[s.hand]
		if !sl.ref {
			break
		}
		sl.ref = false
		s.hand++
	}
	old := s.slots[s.hand]
	delete(s.index, inode{old.key.Dev, old.key.Ino})
	s.slots[s.hand] = slot{key: k, version: version, owner: owner}
	s.index[id] = int32(s.hand)
	s.hand++
}

// Forget drops the verdict held for k's inode (Dev, Ino), whatever state
// or version it was for.
func (c *Cache) Forget(k Key) {
	s := c.shard(k)
	id := inode{k.Dev, k.Ino}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[id]; ok {
		s.remove(id, i)
	}
}

// remove deletes slot i by moving the last slot into its place.
func (s *shard) remove(id inode, i int32) {
	delete(s.index, id)
	last := int32(len(s.slots) - 1)
	if i != last {
		moved := s.slots[last]
		s.slots[i] = moved
		s.index[inode{moved.key.Dev, moved.key.Ino}] = i
	}
	s.slots[last] = slot{} // drop the version string reference
	s.slots = s.slots[:last]
}

// Len is the number of verdicts held.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.slots)
		s.mu.Unlock()
	}
	return n
}

// Stats returns the lookups answered and not answered by Clean since the
// cache was made; Reset does not clear them, so they suit counters.
func (c *Cache) Stats() (hits, misses uint64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		hits += s.hits
		misses += s.misses
		s.mu.Unlock()
	}
	return hits, misses
}

// Reset drops every verdict.
func (c *Cache) Reset() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.index)
		clear(s.slots)
		s.slots = s.slots[:0]
		s.hand = 0
		s.mu.Unlock()
	}
}
