package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/testutil"
)

// skipUnlessQuiet skips where the kernel cannot place ignore marks on
// directories or report renames with names: the setting does nothing there.
func skipUnlessQuiet(t *testing.T) {
	t.Helper()
	for _, probe := range []func() error{features.IgnoreMarks, features.EvictableMarks, features.FanotifyDirEvents} {
		if err := probe(); errors.Is(err, features.ErrNotSupported) {
			t.Skip(err)
		}
	}
}

// quietMarks returns vigil_out_of_scope_ignore_marks_total{result}.
func quietMarks(t *testing.T, d *daemonProc, result string) float64 {
	t.Helper()
	f := metricFamilies(t, d)["vigil_out_of_scope_ignore_marks_total"]
	if f == nil {
		t.Fatalf("vigil_out_of_scope_ignore_marks_total missing")
	}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == "result" && l.GetValue() == result {
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("vigil_out_of_scope_ignore_marks_total{result=%q} missing", result)
	return 0
}

// waitQuietMarks waits up to 5s for the counter to reach want.
func waitQuietMarks(t *testing.T, d *daemonProc, result string, want float64) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := quietMarks(t, d, result)
		if got >= want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("ignore marks %s: got %v after 5s, want %v", result, got, want)
		}
	}
}

func events(t *testing.T, d *daemonProc) float64 {
	t.Helper()
	n, _ := counters(t, d)["events"].(float64)
	return n
}

// With ignore_out_of_scope, a directory outside the watch goes quiet after
// its first open; without it, every open reaches the daemon.
func TestIgnoreOutOfScope(t *testing.T) {
	skipUnlessQuiet(t)
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("ignore_out_of_scope=%v", on), func(t *testing.T) {
			mnt := testutil.MountTmpfs(t)
			watched := filepath.Join(mnt, "w")
			f := filepath.Join(mnt, "out", "f")
			writeFile(t, filepath.Join(watched, "keep"), clean)
			writeFile(t, f, clean)
			d := startDaemonWith(t, fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\n", watched), "",
				fmt.Sprintf("  ignore_out_of_scope = %v", on))

			e0 := events(t, d)
			wantContent(t, f, clean)
			if on {
				waitQuietMarks(t, d, "placed", 1)
			}
			e1 := events(t, d)
			wantContent(t, f, clean)
			e2 := events(t, d)
			if e1-e0 != 1 {
				t.Errorf("first open: got %v events, want 1", e1-e0)
			}
			want := map[bool]float64{true: 0, false: 1}[on]
			if e2-e1 != want {
				t.Errorf("second open: got %v events, want %v", e2-e1, want)
			}
		})
	}
}

// A directory ignore-marked outside and moved into the watch loses its
// mark, and so do the directories below it: the infected files in it are
// denied within moments, where without the rename watcher they would stay
// readable for as long as the marks live.
func TestIgnoreOutOfScopeMoveIn(t *testing.T) {
	skipUnlessQuiet(t)
	mnt := testutil.MountTmpfs(t)
	watched := filepath.Join(mnt, "w")
	out := filepath.Join(mnt, "out", "d")
	writeFile(t, filepath.Join(watched, "keep"), clean)
	writeFile(t, filepath.Join(out, "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(out, "x", "y", "z", "eicar"), clamav.EICAR)
	d := startDaemonWith(t, fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\n", watched), "",
		"  ignore_out_of_scope = true")

	// Out of scope: allowed, and both directories get ignore marks.
	wantContent(t, filepath.Join(out, "eicar"), clamav.EICAR)
	wantContent(t, filepath.Join(out, "x", "y", "z", "eicar"), clamav.EICAR)
	waitQuietMarks(t, d, "placed", 2)

	if err := os.Rename(out, filepath.Join(watched, "d")); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"eicar", "x/y/z/eicar"} {
		p := filepath.Join(watched, "d", rel)
		start := time.Now()
		for reads := 0; ; reads++ {
			_, err := os.ReadFile(p)
			if errors.Is(err, unix.EPERM) {
				t.Logf("%s denied %v after the move, %d reads allowed before", rel, time.Since(start), reads)
				break
			}
			if err != nil {
				t.Fatalf("read %s: %v", p, err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s still readable 5s after being moved into the watch", p)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if got := quietMarks(t, d, "removed"); got < 2 {
		t.Errorf("ignore marks removed: got %v, want 2", got)
	}
}

// The rename watcher holds no filesystem: the one a watch is on can be
// unmounted while vigil runs, and one mounted there instead is followed
// too: a directory quieted outside the watch on it and moved in loses
// its mark.
func TestIgnoreOutOfScopeRemounted(t *testing.T) {
	skipUnlessQuiet(t)
	disk := filepath.Join(testutil.MountTmpfs(t), "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	watched, out := filepath.Join(disk, "w"), filepath.Join(disk, "out", "d")
	testutil.MountTmpfsOn(t, disk)
	writeFile(t, filepath.Join(watched, "keep"), clean)
	d := startDaemonWith(t, fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\n", watched), "",
		"  ignore_out_of_scope = true")
	unmountBusy(t, disk)
	testutil.MountTmpfsOn(t, disk)
	writeFile(t, filepath.Join(watched, "keep"), clean)
	writeFile(t, filepath.Join(out, "eicar"), clamav.EICAR)
	// Out of scope: read, until the filesystem is marked and the
	// directory quieted.
	for end := time.Now().Add(5 * time.Second); quietMarks(t, d, "placed") < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("no ignore mark placed in 5s on the filesystem mounted since")
		}
		wantContent(t, filepath.Join(out, "eicar"), clamav.EICAR)
	}
	if err := os.Rename(out, filepath.Join(watched, "d")); err != nil {
		t.Fatal(err)
	}
	waitDenied(t, "moved into the watch on the filesystem mounted since", filepath.Join(watched, "d", "eicar"), 5*time.Second)
}
