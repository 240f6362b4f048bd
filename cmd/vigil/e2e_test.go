package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/alert"
	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/testutil"
)

// vigilBin is the binary under test, built once by TestMain, or the one
// $VIGIL_BIN names (vmtest's guests run a prebuilt one rather than build
// it again, slowly, under emulation).
var vigilBin string

func TestMain(m *testing.M) {
	if spec := os.Getenv(openTreeEnv); spec != "" {
		os.Exit(openTreeRead(spec))
	}
	if dir := os.Getenv(stormEnv); dir != "" {
		rounds, _ := strconv.Atoi(os.Getenv("VIGIL_TEST_STORM_ROUNDS"))
		os.Exit(stormOpener(dir, rounds))
	}
	if bin := os.Getenv("VIGIL_BIN"); bin != "" {
		vigilBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "vigil-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vigilBin = filepath.Join(dir, "vigil")
	build := exec.Command("go", "build", "-o", vigilBin, ".")
	// As make build: without cgo, as the capability drop needs.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build vigil:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonProc is a `vigil run` started by a test.
type daemonProc struct {
	cmd      *exec.Cmd
	policy   string // the policy file; settings come from settings
	settings string
	stderr   *testutil.SyncBuffer
	socket   string
	alertLog string
	state    string // the daemon's own files: policy, socket, alerts, quarantine
	exited   chan struct{}
}

func (d *daemonProc) log() string { return d.stderr.String() }

// startDaemon runs vigil on policy (the settings block is added here) and
// waits for READY=1. The daemon is killed, by PID, at cleanup or when the
// test's deadline passes; killing it releases every blocked open.
func startDaemon(t *testing.T, watches, engine string) *daemonProc {
	t.Helper()
	return startDaemonWith(t, watches, engine, "")
}

// startDaemonWith is startDaemon with lines added to the settings block
// (a setting given twice is an error: workers is fixed; scan_timeout and
// quarantine_dir given there replace the harness's)
// and arguments added to vigil run's.
func startDaemonWith(t *testing.T, watches, engine, settings string, args ...string) *daemonProc {
	t.Helper()
	testutil.SkipUnlessFanotify(t)
	state := t.TempDir()
	d := &daemonProc{
		stderr:   new(testutil.SyncBuffer),
		socket:   filepath.Join(state, "vigil.sock"),
		alertLog: filepath.Join(state, "alerts.jsonl"),
		state:    state,
		exited:   make(chan struct{}),
	}
	d.settings = fmt.Sprintf(`
settings {
  workers        = 2
  control_socket = %q
  alert_log      = %q
  quarantine_dir = %q
%s
}
`, d.socket, d.alertLog, filepath.Join(state, "quarantine"), settings)
	polFile := filepath.Join(state, "policy.hcl")
	d.policy = polFile
	if strings.Contains(settings, "quarantine_dir") {
		d.settings = strings.Replace(d.settings, fmt.Sprintf("  quarantine_dir = %q\n", filepath.Join(state, "quarantine")), "", 1)
	}
	if !strings.Contains(settings, "scan_timeout") {
		d.settings = strings.Replace(d.settings, "settings {", "settings {\n  scan_timeout   = \"5s\"", 1)
	}
	writeFile(t, polFile, engine+d.settings+watches)

	notify := filepath.Join(state, "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// Started in its state directory with the policy named relatively,
	// as an operator may: the daemon names it absolutely (see TestStatus).
	d.cmd = exec.Command(vigilBin, append([]string{"run", "--policy", filepath.Base(polFile), "--log-level", "debug"}, args...)...)
	d.cmd.Dir = state
	d.cmd.Env = append(d.cmd.Environ(), "NOTIFY_SOCKET="+notify)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log())
		}
	})
	testutil.Deadline(t, 2*time.Minute, d.kill)

	ready := make(chan error, 1)
	go func() {
		buf := make([]byte, 256)
		// A start that waits 5 s on a hung filesystem twice, with the
		// eBPF programs loaded in between, took over 20 s on a kernel
		// under TCG beside another.
		ln.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, _, err := ln.ReadFromUnix(buf)
		if err == nil && string(buf[:n]) != "READY=1" {
			err = fmt.Errorf("notify: got %q want READY=1", buf[:n])
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("daemon not ready: %v\n%s", err, d.log())
		}
	case <-d.exited:
		t.Fatalf("daemon exited before ready: %v\n%s", d.cmd.ProcessState, d.log())
	}
	return d
}

func (d *daemonProc) kill() { d.cmd.Process.Kill() }

// reload rewrites the policy with body (an engine block and watches, the
// settings are kept) and sends SIGHUP.
func (d *daemonProc) reload(t *testing.T, body string) {
	t.Helper()
	writeFile(t, d.policy, d.settings+body)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits up to 10s for a line of the daemon's log to contain s.
func (d *daemonProc) waitLog(t *testing.T, s string) {
	t.Helper()
	d.waitLogLine(t, s)
}

// waitLogLine waits up to 10s for a line of the daemon's log holding
// every one of parts.
func (d *daemonProc) waitLogLine(t *testing.T, parts ...string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for line := range strings.Lines(d.log()) {
			if containsAll(line, parts) {
				return
			}
		}
	}
	t.Fatalf("daemon log has no line with all of %q after 10s", parts)
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func (d *daemonProc) stop(t *testing.T) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("daemon ignored SIGTERM for 10s; killing it")
		d.kill()
		<-d.exited
	}
}

// alerts returns the alert records written so far, waiting up to 5s for
// at least want of them.
func (d *daemonProc) alerts(t *testing.T, want int) []alert.Record {
	t.Helper()
	var recs []alert.Record
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		recs = readAlerts(t, d.alertLog)
		if len(recs) >= want {
			break
		}
	}
	return recs
}

func readAlerts(t *testing.T, path string) []alert.Record {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []alert.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r alert.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("alert line %q: %v", sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// filesystem is a kind of filesystem a test mounts for itself.
type filesystem struct {
	name  string
	mount func(testing.TB) string
}

var (
	ext4      = filesystem{"ext4", testutil.MountExt4}
	tmpfs     = filesystem{"tmpfs", testutil.MountTmpfs}
	overlayfs = filesystem{"overlayfs", testutil.MountOverlay}
)

// onEach runs fn, as a subtest named after each of fss, on a fresh
// mount of it.
func onEach(t *testing.T, fss []filesystem, fn func(t *testing.T, mnt string)) {
	for _, fs := range fss {
		t.Run(fs.name, func(t *testing.T) { fn(t, fs.mount(t)) })
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantDenied reads path and expects EPERM, fanotify's FAN_DENY.
func wantDenied(t *testing.T, path string) {
	t.Helper()
	_, err := os.ReadFile(path)
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("read %q: got error %v, want EPERM", path, err)
	}
}

// wantContent reads path and expects exactly content.
func wantContent(t *testing.T, path, content string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("read %q: %v", path, err)
		return
	}
	if string(got) != content {
		t.Errorf("read %q: got %q, want %q", path, got, content)
	}
}

const clean = "just a clean file\n"

func TestBlockAndAlert(t *testing.T) {
	root := testutil.TempDir(t)
	up := filepath.Join(root, "uploads")
	deep := filepath.Join(up, "a", "b", "c", "d", "e")
	// Placed before the daemon starts: the start-up walk must cover them.
	writeFile(t, filepath.Join(up, "eicar.com"), clamav.EICAR)
	writeFile(t, filepath.Join(deep, "eicar.com"), clamav.EICAR)
	writeFile(t, filepath.Join(deep, "clean.txt"), clean)
	writeFile(t, filepath.Join(up, "logs", "eicar.log"), clamav.EICAR)
	writeFile(t, filepath.Join(up, "x.part"), clamav.EICAR)
	writeFile(t, filepath.Join(up, "cache", "sub", "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(root, "flat", "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(root, "flat", "sub", "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(root, "outside", "eicar"), clamav.EICAR)

	d := startDaemon(t, fmt.Sprintf(`
watch %q {
  exclude = ["*.part", "cache/**"]
}
watch %q {
  action = "alert"
}
watch %q {
  recursive = false
}
`, up, filepath.Join(up, "logs"), filepath.Join(root, "flat")), "")

	tests := []struct {
		name    string
		path    string
		content string // "" means denied
	}{
		{"root of watch", filepath.Join(up, "eicar.com"), ""},
		{"five levels deep", filepath.Join(deep, "eicar.com"), ""},
		{"clean file byte-identical", filepath.Join(deep, "clean.txt"), clean},
		{"alert watch is longest prefix", filepath.Join(up, "logs", "eicar.log"), clamav.EICAR},
		{"exclude glob by name", filepath.Join(up, "x.part"), clamav.EICAR},
		{"exclude glob by dir", filepath.Join(up, "cache", "sub", "eicar"), clamav.EICAR},
		{"non-recursive root file", filepath.Join(root, "flat", "eicar"), ""},
		{"non-recursive subdirectory", filepath.Join(root, "flat", "sub", "eicar"), clamav.EICAR},
		{"outside every watch", filepath.Join(root, "outside", "eicar"), clamav.EICAR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.content == "" {
				wantDenied(t, tt.path)
			} else {
				wantContent(t, tt.path, tt.content)
			}
		})
	}

	recs := d.alerts(t, 4) // written after the answers, asynchronously
	var alerted, blocked int
	for _, r := range recs {
		switch r.Action {
		case "alerted":
			alerted++
			if r.Path != filepath.Join(up, "logs", "eicar.log") || r.Signature != clamav.EICARSignature {
				t.Errorf("alerted record: got path %q signature %q", r.Path, r.Signature)
			}
			if r.PID != int32(os.Getpid()) || r.Watch != filepath.Join(up, "logs") || r.Engine == "" || r.Exe == "" {
				t.Errorf("alerted record incomplete: %+v", r)
			}
		case "blocked":
			blocked++
		}
	}
	if alerted != 1 || blocked < 3 {
		t.Errorf("alert log: got %d alerted, %d blocked records, want 1 and >= 3: %+v", alerted, blocked, recs)
	}
}

func TestOverwriteAndNames(t *testing.T) {
	root := testutil.TempDir(t)
	names := []string{"with space", "new\nline", "bad\xff\xfeutf8", " ", "-dash"}
	// Directories are marked by the start-up walk (live tracking of new
	// directories is the dirtrace/inotify sources' job).
	for _, name := range names {
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")

	t.Run("clean file overwritten with EICAR", func(t *testing.T) {
		p := filepath.Join(root, "doc.txt")
		writeFile(t, p, clean)
		wantContent(t, p, clean)
		wantContent(t, p, clean) // cached now, in the kernel
		writeFile(t, p, clamav.EICAR)
		wantDenied(t, p)
	})
	t.Run("created after start", func(t *testing.T) {
		p := filepath.Join(root, "new.com")
		writeFile(t, p, clamav.EICAR)
		wantDenied(t, p)
	})
	for _, name := range names {
		t.Run(fmt.Sprintf("name %q", name), func(t *testing.T) {
			for _, p := range []string{filepath.Join(root, name+".f"), filepath.Join(root, name, name)} {
				writeFile(t, p, clamav.EICAR)
				writeFile(t, p+".ok", clean)
				wantDenied(t, p)
				wantContent(t, p+".ok", clean)
			}
		})
	}
}

// A clean file rewritten with EICAR through a shared mapping is scanned
// again once the writer lets it go: such a write raises no modification
// event, which would drop the kernel's ignore mark, and on tmpfs leaves
// the file's times as they were.
func TestMappedWriteRescanned(t *testing.T) {
	onEach(t, []filesystem{ext4, tmpfs}, func(t *testing.T, root string) {
		startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
		p := filepath.Join(root, "f")
		lookalike := strings.Repeat("x", len(clamav.EICAR))
		writeFile(t, p, lookalike)
		wantContent(t, p, lookalike)
		wantContent(t, p, lookalike) // cached now, in the kernel
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(f.Fd()), 0, len(lookalike), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		copy(m, clamav.EICAR)
		if err := unix.Munmap(m); err != nil {
			t.Fatal(err)
		}
		f.Close()
		waitDenied(t, "rewritten through a mapping", p, 2*time.Second)
	})
}

// A write that has stamped the file's times but not yet copied its data
// (its source a mapping of a file on FUSE, whose server holds the read)
// straddles the scan of an open: the scan sees the old, clean content
// under the key the file keeps once the write ends. That key must not
// pass the infected content, though the writer still holds the file.
func TestWriteAcrossScanNotTakenForClean(t *testing.T) {
	onEach(t, []filesystem{ext4, tmpfs}, func(t *testing.T, root string) {
		src := testutil.MountFUSE(t)
		src.AddFile(t, "eicar", []byte(clamav.EICAR))
		startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
		p := filepath.Join(root, "f")
		lookalike := strings.Repeat("x", len(clamav.EICAR))
		writeFile(t, p, lookalike)
		f, err := os.Open(filepath.Join(src.Dir, "eicar"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := unix.Mmap(int(f.Fd()), 0, len(clamav.EICAR), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		src.Hang(t, os.Getpid(), testutil.FUSERead)
		wrote := make(chan error, 1)
		go func() { _, err := unix.Pwrite(int(w.Fd()), m, 0); wrote <- err }()
		<-src.Held()
		// Past the 20 ms in which a verdict on tmpfs is not kept.
		time.Sleep(50 * time.Millisecond)
		wantContent(t, p, lookalike)
		src.Release(t)
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		wantDenied(t, p)
	})
}

// A clean file swapped at once for an infected one of its size, written
// outside the watch and moved in, is not taken for the clean one. On ext4
// it often gets the old inode number, and on kernels before 6.13 the old
// times too, stamped in one clock tick (under vmtest, about one trial in
// twenty): the inode generation tells them apart, and on overlayfs, which
// has none, the clean verdict is not kept so soon after a change.
func TestSwappedFileNotTakenForClean(t *testing.T) {
	onEach(t, []filesystem{ext4, overlayfs}, testSwappedFileNotTakenForClean)
}

func testSwappedFileNotTakenForClean(t *testing.T, root string) {
	w, outside := filepath.Join(root, "w"), filepath.Join(root, "outside")
	for _, d := range []string{w, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	startDaemon(t, fmt.Sprintf("watch %q {}\n", w), "")
	p, staged := filepath.Join(w, "f"), filepath.Join(outside, "f")
	lookalike := strings.Repeat("x", len(clamav.EICAR))
	for i := range 200 {
		writeFile(t, p, lookalike)
		wantContent(t, p, lookalike) // clean: cached
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		writeFile(t, staged, clamav.EICAR)
		if err := os.Rename(staged, p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.ReadFile(p); !errors.Is(err, unix.EPERM) {
			t.Fatalf("trial %d: read of the infected file moved in: got %v, want EPERM", i, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// An archive that holds EICAR is denied as EICAR is, nested too; a clean
// one is read.
func TestArchiveDenied(t *testing.T) {
	zipOf := func(name string, data []byte) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, err := zw.Create(name)
		if err == nil {
			_, err = w.Write(data)
		}
		if err == nil {
			err = zw.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	root := testutil.TempDir(t)
	once := zipOf("eicar.com", []byte(clamav.EICAR))
	writeFile(t, filepath.Join(root, "eicar_com.zip"), string(once))
	writeFile(t, filepath.Join(root, "eicarcom2.zip"), string(zipOf("eicar_com.zip", once)))
	cleanZip := string(zipOf("readme.txt", []byte(clean)))
	writeFile(t, filepath.Join(root, "clean.zip"), cleanZip)
	startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	wantDenied(t, filepath.Join(root, "eicar_com.zip"))
	wantDenied(t, filepath.Join(root, "eicarcom2.zip"))
	wantContent(t, filepath.Join(root, "clean.zip"), cleanZip)
}

// A watch on a symbolic link protects its target, which is the path the
// kernel reports.
func TestWatchThroughSymlink(t *testing.T) {
	root := testutil.TempDir(t)
	target := filepath.Join(root, "data", "www")
	link := filepath.Join(root, "www")
	writeFile(t, filepath.Join(target, "sub", "eicar.com"), clamav.EICAR)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, fmt.Sprintf("watch %q {}\n", link), "")
	wantDenied(t, filepath.Join(link, "sub", "eicar.com"))
	wantDenied(t, filepath.Join(target, "sub", "eicar.com"))
}

// A deploy re-points the link a watch is written on: the watch moves to
// the new target without a reload, and leaves the old one.
func TestWatchFollowsRepointedLink(t *testing.T) {
	root := testutil.TempDir(t)
	v1, v2 := filepath.Join(root, "releases", "v1"), filepath.Join(root, "releases", "v2")
	writeFile(t, filepath.Join(v1, "sub", "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(v2, "sub", "eicar"), clamav.EICAR)
	cur := filepath.Join(root, "current")
	if err := os.Symlink("releases/v1", cur); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", cur), "")
	wantDenied(t, filepath.Join(v1, "sub", "eicar"))
	wantContent(t, filepath.Join(v2, "sub", "eicar"), clamav.EICAR)

	// As ln -sfn does it: a new link renamed over the old one.
	tmp := filepath.Join(root, ".current.tmp")
	if err := os.Symlink("releases/v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cur); err != nil {
		t.Fatal(err)
	}
	d.waitLogLine(t, "watches moved", v2)
	wantDenied(t, filepath.Join(cur, "sub", "eicar"))
	wantContent(t, filepath.Join(v1, "sub", "eicar"), clamav.EICAR)

	// As a removal and a new link do it, back to the first release.
	if err := os.Remove(cur); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/v1", cur); err != nil {
		t.Fatal(err)
	}
	d.waitLogLine(t, "watches moved", v1)
	wantDenied(t, filepath.Join(v1, "sub", "eicar"))
	wantContent(t, filepath.Join(v2, "sub", "eicar"), clamav.EICAR)
}

func TestReload(t *testing.T) {
	root := testutil.TempDir(t)
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	writeFile(t, filepath.Join(a, "sub", "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(b, "sub", "eicar"), clamav.EICAR)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", a), "")
	wantDenied(t, filepath.Join(a, "sub", "eicar"))
	wantContent(t, filepath.Join(b, "sub", "eicar"), clamav.EICAR)

	// A valid new policy takes over: b is watched, a no longer is.
	d.reload(t, fmt.Sprintf("watch %q {}\n", b))
	d.waitLog(t, "reloaded")
	wantDenied(t, filepath.Join(b, "sub", "eicar"))
	wantContent(t, filepath.Join(a, "sub", "eicar"), clamav.EICAR)

	// A broken one is reported, and the old one stays in force.
	d.reload(t, fmt.Sprintf("watch %q {\n  action = \"explode\"\n}\n", a))
	d.waitLog(t, "reload failed")
	wantDenied(t, filepath.Join(b, "sub", "eicar"))
	wantContent(t, filepath.Join(a, "sub", "eicar"), clamav.EICAR)
	if !strings.Contains(d.log(), "explode") {
		t.Errorf("daemon log does not show the policy error:\n%s", d.log())
	}
	if st := statusJSON(t, d); st["ready"] != true {
		t.Errorf("after a failed reload: ready = %v", st["ready"])
	}
}

func TestExecDenied(t *testing.T) {
	root := testutil.TempDir(t)
	db := testutil.TempDir(t)
	evil := filepath.Join(root, "bin", "evil")
	good := filepath.Join(root, "bin", "good")
	trueBin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skipf("no /bin/true to copy: %v", err)
	}
	// A new ELF with a hash signature: /bin/true plus one byte.
	evilBin := append(trueBin, 0)
	writeFile(t, evil, string(evilBin))
	writeFile(t, good, string(trueBin))
	os.Chmod(evil, 0o755)
	os.Chmod(good, 0o755)
	writeFile(t, filepath.Join(db, "test.hdb"), fmt.Sprintf("%x:%d:Test.ELF.Evil\n", md5sum(evilBin), len(evilBin)))

	startDaemon(t, fmt.Sprintf("watch %q {\n  on = [\"exec\"]\n}\n", root),
		fmt.Sprintf("engine \"builtin\" {\n  databases = [%q]\n}\n", db))

	err = exec.Command(evil).Run()
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		t.Errorf("exec infected ELF: got %v, want EPERM", err)
	}
	if err := exec.Command(good).Run(); err != nil {
		t.Errorf("exec clean ELF: %v", err)
	}
	// on = ["exec"]: reading it is not intercepted.
	if _, err := os.ReadFile(evil); err != nil {
		t.Errorf("read infected ELF in an exec-only watch: %v", err)
	}
}

// An exec of an infected file in an alert watch runs, and is alerted
// once: the kernel asks twice (FAN_OPEN_EXEC_PERM, then FAN_OPEN_PERM).
func TestExecAlertedOnce(t *testing.T) {
	root := testutil.TempDir(t)
	db := testutil.TempDir(t)
	evil := filepath.Join(root, "evil")
	trueBin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skipf("no /bin/true to copy: %v", err)
	}
	evilBin := append(trueBin, 0)
	writeFile(t, evil, string(evilBin))
	os.Chmod(evil, 0o755)
	writeFile(t, filepath.Join(db, "test.hdb"), fmt.Sprintf("%x:%d:Test.ELF.Evil\n", md5sum(evilBin), len(evilBin)))
	d := startDaemon(t, fmt.Sprintf("watch %q {\n  action = \"alert\"\n}\n", root),
		fmt.Sprintf("engine \"builtin\" {\n  databases = [%q]\n}\n", db))

	if err := exec.Command(evil).Run(); err != nil {
		t.Fatalf("exec infected ELF in an alert watch: %v", err)
	}
	d.alerts(t, 1)
	time.Sleep(200 * time.Millisecond) // a second alert would be written by now
	if recs := readAlerts(t, d.alertLog); len(recs) != 1 || recs[0].Action != "alerted" {
		t.Errorf("alerts for one exec: got %+v, want one alerted", recs)
	}
}

// A program exclude is that program: tac, excluded, reads EICAR; cat does
// not, nor does cat bind mounted over tac's path in a user and mount
// namespace of an unprivileged user, where /proc/PID/exe names it tac.
func TestExcludedProgramIsThatFile(t *testing.T) {
	const tac = "/usr/bin/tac"
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skipf("no cat: %v", err)
	}
	if _, err := os.Stat(tac); err != nil {
		t.Skipf("no %s to exclude: %v", tac, err)
	}
	nobody := func(script string) *exec.Cmd {
		return exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
			"unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script)
	}
	if out, err := nobody("true").CombinedOutput(); err != nil {
		t.Skipf("no user namespace for nobody here: %v %s", err, out)
	}
	root := testutil.TempDir(t)
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "eicar")
	writeFile(t, p, clamav.EICAR)
	startDaemon(t, fmt.Sprintf("watch %q {}\nexclude {\n  programs = [%q]\n}\n", root, tac), "")

	if out, err := exec.Command(tac, p).CombinedOutput(); err != nil {
		t.Errorf("%s, excluded: %v %s", tac, err, out)
	}
	if out, err := exec.Command(cat, p).CombinedOutput(); err == nil {
		t.Errorf("cat read EICAR: %q", out)
	}
	out, err := nobody(fmt.Sprintf("mount --bind %s %s && exec %s %s", cat, tac, tac, p)).CombinedOutput()
	if err == nil || strings.Contains(string(out), "EICAR") {
		t.Errorf("cat bind mounted over %s in nobody's namespace: got %v %q, want EPERM", tac, err, out)
	}
}

func TestFIFODoesNotHang(t *testing.T) {
	root := testutil.TempDir(t)
	fifo := filepath.Join(root, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")

	done := make(chan error, 2)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString("through the pipe")
			f.Close()
		}
		done <- err
	}()
	go func() {
		b, err := os.ReadFile(fifo)
		if err == nil && string(b) != "through the pipe" {
			err = fmt.Errorf("got %q", b)
		}
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("fifo: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("fifo open or read hung for 5s")
		}
	}
}

// An event whose file is on a hung filesystem (NFS, FUSE) waits for that
// filesystem, not the opens elsewhere: the kernel opens the event's file
// inside the daemon's read(2), and a read that lasts loses the reading.
func TestHungFilesystemDoesNotStallOthers(t *testing.T) {
	plain := testutil.TempDir(t)
	writeFile(t, filepath.Join(plain, "clean.txt"), clean)
	fs := testutil.MountFUSE(t)
	fs.AddFile(t, "slow.txt", []byte(clean))
	d := startDaemon(t, fmt.Sprintf("watch %q {}\nwatch %q {}\n", plain, fs.Dir), "")
	slow := heldOpen(t, d, fs, "slow.txt")
	other := make(chan error, 1)
	go func() {
		b, err := os.ReadFile(filepath.Join(plain, "clean.txt"))
		if err == nil && string(b) != clean {
			err = fmt.Errorf("got %q", b)
		}
		other <- err
	}()
	select {
	case err := <-other:
		if err != nil {
			t.Errorf("open elsewhere: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an open elsewhere waited for the hung filesystem")
	}

	fs.Release(t)
	select {
	case err := <-slow:
		if err != nil {
			t.Errorf("read on FUSE once it answered: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("open on FUSE not answered once the filesystem answered")
	}
}

// heldOpen reads name on fs after making fs hold the daemon's opens, and
// returns once the daemon's read(2) of the event waits on FUSE: the
// read's outcome comes on the channel.
func heldOpen(t *testing.T, d *daemonProc, fs *testutil.FUSE, name string) <-chan error {
	t.Helper()
	fs.Hang(t, d.cmd.Process.Pid, testutil.FUSEOpen)
	read := readAsync(filepath.Join(fs.Dir, name))
	select {
	case <-fs.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not open the file on FUSE")
	}
	return read
}

// A directory walk stuck on a hung filesystem is left behind: directories
// made elsewhere are still marked, and an infected file in one denied.
func TestHungFilesystemDoesNotStallMarking(t *testing.T) {
	plain := testutil.TempDir(t)
	fs := testutil.MountFUSE(t)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\nwatch %q {}\n", plain, fs.Dir), "")
	fs.Hang(t, d.cmd.Process.Pid)

	// Made by the test, which FUSE still serves: the daemon's look at the
	// new directory waits on FUSE.
	if err := os.Mkdir(filepath.Join(fs.Dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fs.Held():
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not look at the directory made on FUSE")
	}
	infected := filepath.Join(plain, "new", "eicar.com")
	writeFile(t, infected, clamav.EICAR)
	waitDenied(t, "while a walk is stuck on FUSE", infected, 20*time.Second)
	if got := counters(t, d)["walks_stalled"]; got != float64(1) {
		t.Errorf("status counter walks_stalled: got %v, want 1", got)
	}

	fs.Release(t)
	d.waitLog(t, "stalled directory walk ended")
	waitCounter(t, d, "walks_stalled", 0)
	waitCounter(t, d, "walk_stalls", 1)
}

// A hung filesystem mounted in a watch, and watched itself, at start:
// vigil becomes ready once the walk there is left behind (its path
// resolved by then or not), with the rest of the watch marked, and marks
// the mount too once it answers.
func TestHungFilesystemAtStart(t *testing.T) {
	root := testutil.TempDir(t)
	deep := filepath.Join(root, "a", "b", "eicar.com")
	writeFile(t, deep, clamav.EICAR)
	mnt := filepath.Join(root, "m")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fs := testutil.MountFUSEAt(t, mnt)
	fs.AddFile(t, "eicar.com", []byte(clamav.EICAR))
	fs.HangOthers(t)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\nwatch %q {}\n", root, mnt), "")
	d.waitLogLine(t, "watch path kept as written", mnt)
	d.waitLogLine(t, "directory walk stalled", mnt)
	d.waitLog(t, "watches placed in part")
	wantDenied(t, deep)

	fs.Release(t)
	waitDenied(t, "once FUSE answers", filepath.Join(mnt, "eicar.com"), 10*time.Second)
	d.waitLog(t, "stalled directory walk ended")
}

// A watch written on a link into a filesystem that does not answer at
// start keeps its path as written, which the kernel never reports: once
// the filesystem answers, the watch moves to the link's target, as it
// does when a link is re-pointed, and its files are scanned.
func TestHungFilesystemAtStartThroughLink(t *testing.T) {
	fs := testutil.MountFUSE(t)
	fs.AddFile(t, "eicar.com", []byte(clamav.EICAR))
	link := filepath.Join(testutil.TempDir(t), "current")
	if err := os.Symlink(fs.Dir, link); err != nil {
		t.Fatal(err)
	}
	fs.HangOthers(t)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", link), "")
	d.waitLogLine(t, "watch path kept as written", link)

	fs.Release(t)
	d.waitLogLine(t, "watches moved", fs.Dir)
	wantDenied(t, filepath.Join(link, "eicar.com"))
}

// A filesystem-mode watch on a hung filesystem at start: vigil becomes
// ready with the other watches in force, and marks that filesystem once
// it answers. The mark checks that vigil may read the filesystem's root,
// which on NFS, and here, asks the server. A reload meanwhile closes the
// old group at once: a mark waiting inside it would keep it open, its
// events unanswered, and opens under its other marks waiting with them.
func TestHungFilesystemAtStartFilesystemMode(t *testing.T) {
	other := testutil.MountTmpfs(t)
	eicar := filepath.Join(other, "eicar.com")
	writeFile(t, eicar, clamav.EICAR)
	fs := testutil.MountFUSEChecking(t)
	fs.AddFile(t, "eicar.com", []byte(clamav.EICAR))
	fs.HangOthers(t)
	watches := fmt.Sprintf("watch %q {\n  mode = \"filesystem\"\n}\nwatch %q {\n  mode = \"filesystem\"\n}\n", other, fs.Dir)
	d := startDaemon(t, watches, "")
	const waiting = "filesystem marks wait on filesystems that do not answer"
	d.waitLogLine(t, waiting, fs.Dir)
	wantDenied(t, eicar)

	d.reload(t, watches)
	for end := time.Now().Add(30 * time.Second); strings.Count(d.log(), waiting) < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the reload's marks did not wait on the hung filesystem within 30s:\n%s", d.log())
		}
	}
	d.waitLog(t, "reloaded")
	read := readAsync(eicar)
	select {
	case err := <-read:
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("read %s after the reload: %v, want EPERM", eicar, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an open waited 5s on the group the reload retired") // released with FUSE at cleanup
	}

	fs.Release(t)
	d.waitLogLine(t, "filesystem marked once it answered", fs.Dir)
	wantDenied(t, filepath.Join(fs.Dir, "eicar.com"))
}

// waitDenied reads path until it gets EPERM, for up to within: a
// directory being marked.
func waitDenied(t *testing.T, what, path string, within time.Duration) {
	t.Helper()
	for end := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		_, err := os.ReadFile(path)
		if errors.Is(err, unix.EPERM) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("read %s %s: got %v for %v, want EPERM", path, what, err, within)
		}
	}
}

// SIGTERM while the daemon's read of events waits on a hung filesystem:
// vigil exits 0 within its stop timeout rather than wait for the
// filesystem, and the open held with it then returns (denied by the
// kernel when the exit interrupts the daemon's open of the event's file).
func TestStopWhileReadHangs(t *testing.T) {
	fs := testutil.MountFUSE(t)
	fs.AddFile(t, "slow.txt", []byte(clean))
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", fs.Dir), "")
	slow := heldOpen(t, d, fs, "slow.txt")

	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon still running 20s after SIGTERM with a read waiting on FUSE")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	// The signal may land on the reading thread and interrupt the open.
	t.Logf("exited %v after SIGTERM; stopped in time: %v", time.Since(start).Round(time.Millisecond),
		!strings.Contains(d.log(), "vigil did not stop in time"))
	select {
	case err := <-slow:
		if err != nil && !errors.Is(err, unix.EPERM) {
			t.Errorf("read on FUSE once the daemon exited: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("open on FUSE still held 10s after the daemon exited")
	}
}

func TestKillReleasesBlockedOpens(t *testing.T) {
	root := testutil.TempDir(t)
	p := filepath.Join(root, "file")
	writeFile(t, p, clean)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")

	// A stopped daemon cannot answer: the open waits in the kernel.
	testutil.Stop(t, d.cmd.Process.Pid)
	killReleases(t, d, p)
	// And new opens pass at once.
	wantContent(t, p, clean)
}

// readAsync reads path on a goroutine of its own, for a read that may
// wait on the daemon or on a hung filesystem, and sends its error.
func readAsync(path string) <-chan error {
	read := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(path)
		read <- err
	}()
	return read
}

// killReleases opens path, which must block (the daemon cannot answer),
// then SIGKILLs the daemon: the open must return, successfully, as the
// kernel allows what a closed group left pending (within 5 s: the exit
// of a process is slow on a kernel under TCG).
func killReleases(t *testing.T, d *daemonProc, path string) {
	t.Helper()
	opened := readAsync(path)
	select {
	case err := <-opened:
		t.Fatalf("open of %s returned while the daemon could not answer (%v)", path, err)
	case <-time.After(300 * time.Millisecond):
	}
	d.kill()
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("open after SIGKILL: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("open still blocked 5s after SIGKILL of the daemon")
	}
}

func TestStatus(t *testing.T) {
	root := testutil.TempDir(t)
	writeFile(t, filepath.Join(root, "a", "b", "f"), clean)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")

	st := statusJSON(t, d)
	if st["ready"] != true {
		t.Errorf("status ready: got %v, want true", st["ready"])
	}
	if st["policy"] != d.policy {
		t.Errorf("status policy: got %v, want %s", st["policy"], d.policy)
	}
	if got := st["watched_dirs"]; got != float64(3) {
		t.Errorf("watched_dirs: got %v, want 3", got)
	}
	if r, _ := st["db_report"].(string); !strings.Contains(r, "builtin db") {
		t.Errorf("db_report: got %q, want the built-in engine's load report", r)
	}
	// How long the start took, from exec: what an operator compares
	// across restarts and kernels.
	d.waitLogLine(t, "vigil ready", "startup=")

	// Re-opening an unchanged clean file costs no event at all: the
	// kernel's ignore mark answers.
	f := filepath.Join(root, "a", "b", "f")
	wantContent(t, f, clean)
	before := counters(t, d)
	for range 5 {
		wantContent(t, f, clean)
	}
	after := counters(t, d)
	if after["events"] != before["events"] {
		t.Errorf("re-opens of a clean file reached user space: events %v -> %v", before["events"], after["events"])
	}

	out, err := exec.Command(vigilBin, "status", "--socket", d.socket).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ready") {
		t.Errorf("vigil status: %v\n%s", err, out)
	}
	d.stop(t)
	err = exec.Command(vigilBin, "status", "--socket", d.socket).Run()
	if code := exitCode(err); code == 0 {
		t.Errorf("vigil status with the daemon stopped: exit %d, want non-zero", code)
	}
}

func statusJSON(t *testing.T, d *daemonProc) map[string]any {
	t.Helper()
	out, err := exec.Command(vigilBin, "status", "--json", "--socket", d.socket).Output()
	if err != nil {
		t.Fatalf("vigil status --json: %v", err)
	}
	var st map[string]any
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("vigil status --json: %v\n%s", err, out)
	}
	return st
}

func counters(t *testing.T, d *daemonProc) map[string]any {
	c, ok := statusJSON(t, d)["counters"].(map[string]any)
	if !ok {
		t.Fatal("status has no counters")
	}
	return c
}

// waitCounter waits up to 5s for the status counter name to read want.
func waitCounter(t *testing.T, d *daemonProc, name string, want float64) {
	t.Helper()
	var got any
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if got = counters(t, d)[name]; got == want {
			return
		}
	}
	t.Fatalf("status counter %s: got %v, want %v after 5s", name, got, want)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// logrotate renames the alert log and sends SIGUSR1: later alerts go to
// the new file.
func TestAlertLogRotation(t *testing.T) {
	root := testutil.TempDir(t)
	writeFile(t, filepath.Join(root, "one"), clamav.EICAR)
	writeFile(t, filepath.Join(root, "two"), clamav.EICAR)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	wantDenied(t, filepath.Join(root, "one"))
	if recs := d.alerts(t, 1); len(recs) != 1 {
		t.Fatalf("alerts before rotation: got %d, want 1", len(recs))
	}
	if err := os.Rename(d.alertLog, d.alertLog+".1"); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "alert log reopened")
	wantDenied(t, filepath.Join(root, "two"))
	recs := d.alerts(t, 1)
	if len(recs) != 1 || recs[0].Path != filepath.Join(root, "two") {
		t.Errorf("alerts after rotation: got %+v, want the block of %s", recs, filepath.Join(root, "two"))
	}
}
