package dirtrace

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/testutil"
	"github.com/vigilsec/vigil/internal/watch"
)

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// openRoot opens hook h. The tracepoint rung is the floor every CI kernel
// has, so there it must open; the others skip where the kernel lacks them.
func openRoot(t *testing.T, h Hook) *Tracer {
	t.Helper()
	testutil.SkipUnlessRoot(t)
	tr, err := Open(h, testLogger(t))
	if err != nil {
		if errors.Is(err, features.ErrNotSupported) && !(h == HookTracepoint && testutil.InCI()) {
			t.Skipf("hook %s unavailable here: %v", h, err)
		}
		t.Fatalf("Open(%s): %v", h, err)
	}
	t.Cleanup(func() { tr.Close() })
	if got := tr.Hook(); got != h {
		t.Fatalf("Open(%s) gave hook %s", h, got)
	}
	return tr
}

func track(t *testing.T, tr *Tracer, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer unix.Close(fd)
	if err := tr.Track(watch.Dir{Fd: fd, Path: dir}); err != nil {
		t.Fatalf("track %s: %v", dir, err)
	}
}

type step struct {
	name  string
	do    func() error
	want  []watch.DirEvent // nothing: checked by the next step's events
	track []string         // what the manager would track after this step
}

func TestEventsRoot(t *testing.T) {
	for _, h := range []Hook{HookFentry, HookKprobe, HookTracepoint} {
		t.Run(string(h), func(t *testing.T) {
			tr := openRoot(t, h)
			testutil.Deadline(t, time.Minute, nil)
			runSteps(t, tr)
		})
	}
}

func runSteps(t *testing.T, tr *Tracer) {
	root := testutil.TempDir(t)
	out := testutil.TempDir(t)
	j := func(dir string, names ...string) string { return filepath.Join(append([]string{dir}, names...)...) }
	track(t, tr, root)
	rootFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFD)
	created := func(p string) []watch.DirEvent { return []watch.DirEvent{{Op: watch.Created, Path: p}} }
	moved := func(from, to string) watch.DirEvent { return watch.DirEvent{Op: watch.Moved, From: from, Path: to} }

	steps := []step{
		{name: "os.Mkdir (mkdirat)", do: func() error { return os.Mkdir(j(root, "a"), 0o755) }, want: created(j(root, "a")), track: []string{j(root, "a")}},
		{name: "mkdirat relative to a tracked dfd", do: func() error { return unix.Mkdirat(rootFD, "b", 0o755) }, want: created(j(root, "b")), track: []string{j(root, "b")}},
		{name: "mkdirat with two components", do: func() error { return unix.Mkdirat(rootFD, "a/c", 0o755) }, want: created(j(root, "a", "c"))},
		{name: "mkdir in an untracked dir", do: func() error { return os.Mkdir(j(out, "x"), 0o755) }},
		{name: "failed mkdir", do: func() error {
			if err := os.Mkdir(j(root, "a"), 0o755); !errors.Is(err, os.ErrExist) {
				return errors.New("mkdir of an existing directory succeeded")
			}
			return nil
		}},
		{name: "rename within (renameat)", do: func() error { return os.Rename(j(root, "b"), j(root, "a", "b2")) }, want: []watch.DirEvent{moved(j(root, "b"), j(root, "a", "b2"))}},
		{name: "rename in", do: func() error { return os.Rename(j(out, "x"), j(root, "x")) }, want: created(j(root, "x")), track: []string{j(root, "x")}},
		{name: "rename out", do: func() error { return os.Rename(j(root, "x"), j(out, "x2")) }, want: []watch.DirEvent{{Op: watch.Removed, Path: j(root, "x"), To: j(out, "x2")}}},
		{name: "rename of a file", do: func() error {
			if err := os.WriteFile(j(root, "f"), nil, 0o644); err != nil {
				return err
			}
			return os.Rename(j(root, "f"), j(root, "g"))
		}},
		{name: "rename in untracked dirs", do: func() error { return os.Rename(j(out, "x2"), j(out, "x3")) }},
		{name: "renameat2 RENAME_NOREPLACE", do: func() error {
			return unix.Renameat2(unix.AT_FDCWD, j(root, "a", "b2"), unix.AT_FDCWD, j(root, "b3"), unix.RENAME_NOREPLACE)
		}, want: []watch.DirEvent{moved(j(root, "a", "b2"), j(root, "b3"))}},
		{name: "renameat2 RENAME_EXCHANGE", do: func() error {
			return unix.Renameat2(rootFD, "a", rootFD, "b3", unix.RENAME_EXCHANGE)
		}, want: []watch.DirEvent{moved(j(root, "a"), j(root, "b3")), moved(j(root, "b3"), j(root, "a"))}},
		// The tree that was a is now b3: its events must name the new place.
		{name: "mkdir inside an exchanged tree", do: func() error { return os.Mkdir(j(root, "b3", "z"), 0o755) }, want: created(j(root, "b3", "z"))},
	}
	if legacySyscalls {
		steps = append(steps,
			step{name: "mkdir(2)", do: func() error { return sysMkdir(j(root, "m")) }, want: created(j(root, "m"))},
			step{name: "rename(2)", do: func() error { return sysRename(j(root, "m"), j(root, "m2")) }, want: []watch.DirEvent{moved(j(root, "m"), j(root, "m2"))}},
		)
	}
	// An exchange with a directory outside moves a tracked one out: where
	// it went is told, whichever side the call names first.
	outFD, err := unix.Open(out, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(outFD)
	exchangedOut := []watch.DirEvent{{Op: watch.Removed, Path: j(root, "in"), To: j(out, "ex")}, {Op: watch.Created, Path: j(root, "in")}}
	steps = append(steps,
		step{name: "mkdirs for the exchanges", do: func() error {
			if err := os.Mkdir(j(out, "ex"), 0o755); err != nil {
				return err
			}
			return os.Mkdir(j(root, "in"), 0o755)
		}, want: created(j(root, "in"))},
		step{name: "RENAME_EXCHANGE out, the tracked side first", do: func() error {
			return unix.Renameat2(rootFD, "in", outFD, "ex", unix.RENAME_EXCHANGE)
		}, want: exchangedOut},
		step{name: "RENAME_EXCHANGE out, the outside first", do: func() error {
			return unix.Renameat2(outFD, "ex", rootFD, "in", unix.RENAME_EXCHANGE)
		}, want: []watch.DirEvent{exchangedOut[1], exchangedOut[0]}},
	)
	steps = append(steps, step{name: "final mkdir", do: func() error { return os.Mkdir(j(root, "end"), 0o755) }, want: created(j(root, "end"))})

	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		expect(t, tr, s.name, s.want...)
		for _, d := range s.track {
			track(t, tr, d)
		}
	}
	expectNone(t, tr)
}

// A tree anchor covers the directories below it without entries of their
// own: the programs climb to it, and report where they are.
func TestTreeRoot(t *testing.T) {
	for _, h := range []Hook{HookFentry, HookKprobe, HookTracepoint} {
		t.Run(string(h), func(t *testing.T) {
			tr := openRoot(t, h)
			testutil.Deadline(t, time.Minute, nil)
			root := testutil.TempDir(t)
			out := testutil.TempDir(t)
			trackTree(t, tr, root)
			// Covered below the anchor: tracking them adds no entry.
			if err := os.MkdirAll(filepath.Join(root, "a", "b"), 0o755); err != nil {
				t.Fatal(err)
			}
			expect(t, tr, "mkdir -p a/b", created(filepath.Join(root, "a")), created(filepath.Join(root, "a", "b")))
			trackTree(t, tr, filepath.Join(root, "a", "b"))
			if got := slices.Sorted(maps.Keys(tr.tracked())); !slices.Equal(got, []string{root}) {
				t.Errorf("anchors: got %v, want [%s]", got, root)
			}

			steps := []struct {
				name string
				do   func() error
				want []watch.DirEvent
			}{
				{"mkdir three levels down", func() error { return os.Mkdir(filepath.Join(root, "a", "b", "c"), 0o755) },
					[]watch.DirEvent{{Op: watch.Created, Path: filepath.Join(root, "a", "b", "c")}}},
				{"rename of a subtree", func() error { return os.Rename(filepath.Join(root, "a"), filepath.Join(root, "z")) },
					[]watch.DirEvent{{Op: watch.Moved, From: filepath.Join(root, "a"), Path: filepath.Join(root, "z")}}},
				{"mkdir in the renamed subtree", func() error { return os.Mkdir(filepath.Join(root, "z", "b", "c", "d"), 0o755) },
					[]watch.DirEvent{{Op: watch.Created, Path: filepath.Join(root, "z", "b", "c", "d")}}},
				{"mkdirat relative to a covered directory", func() error {
					dfd, err := unix.Open(filepath.Join(root, "z", "b"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
					if err != nil {
						return err
					}
					defer unix.Close(dfd)
					return unix.Mkdirat(dfd, "f", 0o755)
				}, []watch.DirEvent{{Op: watch.Created, Path: filepath.Join(root, "z", "b", "f")}}},
				{"rename out", func() error { return os.Rename(filepath.Join(root, "z"), filepath.Join(out, "z")) },
					[]watch.DirEvent{{Op: watch.Removed, Path: filepath.Join(root, "z"), To: filepath.Join(out, "z")}}},
				{"mkdir in the tree moved out", func() error { return os.Mkdir(filepath.Join(out, "z", "b", "e"), 0o755) }, nil},
				{"final mkdir", func() error { return os.Mkdir(filepath.Join(root, "end"), 0o755) },
					[]watch.DirEvent{{Op: watch.Created, Path: filepath.Join(root, "end")}}},
			}
			for _, s := range steps {
				if err := s.do(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				expect(t, tr, s.name, s.want...)
			}
			expectNone(t, tr)
		})
	}
}

// The programs remember, per CPU, the last directory they found no watch
// covering, and skip the climb for the next mkdir made in it. A rename
// that moves it into a watch, or a new watch above it, must end that.
func TestUncoveredRoot(t *testing.T) {
	for _, h := range []Hook{HookFentry, HookKprobe, HookTracepoint} {
		t.Run(string(h), func(t *testing.T) {
			tr := openRoot(t, h)
			testutil.Deadline(t, time.Minute, nil)
			pinned(t)
			root := testutil.TempDir(t)
			out := testutil.TempDir(t)
			trackTree(t, tr, root)
			openDir := func(p string) int {
				t.Helper()
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
				fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { unix.Close(fd) })
				return fd
			}
			// Twice each: the second finds the first's memory.
			uncovered := func(fd int) {
				t.Helper()
				for _, name := range []string{"a1", "a2"} {
					if err := unix.Mkdirat(fd, name, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}

			moved := openDir(filepath.Join(out, "moved"))
			uncovered(moved)
			if err := os.Rename(filepath.Join(out, "moved"), filepath.Join(root, "moved")); err != nil {
				t.Fatal(err)
			}
			expect(t, tr, "rename in", created(filepath.Join(root, "moved")))
			if err := unix.Mkdirat(moved, "b", 0o755); err != nil {
				t.Fatal(err)
			}
			expect(t, tr, "mkdirat in the directory renamed in", created(filepath.Join(root, "moved", "b")))

			later := filepath.Join(out, "later")
			fd := openDir(later)
			uncovered(fd)
			trackTree(t, tr, later)
			if err := unix.Mkdirat(fd, "b", 0o755); err != nil {
				t.Fatal(err)
			}
			expect(t, tr, "mkdirat in a directory tracked since", created(filepath.Join(later, "b")))

			expectNone(t, tr)
		})
	}
}

// pinned keeps the test on one thread, on one CPU, until it ends: the
// programs' memory of uncovered directories is per CPU.
func pinned(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	var was, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !was.IsSet(cpu) {
		cpu++
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A thread left on one CPU dies with the test instead.
		if unix.SchedSetaffinity(0, &was) == nil {
			runtime.UnlockOSThread()
		}
	})
}

// trackTree tracks dir as the top of a recursive watch: an anchor that
// covers the directories below it.
func trackTree(t *testing.T, tr *Tracer, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_MNT_ID, &stx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Track(watch.Dir{Fd: fd, Path: dir, MntID: stx.Mnt_id, Subtree: true}); err != nil {
		t.Fatalf("track %s: %v", dir, err)
	}
}

// The syscall rung writes records that no tracked path leads to without
// waking the reader, and still delivers them; the others wake it.
func TestLazyRoot(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	tr, err := Open(HookTracepoint, testLogger(t))
	if err != nil {
		t.Fatalf("Open(tracepoint): %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	var mu sync.Mutex
	lazy := make(map[string]bool) // by the operation and its first path
	observe := func(e event) {
		mu.Lock()
		lazy[fmt.Sprint(e.Op, " ", e.name)] = e.has(dirwatchDwFlagsDW_F_LAZY)
		mu.Unlock()
	}
	tr.observe.Store(&observe)
	testutil.Deadline(t, time.Minute, nil)
	root := testutil.TempDir(t)
	out := testutil.TempDir(t)
	track(t, tr, root)
	seen := func(p string) (bool, bool) {
		mu.Lock()
		defer mu.Unlock()
		l, ok := lazy[p]
		return l, ok
	}
	check := func(p string, want bool) {
		t.Helper()
		// A lazy record comes with the reader's next poll.
		deadline := time.Now().Add(5 * lostCheck)
		got, ok := seen(p)
		for ; !ok && time.Now().Before(deadline); got, ok = seen(p) {
			time.Sleep(10 * time.Millisecond)
		}
		if !ok {
			t.Errorf("%s: no record", p)
		} else if got != want {
			t.Errorf("%s: lazy %v, want %v", p, got, want)
		}
	}
	inside, outside, dotted := filepath.Join(root, "a"), filepath.Join(out, "x"), root+"/./b"
	for _, p := range []string{inside, outside, dotted} {
		if err := sysMkdirat(unix.AT_FDCWD, p); err != nil {
			t.Fatal(err)
		}
	}
	moved := filepath.Join(root, "x")
	if err := unix.Renameat(unix.AT_FDCWD, outside, unix.AT_FDCWD, moved); err != nil {
		t.Fatal(err)
	}
	expect(t, tr, "mkdir and rename", created(inside), created(filepath.Join(root, "b")), created(moved))
	mkdir, rename := fmt.Sprint(dirwatchDwOpDW_OP_MKDIR, " "), fmt.Sprint(dirwatchDwOpDW_OP_RENAME, " ")
	check(mkdir+inside, false)
	check(mkdir+outside, true)
	check(mkdir+dotted, false)   // not clean: only user space can tell
	check(rename+outside, false) // its new side is in the watch

	// "/" as the deepest existing ancestor of a watch yet to appear covers
	// only its own entries: the rest stays lazy. As the top of a tree it
	// covers every path.
	track(t, tr, "/")
	later := filepath.Join(out, "later")
	if err := sysMkdirat(unix.AT_FDCWD, later); err != nil {
		t.Fatal(err)
	}
	check(mkdir+later, true)
	trackTree(t, tr, "/")
	everywhere := filepath.Join(out, "everywhere")
	if err := sysMkdirat(unix.AT_FDCWD, everywhere); err != nil {
		t.Fatal(err)
	}
	check(mkdir+everywhere, false)
}

// sysMkdirat is mkdirat(2) with the path as given: os.Mkdir cleans it.
func sysMkdirat(dfd int, p string) error { return unix.Mkdirat(dfd, p, 0o755) }

func created(p string) watch.DirEvent { return watch.DirEvent{Op: watch.Created, Path: p} }

// expectNone checks that no event follows the last step's.
func expectNone(t *testing.T, tr *Tracer) {
	t.Helper()
	select {
	case got := <-tr.Events():
		t.Errorf("unexpected event after the last step: %+v", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// expect reads the events step caused, in order.
func expect(t *testing.T, tr *Tracer, step string, want ...watch.DirEvent) {
	t.Helper()
	for _, w := range want {
		w.Source = "ebpf:" + string(tr.Hook())
		select {
		case got := <-tr.Events():
			if got != w {
				t.Fatalf("%s: got %+v, want %+v", step, got, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event after 5s, want %+v", step, w)
		}
	}
}

func TestForcedHookRoot(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	probes := make(map[string]error)
	for _, p := range Probe() {
		probes[p.Name] = p.Err
	}
	for _, h := range Ladder[:len(Ladder)-1] {
		t.Run(string(h), func(t *testing.T) {
			probeErr, ok := probes["eBPF directory events, hook "+string(h)]
			if !ok {
				t.Fatalf("Probe has no entry for hook %s", h)
			}
			tr, err := Open(h, testLogger(t))
			if err == nil {
				tr.Close()
				if probeErr != nil {
					t.Errorf("Open(%s) works but Probe says %v", h, probeErr)
				}
				return
			}
			if probeErr == nil {
				t.Errorf("Probe says hook %s works, Open says %v", h, err)
			}
			// A forced rung fails loudly and says why.
			if !errors.Is(err, features.ErrNotSupported) {
				t.Errorf("Open(%s): got %v, want an error wrapping ErrNotSupported", h, err)
			}
			if !strings.Contains(err.Error(), string(h)) {
				t.Errorf("Open(%s) error %q does not name the hook", h, err)
			}
			t.Logf("forced %s: %v", h, err)
		})
	}
}

func TestOpenAutoRoot(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	want := HookNone
	for _, p := range Probe() {
		if p.Err == nil {
			want = Hook(strings.TrimPrefix(p.Name, "eBPF directory events, hook "))
			break
		}
	}
	tr, err := Open("", testLogger(t))
	if err != nil {
		t.Fatalf("Open(auto): %v", err)
	}
	defer tr.Close()
	if tr.Hook() != want {
		t.Errorf("Open(auto) chose %s, want %s (the first rung the probe found)", tr.Hook(), want)
	}
	if testutil.InCI() && tr.Hook() == HookNone {
		t.Error("no eBPF hook in CI, want at least the tracepoint rung")
	}
}

// A tracer lifts RLIMIT_MEMLOCK, which kernels before 5.11 charge its
// maps to: a container's default (64 KiB) would refuse the ring buffer.
// Without CAP_SYS_RESOURCE (as here) only as far as the hard limit.
func TestMemlockRaisedRoot(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	var was unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &was); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_MEMLOCK, &was) })
	if was.Max <= 64<<10 {
		t.Skipf("RLIMIT_MEMLOCK's hard limit is %d: no room to see it raised", was.Max)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 64 << 10, Max: was.Max}); err != nil {
		t.Fatal(err)
	}
	tr, err := Open(HookTracepoint, testLogger(t))
	if err != nil {
		t.Fatalf("Open(tracepoint) with RLIMIT_MEMLOCK at 64 KiB: %v", err)
	}
	defer tr.Close()
	var got unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &got); err != nil {
		t.Fatal(err)
	}
	if got.Cur != unix.RLIM_INFINITY && got.Cur != was.Max {
		t.Errorf("RLIMIT_MEMLOCK after Open: %d, want unlimited or the hard limit, %d", got.Cur, was.Max)
	}
}

func TestChargesMemlock(t *testing.T) {
	for release, want := range map[string]bool{
		"4.18.0-513.5.1.el8_9.x86_64": true,
		"5.10.0-23-amd64":             true,
		"5.11.0":                      false,
		"5.15.0-91-generic":           false,
		"6.1.0-57-amd64":              false,
		"6.18.44-fc-v782":             false,
		"":                            true,
		"weird":                       true,
	} {
		if got := chargesMemlock(release); got != want {
			t.Errorf("chargesMemlock(%q) = %v, want %v", release, got, want)
		}
	}
}

// Where the kernel refuses fentry programs to root (this machine, whose
// kernel charges no BPF memory to RLIMIT_MEMLOCK), the error says a policy
// refused them, not cilium/ebpf's "MEMLOCK may be too low" alone.
func TestFentryRefusedSaysWhyRoot(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	tr, err := Open(HookFentry, testLogger(t))
	if err == nil {
		tr.Close()
		t.Skip("fentry programs load here")
	}
	var u unix.Utsname
	if unix.Uname(&u) != nil || chargesMemlock(unix.ByteSliceToString(u.Release[:])) || !errors.Is(err, unix.EPERM) {
		t.Skipf("not refused with EPERM on a kernel that charges no BPF to RLIMIT_MEMLOCK: %v", err)
	}
	if !strings.Contains(err.Error(), "refused by a policy") {
		t.Errorf("Open(fentry): %v, want it to say a policy refused the programs", err)
	}
}

func TestTrackUntrackRoot(t *testing.T) {
	tr := openRoot(t, HookTracepoint)
	root := testutil.TempDir(t)
	dirs := []string{root, root + "/a", root + "/a/b", root + "/ab"}
	for _, d := range dirs[1:] {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range dirs {
		track(t, tr, d)
	}
	// The same directory under another path replaces its entry: a rename.
	fd, err := unix.Open(root+"/ab", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = tr.Track(watch.Dir{Fd: fd, Path: root + "/renamed"})
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	tr.Untrack(root + "/a")
	want := []string{root, root + "/renamed"}
	if got := slices.Sorted(maps.Keys(tr.tracked())); !slices.Equal(got, want) {
		t.Errorf("tracked: got %v, want %v", got, want)
	}
	var k dirwatchDwKey
	var v uint8
	n := 0
	for it := tr.watched().Iterate(); it.Next(&k, &v); {
		n++
	}
	if n != len(want) {
		t.Errorf("watched map has %d entries, want %d", n, len(want))
	}
	tr.Untrack(root + "/unknown") // ignored
}

func TestLostResyncRoot(t *testing.T) {
	tr := openRoot(t, HookTracepoint)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	per := make([]uint64, ncpu)
	per[0] = 3
	if err := tr.rung.coll.Maps[dirwatchMapLost].Put(uint32(0), per); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-tr.Events():
		if got.Op != watch.Resync || got.Source != "ebpf:tracepoint" {
			t.Errorf("got %+v, want a resync from ebpf:tracepoint", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no resync 5s after the lost counter grew")
	}
	if got := tr.Lost(); got != 3 {
		t.Errorf("Lost() = %d, want 3", got)
	}
}

// A syscall-rung record is resolved to a path outside the tracer's lock:
// when the path leads through a hung filesystem (NFS, FUSE), the reader
// waits on it, but Track, with which the manager marks new directories
// elsewhere meanwhile, does not.
func TestHungFilesystemRoot(t *testing.T) {
	tr := openRoot(t, HookTracepoint)
	testutil.Deadline(t, time.Minute, nil)
	fs := testutil.MountFUSE(t)
	a := filepath.Join(fs.Dir, "a")
	if err := os.Mkdir(a, 0o755); err != nil {
		t.Fatal(err)
	}
	fs.Hang(t, os.Getpid())
	// By another process, which the filesystem still serves, and by
	// absolute path: the tracer walks fs.Dir/a to resolve it, and the
	// filesystem holds that walk's lookup of a.
	if out, err := exec.Command("mkdir", filepath.Join(a, "b")).CombinedOutput(); err != nil {
		t.Fatalf("mkdir on FUSE: %v: %s", err, out)
	}
	select {
	case <-fs.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("the tracer did not resolve the path of a mkdir on FUSE")
	}
	other := testutil.TempDir(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		track(t, tr, other)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Track waited for a path resolution on a hung filesystem")
	}
}

// The manager, told of a rename by inotify first, tracks the moved
// directories at their new paths before the tracer converts its own
// record of the rename: they stay tracked, and the rename is still
// reported.
func TestRenameTrackedFirstRoot(t *testing.T) {
	root := testutil.TempDir(t)
	from, to := filepath.Join(root, "a"), filepath.Join(root, "moved")
	if err := os.MkdirAll(filepath.Join(from, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := openRoot(t, HookTracepoint)
	testutil.Deadline(t, time.Minute, nil)
	trackTree(t, tr, root)
	track(t, tr, filepath.Join(from, "b")) // an anchor below, as one every 32 levels is
	// The reader waits at the rename's record until the test has tracked
	// the new path.
	seen, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	observe := func(e event) {
		if e.Op == dirwatchDwOpDW_OP_RENAME {
			once.Do(func() {
				close(seen)
				<-proceed
			})
		}
	}
	tr.observe.Store(&observe)
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		close(proceed)
		t.Fatal("no record of the rename")
	}
	track(t, tr, filepath.Join(to, "b"))
	close(proceed)
	expect(t, tr, "rename", watch.DirEvent{Op: watch.Moved, Path: to, From: from})
	if got := tr.tracked(); !got[filepath.Join(to, "b")] {
		t.Errorf("tracked after the rename's record: got %v, want %s among them", slices.Sorted(maps.Keys(got)), filepath.Join(to, "b"))
	}
}
