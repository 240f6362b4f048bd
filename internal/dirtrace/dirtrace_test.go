package dirtrace

import (
	"encoding/binary"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/watch"
)

func TestLadder(t *testing.T) {
	want := []Hook{HookFentry, HookKprobe, HookTracepoint, HookNone}
	if !slices.Equal(Ladder, want) {
		t.Errorf("Ladder = %v, want %v", Ladder, want)
	}
	for _, h := range Ladder[:len(Ladder)-1] {
		if len(rungPrograms[h]) == 0 {
			t.Errorf("rung %s has no programs", h)
		}
	}
}

func TestPruneSpec(t *testing.T) {
	tests := []struct {
		hook     Hook
		wantType ebpf.ProgramType
	}{
		{HookFentry, ebpf.Tracing},
		{HookKprobe, ebpf.Kprobe},
		{HookTracepoint, ebpf.TracePoint},
	}
	for _, tt := range tests {
		t.Run(string(tt.hook), func(t *testing.T) {
			spec, err := loadDirwatch()
			if err != nil {
				t.Fatal(err)
			}
			pruneSpec(spec, tt.hook)
			got := slices.Sorted(maps.Keys(spec.Programs))
			want := slices.Sorted(slices.Values(rungPrograms[tt.hook]))
			if !slices.Equal(got, want) {
				t.Errorf("programs after pruning = %v, want %v", got, want)
			}
			for name, p := range spec.Programs {
				if p.Type != tt.wantType {
					t.Errorf("program %s: got type %s, want %s", name, p.Type, tt.wantType)
				}
			}
			for _, m := range []string{dirwatchMapWatched, dirwatchMapEvents, dirwatchMapLost} {
				if spec.Maps[m] == nil {
					t.Errorf("map %s pruned, want it kept", m)
				}
			}
			// Each rung keeps only its own stash.
			wantPending := tt.hook != HookTracepoint
			if got := spec.Maps[dirwatchMapPending] != nil; got != wantPending {
				t.Errorf("pending map kept = %v, want %v", got, wantPending)
			}
			if got := spec.Maps[dirwatchMapSysPending] != nil; got == wantPending {
				t.Errorf("sys_pending map kept = %v, want %v", got, !wantPending)
			}
		})
	}
}

func TestKernelDev(t *testing.T) {
	tests := []struct {
		name string
		dev  uint64 // st_dev as the kernel encodes it for stat
		want uint32
	}{
		{"8:1", unix.Mkdev(8, 1), 8<<20 | 1},
		{"0:42", unix.Mkdev(0, 42), 42},
		{"259:3", unix.Mkdev(259, 3), 259<<20 | 3},
		{"large minor 8:300", unix.Mkdev(8, 300), 8<<20 | 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kernelDev(tt.dev); got != tt.want {
				t.Errorf("kernelDev(%#x) = %#x, want %#x", tt.dev, got, tt.want)
			}
		})
	}
}

// record builds a ring-buffer record as the programs write it. The chains
// are given as paths relative to the covering directory ("a/b").
func record(t *testing.T, e dirwatchDwEvent, name, chain, newName, newChain string) []byte {
	t.Helper()
	cstr := func(s string) []byte {
		if s == "" {
			return nil
		}
		return append([]byte(s), 0)
	}
	chainOf := func(rel string) []byte {
		var b []byte
		if rel == "" {
			return nil
		}
		names := strings.Split(rel, "/")
		for i := len(names) - 1; i >= 0; i-- {
			b = append(b, cstr(names[i])...)
		}
		return b
	}
	parts := [][]byte{cstr(name), chainOf(chain), cstr(newName), chainOf(newChain)}
	e.NameLen, e.ChainLen, e.NewNameLen, e.NewChainLen = uint32(len(parts[0])), uint32(len(parts[1])), uint32(len(parts[2])), uint32(len(parts[3]))
	b, err := binary.Append(nil, binary.NativeEndian, &e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestParseRecord(t *testing.T) {
	b := record(t, dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Pid: 7, Dev: 3, Ino: 11}, "old", "a/b", "new", "c")
	e, err := parseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Op != dirwatchDwOpDW_OP_RENAME || e.Pid != 7 || e.Ino != 11 || e.name != "old" || e.newName != "new" ||
		e.chain != "b\x00a\x00" || e.newChain != "c\x00" {
		t.Errorf("got %+v, want rename pid 7 ino 11 old (chain b, a) -> new (chain c)", e)
	}
	if _, err := parseRecord(b[:len(b)-2]); err == nil {
		t.Error("truncated record: got no error, want one")
	}
}

// fakeTracer tracks dirs without BPF maps: key i+1 on dev 1 for dirs[i],
// anchors of their own entries.
func fakeTracer(dirs ...string) *Tracer {
	tr := newTracer(HookFentry, nil, hclog.NewNullLogger())
	for i, d := range dirs {
		tr.anchor(dirwatchDwKey{Ino: uint64(i + 1), Dev: 1}, anchor{path: d})
	}
	return tr
}

func (t *Tracer) anchor(k dirwatchDwKey, a anchor) {
	t.byKey[k] = a
	t.setPathLocked(a.path, k)
}

func TestConvert(t *testing.T) {
	// Anchors: /w (ino 1), /w/a (2), /w/a/b (3), /v (4) cover their own
	// entries, /t (5) its tree, with /t/x/y/deep (6) a tree anchor below it.
	// ino 9 is not tracked.
	const (
		w, wa, wab, v, tree, deep, other = 1, 2, 3, 4, 5, 6, 9
	)
	dir := dirwatchDwFlagsDW_F_DIR
	in, newIn := dirwatchDwFlagsDW_F_WATCHED, dirwatchDwFlagsDW_F_NEW_WATCHED
	tests := []struct {
		name        string
		ev          dirwatchDwEvent
		n1, c1      string // name and chain (as a relative path)
		n2, c2      string
		want        []watch.DirEvent
		wantTracked []string
	}{
		{
			name: "mkdir in tracked",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Flags: in, Dev: 1, Ino: wa},
			n1:   "new",
			want: []watch.DirEvent{{Op: watch.Created, Path: "/w/a/new"}},
		},
		{
			name: "mkdir in untracked",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Flags: in, Dev: 1, Ino: other},
			n1:   "new",
		},
		{
			name: "mkdir below a tree anchor",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Flags: in, Dev: 1, Ino: tree},
			n1:   "new",
			c1:   "x/y",
			want: []watch.DirEvent{{Op: watch.Created, Path: "/t/x/y/new"}},
		},
		{
			name: "chain with a name no directory has",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Flags: in, Dev: 1, Ino: tree},
			n1:   "new",
			c1:   "x/..",
		},
		{
			name: "record without the watched flag",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Dev: 1, Ino: wa},
			n1:   "new",
		},
		{
			name:        "rename within",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir | in | newIn, Dev: 1, Ino: w, NewDev: 1, NewIno: v},
			n1:          "a",
			n2:          "a2",
			want:        []watch.DirEvent{{Op: watch.Moved, From: "/w/a", Path: "/v/a2"}},
			wantTracked: []string{"/t", "/t/x/y/deep", "/v", "/v/a2", "/v/a2/b", "/w"},
		},
		{
			name:        "rename within a tree moves the anchors below",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir | in | newIn, Dev: 1, Ino: tree, NewDev: 1, NewIno: tree},
			n1:          "x",
			n2:          "z",
			c2:          "q",
			want:        []watch.DirEvent{{Op: watch.Moved, From: "/t/x", Path: "/t/q/z"}},
			wantTracked: []string{"/t", "/t/q/z/y/deep", "/v", "/w", "/w/a", "/w/a/b"},
		},
		{
			name: "rename in",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir | newIn, Dev: 1, Ino: other, NewDev: 1, NewIno: wab},
			n1:   "x",
			n2:   "y",
			want: []watch.DirEvent{{Op: watch.Created, Path: "/w/a/b/y"}},
		},
		{
			name:        "rename out",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir | in, Dev: 1, Ino: w, NewDev: 1, NewIno: other},
			n1:          "a",
			n2:          "gone",
			want:        []watch.DirEvent{{Op: watch.Removed, Path: "/w/a"}},
			wantTracked: []string{"/t", "/t/x/y/deep", "/v", "/w"},
		},
		{
			name:        "exchange of two tracked trees",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir | in | newIn | dirwatchDwFlagsDW_F_EXCHANGE | dirwatchDwFlagsDW_F_NEW_DIR, Dev: 1, Ino: w, NewDev: 1, NewIno: w},
			n1:          "a",
			n2:          "c",
			want:        []watch.DirEvent{{Op: watch.Moved, From: "/w/a", Path: "/w/c"}, {Op: watch.Moved, From: "/w/c", Path: "/w/a"}},
			wantTracked: []string{"/t", "/t/x/y/deep", "/v", "/w", "/w/c", "/w/c/b"},
		},
		{
			name: "file renamed (no directory flag)",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: in | newIn, Dev: 1, Ino: w, NewDev: 1, NewIno: w},
			n1:   "f",
			n2:   "g",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := fakeTracer("/w", "/w/a", "/w/a/b", "/v")
			tr.anchor(dirwatchDwKey{Ino: tree, Dev: 1}, anchor{path: "/t", tree: true})
			tr.anchor(dirwatchDwKey{Ino: deep, Dev: 1}, anchor{path: "/t/x/y/deep", tree: true})
			e, err := parseRecord(record(t, tt.ev, tt.n1, tt.c1, tt.n2, tt.c2))
			if err != nil {
				t.Fatal(err)
			}
			got := tr.convert(e)
			for i := range got {
				if got[i].Source != "ebpf:fentry" {
					t.Errorf("event %d: got source %q, want ebpf:fentry", i, got[i].Source)
				}
				got[i].Source = ""
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if tt.wantTracked != nil {
				if got := slices.Sorted(maps.Keys(tr.tracked())); !slices.Equal(got, tt.wantTracked) {
					t.Errorf("tracked after: got %v, want %v", got, tt.wantTracked)
				}
			}
		})
	}
}

// A directory the walk covers with its subtree needs no entry of its own
// under a tree anchor on its mount, near enough for the programs' climb.
func TestCovered(t *testing.T) {
	tr := fakeTracer("/d")
	tr.anchor(dirwatchDwKey{Ino: 5, Dev: 1}, anchor{path: "/t", tree: true, mnt: 7})
	deep := "/t" + strings.Repeat("/x", coverDepth)
	long := "/t/" + strings.Repeat("y", coverBytes)
	for _, tt := range []struct {
		d    watch.Dir
		want bool
	}{
		{watch.Dir{Path: "/t/a", MntID: 7, Subtree: true}, true},
		{watch.Dir{Path: "/t/a/b/c", MntID: 7, Subtree: true}, true},
		{watch.Dir{Path: deep, MntID: 7, Subtree: true}, true},
		{watch.Dir{Path: deep + "/x", MntID: 7, Subtree: true}, false}, // too deep: an anchor of its own
		{watch.Dir{Path: long, MntID: 7, Subtree: true}, false},        // too long a chain
		{watch.Dir{Path: "/t/m", MntID: 8, Subtree: true}, false},      // another mount
		{watch.Dir{Path: "/t/a", MntID: 0, Subtree: true}, false},      // mounts unknown
		{watch.Dir{Path: "/d/a", MntID: 7, Subtree: true}, false},      // /d covers its entries only
		{watch.Dir{Path: "/tt/a", MntID: 7, Subtree: true}, false},
	} {
		var above treeAbove
		if got := tr.coveredLocked(tt.d, &above); got != tt.want {
			t.Errorf("covered(%s, mount %d) = %v, want %v", tt.d.Path, tt.d.MntID, got, tt.want)
		}
	}
}

func TestUntrackPrefix(t *testing.T) {
	tr := fakeTracer("/w", "/w/a", "/w/a/b", "/wa", "/v")
	tr.mu.Lock() // Untrack needs BPF maps: see the root test

	tr.untrackLocked("/w")
	tr.mu.Unlock()
	want := []string{"/v", "/wa"}
	if got := slices.Sorted(maps.Keys(tr.tracked())); !slices.Equal(got, want) {
		t.Errorf("tracked after untracking /w: got %v, want %v", got, want)
	}
	if len(tr.byKey) != len(want) {
		t.Errorf("byKey has %d entries, want %d", len(tr.byKey), len(want))
	}
}

func TestOpenUnknownHook(t *testing.T) {
	if _, err := Open("uprobe", nil); err == nil {
		t.Error("Open(uprobe): got no error, want one")
	}
}

func TestOpenNone(t *testing.T) {
	tr, err := Open(HookNone, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Hook() != HookNone || tr.Name() != "ebpf" {
		t.Errorf("got hook %s name %s, want none ebpf", tr.Hook(), tr.Name())
	}
	if err := tr.Track(watch.Dir{Path: "/"}); err != nil {
		t.Errorf("Track on none: %v", err)
	}
	tr.Close()
	if _, ok := <-tr.Events(); ok {
		t.Error("Events still open after Close")
	}
}

func TestKeyOf(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstatfs(fd, &fs); err != nil {
		t.Fatal(err)
	}
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		d    watch.Dir
	}{
		{"fd only: stat'ed by Track", watch.Dir{Fd: fd, Path: dir}},
		{"as a walk fills it", watch.Dir{Fd: -1, Path: dir, Dev: uint64(st.Dev), Ino: st.Ino, MntID: stx.Mnt_id}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := fakeTracer()
			got, err := tr.keyOfLocked(tt.d)
			if err != nil {
				t.Fatal(err)
			}
			if got.Ino != st.Ino {
				t.Errorf("got ino %d, want %d", got.Ino, st.Ino)
			}
			if len(tr.sbDev) == 0 {
				t.Error("no mount devices read from mountinfo")
			}
			// Only btrfs-like filesystems report a device other than the superblock's.
			if fs.Type != unix.BTRFS_SUPER_MAGIC && got.Dev != kernelDev(st.Dev) {
				t.Errorf("got dev %#x, want %#x (stat's)", got.Dev, kernelDev(st.Dev))
			}
		})
	}
}

// A tracked directory below an untracked one is still found by Untrack of
// an ancestor (the index is by parent; the gap costs a scan).
func TestUntrackAcrossUntrackedParent(t *testing.T) {
	tr := fakeTracer("/x/y/z", "/x/y/z/w", "/q")
	tr.mu.Lock()
	tr.untrackLocked("/x")
	tr.mu.Unlock()
	if got := slices.Sorted(maps.Keys(tr.tracked())); !slices.Equal(got, []string{"/q"}) {
		t.Errorf("tracked after untracking /x: got %v, want [/q]", got)
	}
}
