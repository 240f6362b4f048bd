package dirtrace

import (
	"encoding/binary"
	"maps"
	"slices"
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

func TestWithin(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/a", "/a", true},
		{"/a/b", "/a", true},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/x/y", "/", true},
	}
	for _, tt := range tests {
		if got := within(tt.p, tt.dir); got != tt.want {
			t.Errorf("within(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
}

func record(t *testing.T, e dirwatchDwEvent, name, newName string) []byte {
	t.Helper()
	if name != "" {
		e.NameLen = uint32(len(name) + 1)
	}
	if newName != "" {
		e.NewNameLen = uint32(len(newName) + 1)
	}
	b, err := binary.Append(nil, binary.NativeEndian, &e)
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		b = append(append(b, name...), 0)
	}
	if newName != "" {
		b = append(append(b, newName...), 0)
	}
	return b
}

func TestParseRecord(t *testing.T) {
	b := record(t, dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Pid: 7, Dev: 3, Ino: 11}, "old", "new")
	e, err := parseRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Op != dirwatchDwOpDW_OP_RENAME || e.Pid != 7 || e.Ino != 11 || e.name != "old" || e.newName != "new" {
		t.Errorf("got %+v, want rename pid 7 ino 11 old -> new", e)
	}
	if _, err := parseRecord(b[:len(b)-2]); err == nil {
		t.Error("truncated record: got no error, want one")
	}
}

// fakeTracer tracks dirs without BPF maps: key i+1 on dev 1 for dirs[i].
func fakeTracer(dirs ...string) *Tracer {
	tr := newTracer(HookFentry, nil, hclog.NewNullLogger())
	for i, d := range dirs {
		k := dirwatchDwKey{Ino: uint64(i + 1), Dev: 1}
		tr.byKey[k] = d
		tr.setPathLocked(d, k)
	}
	return tr
}

func TestConvert(t *testing.T) {
	// Tracked: /w (ino 1), /w/a (2), /w/a/b (3), /v (4); ino 9 is not tracked.
	const (
		w, wa, wab, v, other = 1, 2, 3, 4, 9
	)
	dir := dirwatchDwFlagsDW_F_DIR
	tests := []struct {
		name        string
		ev          dirwatchDwEvent
		n1, n2      string
		want        []watch.DirEvent
		wantTracked []string
	}{
		{
			name: "mkdir in tracked",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Dev: 1, Ino: wa},
			n1:   "new",
			want: []watch.DirEvent{{Op: watch.Created, Path: "/w/a/new"}},
		},
		{
			name: "mkdir in untracked",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_MKDIR, Dev: 1, Ino: other},
			n1:   "new",
		},
		{
			name:        "rename within",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir, Dev: 1, Ino: w, NewDev: 1, NewIno: v},
			n1:          "a",
			n2:          "a2",
			want:        []watch.DirEvent{{Op: watch.Moved, From: "/w/a", Path: "/v/a2"}},
			wantTracked: []string{"/v", "/v/a2", "/v/a2/b", "/w"},
		},
		{
			name: "rename in",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir, Dev: 1, Ino: other, NewDev: 1, NewIno: wab},
			n1:   "x",
			n2:   "y",
			want: []watch.DirEvent{{Op: watch.Created, Path: "/w/a/b/y"}},
		},
		{
			name:        "rename out",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir, Dev: 1, Ino: w, NewDev: 1, NewIno: other},
			n1:          "a",
			n2:          "gone",
			want:        []watch.DirEvent{{Op: watch.Removed, Path: "/w/a"}},
			wantTracked: []string{"/v", "/w"},
		},
		{
			name:        "exchange of two tracked trees",
			ev:          dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Flags: dir | dirwatchDwFlagsDW_F_EXCHANGE | dirwatchDwFlagsDW_F_NEW_DIR, Dev: 1, Ino: w, NewDev: 1, NewIno: w},
			n1:          "a",
			n2:          "c",
			want:        []watch.DirEvent{{Op: watch.Moved, From: "/w/a", Path: "/w/c"}, {Op: watch.Moved, From: "/w/c", Path: "/w/a"}},
			wantTracked: []string{"/v", "/w", "/w/c", "/w/c/b"},
		},
		{
			name: "file renamed (no directory flag)",
			ev:   dirwatchDwEvent{Op: dirwatchDwOpDW_OP_RENAME, Dev: 1, Ino: w, NewDev: 1, NewIno: w},
			n1:   "f",
			n2:   "g",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := fakeTracer("/w", "/w/a", "/w/a/b", "/v")
			e, err := parseRecord(record(t, tt.ev, tt.n1, tt.n2))
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
