package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan/clamav"
)

// clamonaccBin is where Debian's clamav-daemon installs clamonacc.
const clamonaccBin = "/usr/sbin/clamonacc"

var clamonaccSection = section{
	name:  "clamonacc",
	title: "clamonacc + clamd side by side: watch setup, race misses, memory",
	needs: []need{needRoot, needFanotify, {func(*env) string {
		for _, bin := range []string{clamdBin, clamonaccBin} {
			if _, err := os.Stat(bin); err != nil {
				return fmt.Sprintf("%s not installed (apt-get install clamav-daemon)", bin)
			}
		}
		return ""
	}}},
	run: runClamonacc,
}

// peerDirs is the tree the design's clamonacc figures were measured on.
const peerDirs = 50000

// peer is what the clamonacc section measured. The watch, race and memory
// sections quote it in their "clamonacc here" column and divide by it.
type peer struct {
	watch  map[int]peerWatch                // by tree size
	race   map[string]map[string]raceResult // by scenario, then filesystem
	trials int                              // race trials per scenario and filesystem

	// At peerDirs; zero when not measured.
	rss, peak, clamdRSS int64
	// startup is clamonacc's start on an empty tree, its clamd running.
	startup time.Duration
}

type peerWatch struct {
	dirs    int // marked, the root included
	elapsed time.Duration
}

func (w peerWatch) rate() float64 { return float64(w.dirs) / w.elapsed.Seconds() }

// runClamonacc runs ClamAV's on-access scanner the way its documentation
// sets it up (clamonacc --fdpass with its clamd, OnAccessPrevention,
// OnAccessIncludePath, dynamic directory determination) on the trees and
// race trials vigil faces, each clamonacc with a clamd of its own, on
// filesystems mounted here: its permission marks go nowhere else.
func runClamonacc(e *env) ([]row, error) {
	m := e.newMounts()
	defer m.close()
	e.peer = &peer{watch: map[int]peerWatch{}, race: map[string]map[string]raceResult{}}
	rows, err := clamonaccWatch(e, m)
	if err != nil {
		return rows, err
	}
	more, err := clamonaccRace(e, m)
	return append(rows, more...), err
}

// clamonaccWatch times clamonacc's watch setup over dirTree-shaped trees
// on a loop ext4, and reads its memory at peerDirs.
func clamonaccWatch(e *env, m *mounts) ([]row, error) {
	sizes := []int{peerDirs, designDirs}
	if e.quick {
		sizes = sizes[:1]
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	// Each directory takes an inode and a 4 KiB block.
	mnt, err := m.ext4(total*4/1024*5/4+128, total+20000)
	if err != nil {
		return nil, err
	}
	var rows []row
	empty := filepath.Join(mnt, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", empty, err)
	}
	o, err := e.startOnacc("empty", empty)
	if err != nil {
		return nil, err
	}
	startup := o.ready
	e.peer.startup = startup
	o.stop()

	watches, err := readInt("/proc/sys/fs/inotify/max_user_watches")
	if err != nil {
		return nil, err
	}
	for _, n := range sizes {
		figure := fmt.Sprintf("clamonacc watch setup, directories/s (%s-directory tree, on a loop ext4; "+
			"from exec until its DDD thread waits in pselect6, every directory then counted in its fanotify fdinfo)", group(int64(n)))
		// The DDD thread puts an inotify watch on every directory too.
		if watches < n+1000 {
			rows = append(rows, row{figure: figure, measured: fmt.Sprintf(
				"skipped: fs.inotify.max_user_watches is %s, clamonacc needs one a directory (sysctl fs.inotify.max_user_watches=%d)",
				group(int64(watches)), 2*n)})
			continue
		}
		root := filepath.Join(mnt, fmt.Sprintf("dirs-%d", n))
		if err := os.Mkdir(root, 0o755); err != nil {
			return rows, fmt.Errorf("create %s: %w", root, err)
		}
		if err := e.fillDirTree(root, n); err != nil {
			return rows, err
		}
		e.progress("clamonacc: watch setup on the %s-directory tree", group(int64(n)))
		w, err := clamonaccPlace(e, n, root)
		if err != nil {
			return rows, err
		}
		e.peer.watch[n] = w
		rows = append(rows, row{
			figure: figure,
			aim:    "report",
			measured: fmt.Sprintf("%s (%s dirs in %s; start-up alone, on an empty tree: %s)",
				group(int64(w.rate())), group(int64(w.dirs)), millis(w.elapsed), millis(startup)),
			ref: "design: " + watchRef,
		})
		if n == peerDirs {
			rows = append(rows, row{
				figure:   fmt.Sprintf("clamonacc RSS at %s watched directories, and its clamd's (one-signature database)", group(peerDirs)),
				aim:      "report",
				measured: fmt.Sprintf("%s (peak %s); clamd %s", mib(e.peer.rss), mib(e.peer.peak), mib(e.peer.clamdRSS)),
				ref:      "design: " + memoryRef,
			})
		}
	}
	return rows, nil
}

// clamonaccPlace starts clamonacc on the n-directory tree at root, checks
// that it marked every directory, and reads its memory at peerDirs.
func clamonaccPlace(e *env, n int, root string) (peerWatch, error) {
	o, err := e.startOnacc(fmt.Sprintf("dirs-%d", n), root)
	if err != nil {
		return peerWatch{}, err
	}
	defer o.stop()
	marks, err := o.marks()
	if err != nil {
		return peerWatch{}, err
	}
	if marks < n+1 {
		return peerWatch{}, fmt.Errorf("clamonacc marked %d directories of %d", marks, n+1)
	}
	if n == peerDirs {
		// After blocks: a clamonacc that has scanned, as it runs.
		if e.peer.rss, e.peer.peak, err = statusMemory(o.d.pid()); err != nil {
			return peerWatch{}, err
		}
		if e.peer.clamdRSS, _, err = statusMemory(o.cd.cmd.Process.Pid); err != nil {
			return peerWatch{}, err
		}
	}
	return peerWatch{dirs: marks, elapsed: o.ready}, nil
}

// clamonaccRace runs race.go's trials against clamonacc on a tmpfs and an
// ext4 of their own.
func clamonaccRace(e *env, m *mounts) ([]row, error) {
	trials := 200
	if e.quick {
		trials = 50
	}
	e.peer.trials = trials
	for _, fs := range raceFilesystems {
		mnt, err := fs.mountChecked(m, trials)
		if err != nil {
			return nil, err
		}
		watched, outside := filepath.Join(mnt, "data"), filepath.Join(mnt, "staging")
		for _, d := range []string{watched, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return nil, fmt.Errorf("create %s: %w", d, err)
			}
		}
		e.progress("clamonacc: race on %s, %s trials each way", fs.name, group(int64(trials)))
		o, err := e.startOnacc("race-"+fs.name, watched)
		if err != nil {
			return nil, err
		}
		res, _, err := raceOneDaemon(e, o, watched, outside, trials, 0, false)
		o.stop()
		if stop := e.stopped(); stop != nil {
			return nil, stop
		}
		if err != nil {
			return nil, fmt.Errorf("clamonacc on %s: %w", fs.name, err)
		}
		for scen, r := range res {
			if e.peer.race[scen] == nil {
				e.peer.race[scen] = map[string]raceResult{}
			}
			e.peer.race[scen][fs.name] = r
		}
	}
	var rows []row
	for _, scen := range []string{"mkdir -p", "mv"} {
		measured, _ := raceMisses(e.peer.race[scen], trials)
		rows = append(rows, row{
			figure:   fmt.Sprintf("clamonacc race: infected file read right after %s", raceWhat(scen)),
			aim:      "report",
			measured: measured,
			ref:      "design: " + raceRef[scen],
		})
	}
	return rows, nil
}

// onacc is a clamonacc the bench started, with its clamd.
type onacc struct {
	e     *env
	d     *daemonProc // clamonacc, among the env's daemons: killed on every way out
	cd    *clamdProc
	ddd   string        // its DDD thread's /proc task directory
	ready time.Duration // from exec until the DDD thread first waited for events
}

// startOnacc starts a clamd and a clamonacc watching root, waits until
// clamonacc's dynamic directory determination has walked and marked the
// tree, and checks that it denies an open of EICAR in root.
func (e *env) startOnacc(name, root string) (*onacc, error) {
	dir, err := e.dir("clamonacc-" + name)
	if err != nil {
		return nil, err
	}
	exclude := "OnAccessExcludeUname clamav"
	if _, err := user.Lookup("clamav"); err != nil {
		exclude = "OnAccessExcludeUID 65534"
	}
	cd, err := startClamd(e, dir, fmt.Sprintf("%x:%d:Bench.EICAR\n", md5.Sum([]byte(clamav.EICAR)), len(clamav.EICAR)),
		"OnAccessIncludePath "+root,
		"OnAccessPrevention yes",
		// clamonacc refuses to start without an exclusion. The bench and its
		// clamd run as root, and root must be scanned; clamd reads only the
		// event fds passed to it (--fdpass), which make no new event.
		exclude,
	)
	if err != nil {
		return nil, err
	}
	o := &onacc{e: e, cd: cd}
	d := &daemonProc{e: e, log: filepath.Join(dir, "clamonacc.out"), exited: make(chan struct{})}
	out, err := os.Create(d.log)
	if err != nil {
		cd.stop()
		return nil, fmt.Errorf("create clamonacc log: %w", err)
	}
	defer out.Close()
	d.cmd = exec.Command(clamonaccBin, "--foreground", "--fdpass", "--config-file="+cd.conf, "--log="+filepath.Join(dir, "clamonacc.log"))
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	e.mu.Lock()
	if e.closed || e.stop.Load() {
		e.mu.Unlock()
		cd.stop()
		return nil, errors.New("start clamonacc: bench is stopping")
	}
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		e.mu.Unlock()
		cd.stop()
		return nil, fmt.Errorf("start clamonacc: %w", err)
	}
	e.daemons[d] = true
	e.mu.Unlock()
	o.d = d
	go func() {
		d.cmd.Wait()
		close(d.exited)
	}()
	d.timer = time.AfterFunc(e.deadline, func() {
		fmt.Fprintf(e.log, "bench: clamonacc %d still running after %v: killing it\n", d.pid(), e.deadline)
		d.kill()
	})
	if err := o.waitReady(start); err != nil {
		o.stop()
		return nil, err
	}
	if err := o.blocks(root); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

// waitReady polls until clamonacc's DDD thread (it names itself
// clamonacc-ddd) first blocks in pselect6: it does so only once it has
// walked the included trees and marked every directory, to wait for
// inotify events. clamonacc logs nothing then, and SIGTERM does not stop
// it, which leaves the thread's state as the signal.
func (o *onacc) waitReady(start time.Time) error {
	deadline := time.Now().Add(min(o.e.deadline, 90*time.Second))
	for {
		if o.ddd == "" {
			task, err := findTask(o.d.pid(), "clamonacc-ddd")
			if err != nil {
				return err
			}
			o.ddd = task
		}
		if o.ddd != "" {
			waiting, _, err := o.dddState()
			if err != nil {
				return err
			}
			if waiting {
				o.ready = time.Since(start)
				return nil
			}
		}
		if err := o.alive(); err != nil {
			return err
		}
		if err := o.e.stopped(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clamonacc's DDD thread not waiting for events after %v\n%s", time.Since(start).Round(time.Millisecond), o.d.logTail(2000))
		}
		time.Sleep(time.Millisecond)
	}
}

// dddState reads whether the DDD thread waits in pselect6, and how many
// times it has been switched out: the same count twice, apart, means it
// did not wake in between.
func (o *onacc) dddState() (waiting bool, switches int64, err error) {
	sc, err := os.ReadFile(o.ddd + "/syscall")
	if err != nil {
		return false, 0, fmt.Errorf("read clamonacc's DDD thread: %w", err)
	}
	st, err := os.ReadFile(o.ddd + "/status")
	if err != nil {
		return false, 0, fmt.Errorf("read clamonacc's DDD thread: %w", err)
	}
	return inPselect(sc), parseStatusInt(st, "voluntary_ctxt_switches") + parseStatusInt(st, "nonvoluntary_ctxt_switches"), nil
}

// settle waits until the DDD thread has handled the directory events of
// the previous trials: waiting in pselect6, not woken for 200 ms (30 s at
// most). It is race.go's settle for clamonacc.
func (o *onacc) settle() error {
	last := int64(-1)
	still := time.Now()
	for start := time.Now(); time.Since(start) < 30*time.Second; {
		if err := o.e.stopped(); err != nil {
			return err
		}
		if err := o.alive(); err != nil {
			return err
		}
		waiting, switches, err := o.dddState()
		if err != nil {
			return err
		}
		if !waiting || switches != last {
			last, still = switches, time.Now()
		} else if time.Since(still) >= 200*time.Millisecond {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	o.e.progress("clamonacc: its DDD thread still busy after 30s: going on")
	return nil
}

func (o *onacc) alive() error {
	select {
	case <-o.d.exited:
		return fmt.Errorf("clamonacc %d is gone: %v\n%s", o.d.pid(), o.d.cmd.ProcessState, o.d.logTail(2000))
	default:
		return nil
	}
}

// blocks checks that clamonacc denies an open of EICAR in dir: one that
// scans but cannot deny would turn every race trial into a miss.
func (o *onacc) blocks(dir string) error {
	p := filepath.Join(dir, "vigil-bench-eicar")
	done := make(chan error, 1)
	go func() {
		if err := os.WriteFile(p, []byte(clamav.EICAR), 0o644); err != nil {
			done <- fmt.Errorf("write eicar: %w", err)
			return
		}
		_, err := os.ReadFile(p)
		os.Remove(p)
		done <- err
	}()
	select {
	case err := <-done:
		switch {
		case errors.Is(err, unix.EPERM):
			return nil
		case err == nil:
			return fmt.Errorf("clamonacc let EICAR be read in %s\n%s", dir, o.d.logTail(2000))
		}
		return fmt.Errorf("read eicar: %w", err)
	case <-time.After(20 * time.Second):
		// Killing it allows the open waiting for it.
		o.d.kill()
		return fmt.Errorf("clamonacc did not answer an open of EICAR within 20s: killed\n%s", o.d.logTail(2000))
	}
}

// marks counts the marks of clamonacc's fanotify group, in its fdinfo.
func (o *onacc) marks() (int, error) {
	fds := fmt.Sprintf("/proc/%d/fd", o.d.pid())
	ents, err := os.ReadDir(fds)
	if err != nil {
		return 0, fmt.Errorf("list clamonacc's fds: %w", err)
	}
	for _, ent := range ents {
		if link, err := os.Readlink(filepath.Join(fds, ent.Name())); err != nil || link != "anon_inode:[fanotify]" {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", o.d.pid(), ent.Name()))
		if err != nil {
			return 0, fmt.Errorf("read clamonacc's fanotify fdinfo: %w", err)
		}
		return countMarks(b), nil
	}
	return 0, errors.New("clamonacc has no fanotify fd")
}

// stop kills clamonacc by its PID (SIGTERM leaves it hanging), which
// allows any open waiting for it, then its clamd.
func (o *onacc) stop() {
	o.d.timer.Stop()
	o.d.kill()
	o.d.wait()
	o.e.mu.Lock()
	delete(o.e.daemons, o.d)
	o.e.mu.Unlock()
	o.cd.stop()
}

// findTask returns the /proc task directory of pid's thread named comm,
// "" while there is none.
func findTask(pid int, comm string) (string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("list threads of %d: %w", pid, err)
	}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(dir, ent.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return filepath.Join(dir, ent.Name()), nil
		}
	}
	return "", nil
}

// inPselect reads a /proc/PID/task/TID/syscall line: "running", or the
// number of the call the thread is blocked in, then its arguments. glibc's
// select(3) is pselect6 on x86-64 and arm64 alike.
func inPselect(line []byte) bool {
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return false
	}
	nr, err := strconv.Atoi(f[0])
	return err == nil && nr == unix.SYS_PSELECT6
}

// countMarks counts the marks in a fanotify fd's fdinfo: a line each.
func countMarks(fdinfo []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(fdinfo))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "fanotify ino:") || strings.HasPrefix(sc.Text(), "fanotify mnt_id:") || strings.HasPrefix(sc.Text(), "fanotify sdev:") {
			n++
		}
	}
	return n
}

// parseStatusInt returns a count field of /proc/PID/status (e.g.
// "voluntary_ctxt_switches:  12"), -1 if absent.
func parseStatusInt(status []byte, field string) int64 {
	v, ok := statusField(status, field)
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// The other sections' view of the peer: their "clamonacc here" cells,
// measured when the clamonacc section ran (the design's figures
// otherwise), and their ratio rows.

// memoryRef is clamonacc's memory as the design measured it.
const memoryRef = "34 MiB at 50,000 (plus clamd)"

// nearestWatch returns the peer's watch figure at the tree size nearest n.
func (p *peer) nearestWatch(n int) (peerWatch, int, bool) {
	best, found := 0, false
	for size := range p.watch {
		if !found || abs(size-n) < abs(best-n) || (abs(size-n) == abs(best-n) && size < best) {
			best, found = size, true
		}
	}
	return p.watch[best], best, found
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// watchPeerRef is the "clamonacc here" cell of vigil's watch rows at n
// directories.
func (e *env) watchPeerRef(n int) string {
	if e.peer == nil {
		return watchRef
	}
	w, at, ok := e.peer.nearestWatch(n)
	if !ok {
		return watchRef
	}
	return fmt.Sprintf("measured here: %s/s at %s; design: %s", group(int64(w.rate())), group(int64(at)), watchRef)
}

// watchRatios are the rows vigil ÷ clamonacc of watch setup rates (what
// measured them: "watch.Place" or "`vigil run`"), on the trees both
// measured; in a --quick run, whose vigil trees are smaller, vigil's
// largest against clamonacc's, labelled as such.
func (e *env) watchRatios(what string, rates map[int]float64) []row {
	if e.peer == nil || len(e.peer.watch) == 0 || len(rates) == 0 {
		return nil
	}
	sizes := make([]int, 0, len(rates))
	for n := range rates {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	var rows []row
	for _, n := range sizes {
		w, ok := e.peer.watch[n]
		if !ok {
			continue
		}
		r := rates[n] / w.rate()
		rows = append(rows, row{
			figure:   fmt.Sprintf("watch setup vs clamonacc, %s, %s-directory tree (directories/s, vigil ÷ clamonacc)", what, group(int64(n))),
			aim:      "≥ 10×",
			measured: ratio(r),
			met:      atLeast(r, 10),
		})
	}
	if len(rows) == 0 {
		n := sizes[len(sizes)-1]
		w, at, _ := e.peer.nearestWatch(n)
		rows = append(rows, row{
			figure: fmt.Sprintf("watch setup vs clamonacc, %s (directories/s, vigil ÷ clamonacc; vigil on %s directories, clamonacc on %s: not the same tree)",
				what, group(int64(n)), group(int64(at))),
			aim:      "report",
			measured: ratio(rates[n] / w.rate()),
		})
	}
	return rows
}

// racePeerRef is the "clamonacc here" cell of vigil's race rows.
func (e *env) racePeerRef(scen string) string {
	if e.peer == nil || len(e.peer.race[scen]) < len(raceFilesystems) {
		return raceRef[scen]
	}
	measured, _ := raceMisses(e.peer.race[scen], e.peer.trials)
	return fmt.Sprintf("measured here: %s; design: %s", measured, raceRef[scen])
}

// raceRatios are the rows vigil ÷ clamonacc of miss rates, a row a
// scenario; results is runRace's, by mode, scenario and filesystem.
func (e *env) raceRatios(results map[string]map[string]map[string]raceResult, trials int) []row {
	if e.peer == nil {
		return nil
	}
	var rows []row
	for _, scen := range []string{"mkdir -p", "mv"} {
		if len(e.peer.race[scen]) < len(raceFilesystems) {
			continue
		}
		var modes []string
		for _, mode := range []string{"filesystem", "tree"} {
			var parts []string
			for _, fs := range raceFilesystems {
				parts = append(parts, fs.name+" "+missRatio(results[mode][scen][fs.name].misses, trials, e.peer.race[scen][fs.name].misses, e.peer.trials))
			}
			modes = append(modes, mode+" mode: "+strings.Join(parts, ", "))
		}
		rows = append(rows, row{
			figure:   fmt.Sprintf("race vs clamonacc, infected file read right after %s (miss rate, vigil ÷ clamonacc)", raceWhat(scen)),
			aim:      "report",
			measured: strings.Join(modes, "; "),
		})
	}
	return rows
}

// missRatio divides vigil's miss rate by clamonacc's.
func missRatio(misses, trials, peerMisses, peerTrials int) string {
	if peerMisses == 0 || trials == 0 || peerTrials == 0 {
		return "– (clamonacc missed none)"
	}
	return ratio((float64(misses) / float64(trials)) / (float64(peerMisses) / float64(peerTrials)))
}

// memoryPeerRef is the "clamonacc here" cell of vigil's memory rows.
func (e *env) memoryPeerRef() string {
	if e.peer == nil || e.peer.rss <= 0 {
		return memoryRef
	}
	return fmt.Sprintf("measured here: %s at %s (clamd %s more); design: %s", mib(e.peer.rss), group(peerDirs), mib(e.peer.clamdRSS), memoryRef)
}

// memoryRatio is the row vigil ÷ clamonacc of resident sets at peerDirs,
// when both were measured there.
func (e *env) memoryRatio(sizes []int, ps []placement) []row {
	if e.peer == nil || e.peer.rss <= 0 {
		return nil
	}
	figure := fmt.Sprintf("memory vs clamonacc at %s watched directories (RSS, vigil ÷ clamonacc; ÷ clamonacc + its clamd)", group(peerDirs))
	i := slices.Index(sizes, peerDirs)
	if i < 0 || i >= len(ps) {
		return []row{{figure: figure, measured: fmt.Sprintf("skipped: vigil not measured at %s directories in --quick", group(peerDirs))}}
	}
	return []row{{
		figure:   figure,
		aim:      "report",
		measured: fmt.Sprintf("%s (%s)", ratio(float64(ps[i].rss)/float64(e.peer.rss)), ratio(float64(ps[i].rss)/float64(e.peer.rss+e.peer.clamdRSS))),
	}}
}
