package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/testutil"
)

func TestMetrics(t *testing.T) {
	root := testutil.TempDir(t)
	writeFile(t, filepath.Join(root, "a", "eicar"), clamav.EICAR)
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", `  metrics_listen = "127.0.0.1:0"`)
	wantDenied(t, filepath.Join(root, "a", "eicar"))
	// The open fails as the kernel gets the answer; the counters follow it.
	waitCounter(t, d, "blocked", 1)

	families := metricFamilies(t, d)
	value := func(name string) float64 {
		f := families[name]
		if f == nil || len(f.Metric) == 0 {
			t.Errorf("metric %s missing", name)
			return -1
		}
		m := f.Metric[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
		return -1
	}
	tests := []struct {
		name string
		want float64
	}{
		{"vigil_blocked_total", 1},
		{"vigil_watched_dirs", 2},
		{"vigil_ready", 1},
	}
	for _, tt := range tests {
		if got := value(tt.name); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	if f := families["vigil_hook_info"]; f == nil {
		t.Errorf("vigil_hook_info missing")
	}

	// The same over HTTP on loopback.
	d.waitLog(t, "serving metrics")
	m := regexp.MustCompile(`serving metrics: addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(d.log())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", d.log())
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "vigil_blocked_total 1") {
		t.Errorf("GET /metrics: %s\n%s", resp.Status, body)
	}
}

// metricFamilies runs vigil metrics against d and parses what it prints.
func metricFamilies(t *testing.T, d *daemonProc) map[string]*dto.MetricFamily {
	t.Helper()
	var out bytes.Buffer
	if code := run([]string{"metrics", "--socket", d.socket}, &out, io.Discard); code != 0 {
		t.Fatalf("vigil metrics: exit %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatalf("parse metrics: %v\n%s", err, out.String())
	}
	return families
}

// vigil reload waits for the outcome: 0 when the new policy is in force,
// 1 when it was refused and the old one stays.
func TestReloadCommand(t *testing.T) {
	root := testutil.TempDir(t)
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	writeFile(t, filepath.Join(a, "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(b, "eicar"), clamav.EICAR)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", a), "")

	writeFile(t, d.policy, d.settings+fmt.Sprintf("watch %q {}\n", b))
	if code, stdout, stderr := runCLI("reload", "--socket", d.socket); code != 0 {
		t.Fatalf("vigil reload: exit %d\n%s%s", code, stdout, stderr)
	}
	wantDenied(t, filepath.Join(b, "eicar")) // no waiting: the reload is done
	wantContent(t, filepath.Join(a, "eicar"), clamav.EICAR)

	writeFile(t, d.policy, d.settings+"watch \"relative\" {}\n")
	code, _, stderr := runCLI("reload", "--socket", d.socket)
	if code != 1 || !strings.Contains(stderr, "previous policy stays in force") {
		t.Errorf("vigil reload of a broken policy: exit %d, stderr %q; want 1", code, stderr)
	}
	// The daemon sends the policy's diagnostics back with its refusal.
	at := fmt.Sprintf("%s:%d,7: Error: ", d.policy, strings.Count(d.settings, "\n")+1)
	if !strings.Contains(stderr, at) || !strings.Contains(stderr, "relative") {
		t.Errorf("vigil reload of a broken policy: stderr lacks the diagnostic at %q:\n%s", at, stderr)
	}
	wantDenied(t, filepath.Join(b, "eicar"))
}

// A hung engine (clamd stopped) costs each open at most scan_timeout,
// then the watch's on_error decides.
func TestEngineHangUsesOnError(t *testing.T) {
	clamd := testutil.StartClamd(t, fmt.Sprintf("%x:%d:Test.EICAR\n", md5sum([]byte(clamav.EICAR)), len(clamav.EICAR)))
	root := testutil.TempDir(t)
	strict, lax := filepath.Join(root, "strict"), filepath.Join(root, "lax")
	writeFile(t, filepath.Join(strict, "f"), clean)
	writeFile(t, filepath.Join(lax, "f"), clean)
	writeFile(t, filepath.Join(strict, "eicar"), clamav.EICAR)
	writeFile(t, filepath.Join(strict, "empty"), "") // holds nothing to find: no scan
	d := startDaemonWith(t,
		fmt.Sprintf("watch %q {\n  on_error = \"deny\"\n}\nwatch %q {\n  on_error = \"allow\"\n}\n", strict, lax),
		fmt.Sprintf("engine \"clamd\" {\n  address = %q\n}\n", clamd.Unix),
		`  scan_timeout = "1s"`)

	wantDenied(t, filepath.Join(strict, "eicar")) // clamd answers while it runs
	testutil.Stop(t, clamd.Cmd.Process.Pid)
	defer clamd.Cmd.Process.Signal(syscall.SIGCONT)
	for _, tt := range []struct {
		path      string
		wantAllow bool
	}{{filepath.Join(strict, "f"), false}, {filepath.Join(lax, "f"), true}, {filepath.Join(strict, "empty"), true}} {
		start := time.Now()
		_, err := os.ReadFile(tt.path)
		elapsed := time.Since(start)
		if tt.wantAllow && err != nil || !tt.wantAllow && !errors.Is(err, unix.EPERM) {
			t.Errorf("%s with clamd stopped: got %v, want allow=%v", tt.path, err, tt.wantAllow)
		}
		// The bound is the deadline, not a speed target: 1s plus slack.
		if elapsed > 3*time.Second {
			t.Errorf("%s: answered after %v, want about scan_timeout (1s)", tt.path, elapsed)
		}
	}
	// Once clamd fails PING too, opens fail at once without asking it,
	// until it answers again.
	d.waitLog(t, "clamd does not answer PING")
	f := filepath.Join(strict, "f")
	if _, err := os.ReadFile(f); !errors.Is(err, unix.EPERM) {
		t.Errorf("%s with clamd down: got %v, want EPERM (on_error deny)", f, err)
	}
	// Blocked eicar, strict/f and lax/f at their deadline, strict/f now.
	if recs := d.alerts(t, 4); len(recs) != 4 || !strings.Contains(recs[len(recs)-1].Error, "clamd not answering: no PONG since") {
		t.Errorf("alerts with clamd down: %+v, want 4, the last saying clamd does not answer", recs)
	}
	wantEngineUp(t, d, false)
	clamd.Cmd.Process.Signal(syscall.SIGCONT)
	d.waitLog(t, "clamd answers again")
	if _, err := os.ReadFile(f); err != nil {
		t.Errorf("%s once clamd answers again: %v, want it scanned and allowed", f, err)
	}
	wantEngineUp(t, d, true)
}

// A reload closes the engine it replaces: a clamd engine's pooled
// sessions and its health check, which pings a clamd that does not answer
// every second until it does, are not left behind.
func TestReloadClosesEngine(t *testing.T) {
	clamd := testutil.StartClamd(t, fmt.Sprintf("%x:%d:Test.EICAR\n", md5sum([]byte(clamav.EICAR)), len(clamav.EICAR)))
	root := testutil.TempDir(t)
	f := filepath.Join(root, "f")
	writeFile(t, f, clean)
	watches := fmt.Sprintf("watch %q {}\n", root)
	d := startDaemonWith(t, watches, fmt.Sprintf("engine \"clamd\" {\n  address = %q\n}\n", clamd.Unix), `  scan_timeout = "1s"`)

	testutil.Stop(t, clamd.Cmd.Process.Pid)
	defer clamd.Cmd.Process.Signal(syscall.SIGCONT)
	os.ReadFile(f) // times out: the health check starts
	d.waitLog(t, "clamd does not answer PING")
	d.reload(t, watches)
	d.waitLog(t, "reloaded")
	if got := statusJSON(t, d)["engine"]; got != "builtin" {
		t.Fatalf("engine after the reload: %v, want builtin", got)
	}
	clamd.Cmd.Process.Signal(syscall.SIGCONT)
	// The check pings every second: three of them would have heard PONG.
	time.Sleep(3 * time.Second)
	if strings.Contains(d.log(), "clamd answers again") {
		t.Errorf("the replaced clamd engine still checks clamd's health after the reload:\n%s", d.log())
	}
}

// wantEngineUp checks what vigil status and vigil metrics say of the
// engine's health.
func wantEngineUp(t *testing.T, d *daemonProc, up bool) {
	t.Helper()
	msg, _ := statusJSON(t, d)["engine_error"].(string)
	if up != (msg == "") || !up && !strings.Contains(msg, "clamd not answering") {
		t.Errorf("status engine_error %q, want it to say clamd is not answering: %v", msg, !up)
	}
	fam := metricFamilies(t, d)["vigil_engine_up"]
	if fam == nil || len(fam.Metric) != 1 {
		t.Fatalf("vigil_engine_up: %v, want one gauge", fam)
	}
	if got, want := fam.Metric[0].GetGauge().GetValue(), map[bool]float64{false: 0, true: 1}[up]; got != want {
		t.Errorf("vigil_engine_up: %v, want %v", got, want)
	}
}

// SIGKILL of vigil in the middle of a scan (clamd stopped) releases the
// waiting open at once.
func TestKillMidScan(t *testing.T) {
	d, f := hungClamdDaemon(t)
	killReleases(t, d, f)
}

// hungClamdDaemon starts a daemon watching a directory that holds the
// clean file f, with a clamd engine and a scan_timeout of 60s, then stops
// clamd (SIGSTOP; SIGCONT at cleanup): a scan of f waits for it.
func hungClamdDaemon(t *testing.T) (d *daemonProc, f string) {
	t.Helper()
	clamd := testutil.StartClamd(t, fmt.Sprintf("%x:%d:Test.EICAR\n", md5sum([]byte(clamav.EICAR)), len(clamav.EICAR)))
	root := testutil.TempDir(t)
	f = filepath.Join(root, "f")
	writeFile(t, f, clean)
	d = startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root),
		fmt.Sprintf("engine \"clamd\" {\n  address = %q\n}\n", clamd.Unix), `  scan_timeout = "60s"`)
	testutil.Stop(t, clamd.Cmd.Process.Pid)
	t.Cleanup(func() { clamd.Cmd.Process.Signal(syscall.SIGCONT) })
	return d, f
}

// stormEnv makes the test binary an opener process (see TestMain).
const stormEnv = "VIGIL_TEST_STORM_DIR"

// stormOpener rewrites and reads back every file of its directory,
// rounds times: each open is a permission event and, the file having
// changed, a scan. It exits 1 at the first failure.
func stormOpener(dir string, rounds int) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for r := range rounds {
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			want := fmt.Sprintf("%s round %d\n", e.Name(), r)
			if err := os.WriteFile(p, []byte(want), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "write:", err)
				return 1
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != want {
				fmt.Fprintf(os.Stderr, "read %s: %q, %v\n", p, got, err)
				return 1
			}
		}
	}
	return 0
}

// A storm of concurrent opens from several processes: no clean open
// fails, and every event got exactly one answer (the counters agree).
func TestStorm(t *testing.T) {
	// 8,000 opens: small enough for a slow kernel under TCG to finish
	// well inside the daemon's deadline (40,000 took over two minutes).
	const procs, files, rounds = 4, 250, 4
	root := testutil.TempDir(t)
	for p := range procs {
		for f := range files {
			writeFile(t, filepath.Join(root, fmt.Sprint(p), fmt.Sprint(f)), clean)
		}
	}
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	before := counters(t, d)

	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), stormEnv+"="+filepath.Join(root, fmt.Sprint(p)), fmt.Sprintf("VIGIL_TEST_STORM_ROUNDS=%d", rounds))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("opener %d: %v", i, err)
		}
	}
	after := counters(t, d)
	delta := func(name string) float64 { return after[name].(float64) - before[name].(float64) }
	events := delta("events")
	if events < procs*files*rounds {
		t.Errorf("events: got %v, want at least %d (one per read open)", events, procs*files*rounds)
	}
	if answered := delta("allowed") + delta("denied"); answered != events {
		t.Errorf("answers: allowed+denied = %v, events = %v: every event needs exactly one", answered, events)
	}
	for _, name := range []string{"denied", "errors", "timeouts", "queue_full", "respond_errors"} {
		if n := delta(name); n != 0 {
			t.Errorf("%s: got %v during the storm, want 0", name, n)
		}
	}
	t.Logf("storm: %v events, %v scans", events, delta("scans"))
}

// Once running, vigil keeps only the capabilities it needs, and reload
// still works with them.
func TestCapabilitiesDropped(t *testing.T) {
	root := testutil.TempDir(t)
	writeFile(t, filepath.Join(root, "eicar"), clamav.EICAR)
	d := startDaemon(t, fmt.Sprintf("watch %q {}\n", root), "")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	capField := func(status []byte, field string) uint64 {
		m := regexp.MustCompile(field + `:\s+([0-9a-f]+)`).FindSubmatch(status)
		if m == nil {
			t.Fatalf("no %s in /proc/PID/status", field)
		}
		var v uint64
		fmt.Sscanf(string(m[1]), "%x", &v)
		return v
	}
	own, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	// What vigil keeps, of what it was given (a sandbox may lack some).
	want := uint64(1)<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_BPF | 1<<unix.CAP_PERFMON |
		1<<unix.CAP_DAC_READ_SEARCH | 1<<unix.CAP_SYS_PTRACE
	for _, field := range []string{"CapEff", "CapPrm"} {
		if got := capField(status, field); got != want&capField(own, field) {
			t.Errorf("%s: got %#x, want %#x", field, got, want&capField(own, field))
		}
	}
	if got := capField(status, "CapBnd"); got&^want != 0 {
		t.Errorf("CapBnd: got %#x, want no more than %#x", got, want)
	}
	if code, _, stderr := runCLI("reload", "--socket", d.socket); code != 0 {
		t.Errorf("reload with the reduced capabilities: exit %d: %s\n%s", code, stderr, d.log())
	}
	wantDenied(t, filepath.Join(root, "eicar"))
}

// With --log-format json every line the daemon writes is a JSON record,
// and a policy's diagnostics are records with where and what: at start,
// at SIGHUP and at vigil reload.
func TestJSONLogDiagnostics(t *testing.T) {
	bad := "watch \"/srv\" {\n  colour = \"red\"\n}\n"
	// diagnostic finds the record of the diagnostic on bad's line 2, and
	// checks that the whole log is JSON.
	diagnostic := func(t *testing.T, log, file string, line int) {
		t.Helper()
		found := false
		for l := range strings.Lines(log) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Errorf("log line is not JSON: %q", l)
				continue
			}
			if rec["file"] == file && rec["line"] == float64(line) && rec["col"] == 3.0 &&
				rec["severity"] == "error" && rec["summary"] == "Unsupported argument" && rec["@level"] == "error" {
				found = true
			}
		}
		if !found {
			t.Errorf("no record of the diagnostic at %s:%d,3 in the log:\n%s", file, line, log)
		}
	}

	t.Run("start", func(t *testing.T) {
		pol := filepath.Join(t.TempDir(), "bad.hcl")
		writeFile(t, pol, bad)
		cmd := exec.Command(vigilBin, "run", "--policy", pol, "--log-format", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if code := exitCode(cmd.Run()); code != 1 {
			t.Errorf("vigil run on a broken policy: exit %d, want 1", code)
		}
		diagnostic(t, stderr.String(), pol, 2)
	})

	t.Run("reload", func(t *testing.T) {
		root := testutil.TempDir(t)
		d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", "", "--log-format", "json")
		line := strings.Count(d.settings, "\n") + 2

		d.reload(t, bad) // SIGHUP
		d.waitLogLine(t, `"@message":"reload failed`)
		diagnostic(t, d.log(), d.policy, line)

		writeFile(t, d.policy, d.settings+"\n"+bad) // one line further down
		if code, _, stderr := runCLI("reload", "--socket", d.socket); code != 1 {
			t.Errorf("vigil reload of a broken policy: exit %d, want 1\n%s", code, stderr)
		}
		// Logged before the answer, but read from the daemon's pipe after.
		d.waitLogLine(t, `"summary":"Unsupported argument"`, fmt.Sprintf(`"line":%d,`, line+1))
		diagnostic(t, d.log(), d.policy, line+1)
	})
}

// SIGTERM while the start-up walk places the watches is a stop like any
// other: exit 0, not the exit 1 of a daemon that could not start.
func TestStopDuringStartupWalk(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	root := testutil.TempDir(t)
	for i := range 100 { // a walk of some 30,000 directories: 0.1-0.3 s
		for j := range 300 {
			if err := os.MkdirAll(filepath.Join(root, strconv.Itoa(i), strconv.Itoa(j)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := t.TempDir()
	pol := filepath.Join(state, "policy.hcl")
	writeFile(t, pol, fmt.Sprintf("settings {\n  control_socket = %q\n  alert_log = %q\n}\nwatch %q {}\n",
		filepath.Join(state, "vigil.sock"), filepath.Join(state, "alerts.jsonl"), root))
	// The walk starts right after the directory sources are up; a signal
	// that lands after it ended proves nothing: try again.
	for try := range 5 {
		stderr := new(testutil.SyncBuffer)
		logged := (&daemonProc{stderr: stderr}).log
		cmd := exec.Command(vigilBin, "run", "--policy", pol)
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		testutil.Deadline(t, time.Minute, func() { cmd.Process.Kill() })
		for end := time.Now().Add(20 * time.Second); !strings.Contains(logged(), "directory events"); time.Sleep(time.Millisecond) {
			if time.Now().After(end) {
				cmd.Process.Kill()
				t.Fatalf("no directory sources after 20s:\n%s", logged())
			}
		}
		cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("vigil ignored SIGTERM during start-up for 15s:\n%s", logged())
		}
		log := logged()
		if strings.Contains(log, "watches placed") {
			t.Logf("try %d: the walk ended before the signal", try)
			continue
		}
		if code := exitCode(err); code != 0 {
			t.Fatalf("SIGTERM during the start-up walk: exit %d, want 0\n%s", code, log)
		}
		return
	}
	t.Skip("the walk always ended before the signal")
}

// SIGTERM during a storm of scans: every event read before the group
// closes gets its verdict, not on_error's. With on_error = "deny", a
// stop used to deny the clean files being opened while it ran (and
// alert "context canceled" for each).
func TestStopDuringStorm(t *testing.T) {
	const procs, files, rounds = 4, 500, 1000 // far more than the stop needs
	root := testutil.TempDir(t)
	for p := range procs {
		for f := range files {
			writeFile(t, filepath.Join(root, fmt.Sprint(p), fmt.Sprint(f)), clean)
		}
	}
	d := startDaemonWith(t, fmt.Sprintf("watch %q {}\n", root), "", `  on_error = "deny"`)
	var cmds []*exec.Cmd
	var stderr testutil.SyncBuffer
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), stormEnv+"="+filepath.Join(root, fmt.Sprint(p)), fmt.Sprintf("VIGIL_TEST_STORM_ROUNDS=%d", rounds))
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		cmds = append(cmds, cmd)
	}
	// Wait for the storm to be on, however slow the machine (a kernel
	// under TCG scanned fewer than 200 files a second).
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, _ := counters(t, d)["scans"].(float64); n >= 200 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("fewer than 200 scans after 60s")
		}
	}
	d.stop(t)
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	// The openers go on unwatched: stop them, and look at what failed.
	for _, cmd := range cmds {
		cmd.Process.Kill()
		cmd.Wait()
	}
	failed := stderr.String()
	if failed != "" {
		t.Errorf("clean opens failed during the stop:\n%s", failed)
	}
	for _, r := range readAlerts(t, d.alertLog) {
		t.Errorf("alert during the stop: %+v", r)
	}
}

// SIGTERM while the engine hangs: the stop waits a little for the scans
// under way, then fails them with on_error and exits 0 in time, rather
// than wait for scan_timeout.
func TestStopWithHungEngine(t *testing.T) {
	d, f := hungClamdDaemon(t)
	read := readAsync(f)
	time.Sleep(200 * time.Millisecond) // the open waits on clamd
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("daemon still running 20s after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 || strings.Contains(d.log(), "did not stop in time") {
		t.Errorf("exit %d after %v; want 0, in time\n%s", code, time.Since(start), d.log())
	}
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("open still waiting 5s after the daemon exited")
	}
}

// vigil run by a user who may not make a fanotify group says that it
// needs root, and exits 1, rather than only "operation not permitted".
func TestRunWithoutRoot(t *testing.T) {
	dir := testutil.TempDir(t)
	// Everything the daemon opens before the group is another user's to
	// open here: the binary, the policy, the alert log and the socket.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(vigilBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vigil"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "w"), 0o755)
	policy := filepath.Join(dir, "policy.hcl")
	writeFile(t, policy, fmt.Sprintf("settings {\n  control_socket = %q\n  alert_log = %q\n}\nwatch %q {}\n",
		filepath.Join(dir, "vigil.sock"), filepath.Join(dir, "alerts.jsonl"), filepath.Join(dir, "w")))
	cmd := exec.Command(filepath.Join(dir, "vigil"), "run", "--policy", policy)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("vigil run as another user did not stop:\n%s", stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("got %v, want exit 1", err)
	}
	if !strings.Contains(stderr.String(), "operation not permitted (vigil run needs root: CAP_SYS_ADMIN)") {
		t.Errorf("stderr does not say that vigil run needs root:\n%s", stderr.String())
	}
}
