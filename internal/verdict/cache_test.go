package verdict

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/testutil"
)

var base = Key{Dev: 2049, Ino: 1234, Gen: 77, Mtime: 1_700_000_000_000_000_001, Ctime: 1_700_000_000_000_000_002, Size: 4096}

// with returns base changed by change.
func with(change func(*Key)) Key {
	k := base
	change(&k)
	return k
}

func TestCacheLookup(t *testing.T) {
	const v = "db1"
	tests := []struct {
		name    string
		key     Key
		version string
		want    bool
	}{
		{"same key and version", base, v, true},
		{"other dev", with(func(k *Key) { k.Dev++ }), v, false},
		{"other ino", with(func(k *Key) { k.Ino++ }), v, false},
		{"other generation", with(func(k *Key) { k.Gen++ }), v, false},
		{"other mtime", with(func(k *Key) { k.Mtime++ }), v, false},
		{"other ctime", with(func(k *Key) { k.Ctime++ }), v, false},
		{"other size", with(func(k *Key) { k.Size++ }), v, false},
		{"other version", base, "db2", false},
		{"empty version", base, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(100)
			c.Add(base, v, 0)
			if got := c.Clean(tt.key, tt.version, 0); got != tt.want {
				t.Fatalf("got Clean=%v want %v", got, tt.want)
			}
			hits, misses := c.Stats()
			if wantHits := map[bool]uint64{true: 1}[tt.want]; hits != wantHits || hits+misses != 1 {
				t.Fatalf("got hits=%d misses=%d want hits=%d of 1 lookup", hits, misses, wantHits)
			}
			// A miss on the same inode means its verdict is stale: dropped.
			sameInode := tt.key.Dev == base.Dev && tt.key.Ino == base.Ino
			wantLen := 1
			if !tt.want && sameInode {
				wantLen = 0
			}
			if got := c.Len(); got != wantLen {
				t.Fatalf("got Len=%d want %d", got, wantLen)
			}
		})
	}
}

func TestCacheAddReplacesInode(t *testing.T) {
	c := NewCache(10)
	c.Add(base, "v1", 0)
	changed := base
	changed.Mtime++
	c.Add(changed, "v2", 0)
	if got := c.Len(); got != 1 {
		t.Fatalf("got Len=%d want 1 (one verdict per inode)", got)
	}
	if c.Clean(base, "v1", 0) {
		t.Fatal("got the replaced verdict, want a miss")
	}
	c.Add(changed, "v2", 0)
	if !c.Clean(changed, "v2", 0) {
		t.Fatal("got a miss for the new verdict, want a hit")
	}
}

// A verdict whose kernel mark a group placed is not given back to that
// group, which asks only once the mark is gone, and is dropped; another
// group (after a reload) and a lookup for no group get it.
func TestCacheOwner(t *testing.T) {
	tests := []struct {
		name         string
		owner, asker uint64
		want         bool
	}{
		{"no mark, asked by a group", 0, 1, true},
		{"no mark, asked for no group", 0, 0, true},
		{"marked by the asker", 1, 1, false},
		{"marked by a group before", 1, 2, true},
		{"marked, asked for no group", 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(10)
			c.Add(base, "v", tt.owner)
			if got := c.Clean(base, "v", tt.asker); got != tt.want {
				t.Fatalf("got Clean=%v want %v", got, tt.want)
			}
			if wantLen := map[bool]int{true: 1}[tt.want]; c.Len() != wantLen {
				t.Fatalf("got Len=%d want %d", c.Len(), wantLen)
			}
		})
	}
}

func keyN(i int) Key {
	return Key{Dev: 2049, Ino: uint64(i) + 1, Mtime: int64(i), Ctime: int64(i), Size: int64(i)}
}

func TestCacheBound(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		adds     int
		minLen   int // shards fill unevenly until every one is full
		maxLen   int
	}{
		{"under capacity", 100, 50, 50, 50},
		{"at capacity", 100, 100, 90, 100},
		{"far over capacity", 100, 10_000, 100, 100},
		{"one", 1, 10, 1, 1},
		{"not a multiple of shards", 1000, 5000, 1000, 1000},
		{"large", 100_000, 300_000, 100_000, 100_000},
		{"zero holds nothing", 0, 10, 0, 0},
		{"negative holds nothing", -5, 10, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(tt.capacity)
			for i := range tt.adds {
				c.Add(keyN(i), "v", 0)
				if i%997 == 0 && c.Len() > max(tt.capacity, 0) {
					t.Fatalf("got Len=%d after %d adds want <= %d", c.Len(), i+1, tt.capacity)
				}
			}
			if got := c.Len(); got < tt.minLen || got > tt.maxLen {
				t.Fatalf("got Len=%d want %d to %d", got, tt.minLen, tt.maxLen)
			}
			// The newest verdict always survives its own Add.
			if tt.maxLen > 0 && !c.Clean(keyN(tt.adds-1), "v", 0) {
				t.Fatal("got a miss for the last added key, want a hit")
			}
		})
	}
}

func TestCacheClockKeepsReferenced(t *testing.T) {
	c := NewCache(4) // small enough for a single shard
	if len(c.shards) != 1 {
		t.Fatalf("got %d shards want 1", len(c.shards))
	}
	for i := range 4 {
		c.Add(keyN(i), "v", 0)
	}
	if !c.Clean(keyN(0), "v", 0) {
		t.Fatal("got a miss for key 0 want a hit")
	}
	c.Add(keyN(4), "v", 0) // evicts the first unreferenced: key 1
	for i, want := range []bool{true, false, true, true, true} {
		if got := c.Clean(keyN(i), "v", 0); got != want {
			t.Errorf("key %d: got Clean=%v want %v", i, got, want)
		}
	}
}

func TestCacheForget(t *testing.T) {
	c := NewCache(10)
	c.Add(base, "v", 0)
	other := keyN(7)
	c.Add(other, "v", 0)
	changed := base
	changed.Mtime, changed.Size = base.Mtime+5, base.Size+5
	c.Forget(changed) // by inode: the old state goes too
	if c.Clean(base, "v", 0) {
		t.Fatal("got a hit after Forget want a miss")
	}
	if !c.Clean(other, "v", 0) {
		t.Fatal("got a miss for another inode after Forget want a hit")
	}
	c.Forget(keyN(99)) // unknown: no effect
	if got := c.Len(); got != 1 {
		t.Fatalf("got Len=%d want 1", got)
	}
}

func TestCacheReset(t *testing.T) {
	c := NewCache(1000)
	for i := range 500 {
		c.Add(keyN(i), "v", 0)
	}
	c.Clean(keyN(1), "v", 0)
	c.Reset()
	if got := c.Len(); got != 0 {
		t.Fatalf("got Len=%d after Reset want 0", got)
	}
	if c.Clean(keyN(1), "v", 0) {
		t.Fatal("got a hit after Reset want a miss")
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 1 {
		t.Fatalf("got hits=%d misses=%d want 1 and 1 (Reset keeps counters)", hits, misses)
	}
	for i := range 2000 {
		c.Add(keyN(i), "v", 0)
	}
	if got := c.Len(); got != 1000 {
		t.Fatalf("got Len=%d after refill want 1000", got)
	}
}

// A verdict on a file without a generation, changed within the last
// clock ticks, is not kept: another file could take its key (see Key).
func TestCacheRecentChange(t *testing.T) {
	now := time.Now().UnixNano()
	tests := []struct {
		name string
		key  Key
		want bool
	}{
		{"no generation, changed just now", Key{Dev: 1, Ino: 2, Ctime: now, Mtime: now}, false},
		{"no generation, changed in the future", Key{Dev: 1, Ino: 2, Ctime: now + int64(time.Second)}, false},
		{"no generation, changed a second ago", Key{Dev: 1, Ino: 2, Ctime: now - int64(time.Second)}, true},
		{"a generation, changed just now", Key{Dev: 1, Ino: 2, Gen: 9, Ctime: now, Mtime: now}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(100)
			c.Add(tt.key, "v", 0)
			if got := c.Clean(tt.key, "v", 0); got != tt.want {
				t.Errorf("Clean after Add: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestKeyOf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	stx := statx(t, fd)
	k := KeyOf(fd, &stx)
	// The key holds what fstat(2) tells, device number included.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	want := Key{Dev: uint64(st.Dev), Ino: st.Ino, Gen: k.Gen, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Size: 5}
	if k != want {
		t.Fatalf("got %+v want %+v", k, want)
	}
	if k.Mtime < 1e18 {
		t.Fatalf("got mtime %d want unix nanoseconds", k.Mtime)
	}
	if !k.Unchanged(&stx) {
		t.Error("Unchanged: got false for the same statx")
	}
	if err := os.Chmod(p, 0o600); err != nil { // changes ctime only
		t.Fatal(err)
	}
	stx = statx(t, fd)
	if KeyOf(fd, &stx) == k {
		t.Fatal("got the same key after chmod want a new ctime")
	}
	if k.Unchanged(&stx) {
		t.Error("Unchanged: got true after chmod, want false (a new ctime)")
	}
}

// A file deleted and another made at once on ext4 often has the old
// one's inode number, and before 6.13 its times when both fall in one
// clock tick: the keys still differ, by generation.
func TestKeyOfReusedInode(t *testing.T) {
	p := filepath.Join(testutil.MountExt4(t), "f")
	key := func() Key {
		t.Helper()
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st := statx(t, int(f.Fd()))
		return KeyOf(int(f.Fd()), &st)
	}
	if err := os.WriteFile(p, []byte("clean"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := key()
	for range 5 {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("virus"), 0o644); err != nil {
			t.Fatal(err)
		}
		k := key()
		if k.Ino != old.Ino {
			continue
		}
		k.Mtime, k.Ctime = old.Mtime, old.Ctime // as in one clock tick
		if k == old {
			t.Fatalf("a new file with the old one's inode number and times has its key %+v", k)
		}
		return
	}
	t.Skip("ext4 did not give the inode number back in 5 tries: nothing to tell apart")
}

func TestCacheConcurrent(t *testing.T) {
	const (
		capacity = 256
		workers  = 8
		rounds   = 5000
	)
	c := NewCache(capacity)
	var wg sync.WaitGroup
	var lookups [workers]uint64
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				k := keyN((i*7 + w*13) % 1000)
				switch i % 4 {
				case 0, 1:
					c.Add(k, "v", 0)
				case 2:
					c.Clean(k, "v", 0)
					lookups[w]++
				case 3:
					if i%40 == 3 {
						c.Forget(k)
					} else {
						c.Clean(k, "v2", 0)
						lookups[w]++
					}
				}
				if i%500 == 0 {
					if n := c.Len(); n > capacity {
						t.Errorf("got Len=%d want <= %d", n, capacity)
					}
				}
			}
		})
	}
	wg.Wait()
	var want uint64
	for _, n := range lookups {
		want += n
	}
	hits, misses := c.Stats()
	if hits+misses != want {
		t.Fatalf("got %d hits + %d misses want %d lookups", hits, misses, want)
	}
	if n := c.Len(); n > capacity {
		t.Fatalf("got Len=%d want <= %d", n, capacity)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	const n = 10_000
	c := NewCache(2 * n) // room to spare: shards fill unevenly
	for i := range n {
		c.Add(keyN(i), "0123456789abcdef0123456789abcdef", 0)
	}
	version := "0123456789abcdef0123456789abcdef"
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if !c.Clean(keyN(i%n), version, 0) {
				b.Error("got a miss want a hit")
				return
			}
			i += 7
		}
	})
}

func statx(t *testing.T, fd int) unix.Statx_t {
	t.Helper()
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, StatxMask, &st); err != nil {
		t.Fatalf("statx: %v", err)
	}
	return st
}
