package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

var stormSection = section{
	name:  "storm",
	title: "storm: sustained permission decisions/s from 4 processes, p99 decision latency, memory after",
	needs: []need{needRoot, needFanotify, needVigil},
	run:   runStorm,
}

// stormProcs is the number of opener processes: more than the cores of
// the machines the design is measured on.
const stormProcs = 4

var _ = helper("storm", stormOpener)

// stormOpener is a child process: arg is "DIR:PASSES". It converts the
// paths of DIR's files, says "ready", waits for a byte on stdin, then
// opens+reads+closes every file PASSES times and prints a stormReport.
func stormOpener(arg string) int {
	dir, n, ok := strings.Cut(arg, ":")
	passes, err := strconv.Atoi(n)
	if !ok || err != nil || passes < 1 {
		fmt.Fprintf(os.Stderr, "storm opener: bad argument %q\n", arg)
		return 2
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "storm opener: %v\n", err)
		return 1
	}
	paths := make([]string, len(des))
	for i, de := range des {
		paths[i] = filepath.Join(dir, de.Name())
	}
	r, err := newReader(paths)
	if err != nil {
		fmt.Fprintf(os.Stderr, "storm opener: %v\n", err)
		return 1
	}
	fmt.Println("ready")
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		fmt.Fprintf(os.Stderr, "storm opener: wait for the start: %v\n", err)
		return 1
	}
	rep := stormReport{Start: time.Now().UnixNano()}
	for range passes {
		p := r.pass()
		if p.err != nil {
			fmt.Fprintf(os.Stderr, "storm opener: %v\n", p.err)
			return 1
		}
		for _, l := range p.lat {
			rep.Lat = append(rep.Lat, int64(l))
		}
	}
	rep.End = time.Now().UnixNano()
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintf(os.Stderr, "storm opener: %v\n", err)
		return 1
	}
	return 0
}

// stormReport is what an opener prints: wall-clock nanoseconds (shared by
// the processes) and each open+read+close's duration.
type stormReport struct {
	Start, End int64
	Lat        []int64
}

// stormRun is one round: every opener's passes over its directory.
type stormRun struct {
	opens int
	span  time.Duration // first start to last end
	lat   []time.Duration
}

func (r stormRun) rate() float64 { return float64(r.opens) / r.span.Seconds() }

// stormRound starts an opener per directory, lets them go at once once
// all are ready, and gathers their reports.
func stormRound(e *env, dirs []string, passes int) (stormRun, error) {
	type opener struct {
		cmd    *exprocess
		stdout *bufio.Reader
		stdin  io.WriteCloser
	}
	var ops []opener
	defer func() {
		for _, o := range ops {
			o.cmd.killWait()
		}
	}()
	for _, d := range dirs {
		cmd, err := child("storm", fmt.Sprintf("%s:%d", d, passes))
		if err != nil {
			return stormRun{}, err
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return stormRun{}, fmt.Errorf("start opener: %w", err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return stormRun{}, fmt.Errorf("start opener: %w", err)
		}
		p, err := startProcess(cmd, &stderr, e.deadline)
		if err != nil {
			return stormRun{}, err
		}
		ops = append(ops, opener{cmd: p, stdout: bufio.NewReaderSize(out, 1<<20), stdin: in})
	}
	for _, o := range ops {
		line, err := o.stdout.ReadString('\n')
		if err != nil || line != "ready\n" {
			o.cmd.killWait()
			return stormRun{}, fmt.Errorf("opener %d: got %q, %v want ready: %s", o.cmd.cmd.Process.Pid, line, err, o.cmd.stderr())
		}
	}
	for _, o := range ops {
		o.stdin.Write([]byte{'g'})
		o.stdin.Close()
	}
	var run stormRun
	var first, last int64
	for i, o := range ops {
		var rep stormReport
		if err := json.NewDecoder(o.stdout).Decode(&rep); err != nil {
			o.cmd.killWait()
			return stormRun{}, fmt.Errorf("opener %d: %v: %s", o.cmd.cmd.Process.Pid, err, o.cmd.stderr())
		}
		if err := o.cmd.wait(); err != nil {
			return stormRun{}, fmt.Errorf("opener %d: %w: %s", o.cmd.cmd.Process.Pid, err, o.cmd.stderr())
		}
		if i == 0 || rep.Start < first {
			first = rep.Start
		}
		last = max(last, rep.End)
		run.opens += len(rep.Lat)
		for _, l := range rep.Lat {
			run.lat = append(run.lat, time.Duration(l))
		}
	}
	run.span = time.Duration(last - first)
	if run.span <= 0 {
		return stormRun{}, errors.New("storm: openers reported no time")
	}
	return run, nil
}

// runStorm measures, from stormProcs processes at once: opens/s of clean
// files the kernel's ignore marks let through, with the daemon and
// without; permission decisions/s when every open is a first open (the
// files rewritten between rounds, so each open is a scan), counted by the
// daemon's own counters; the daemon's decision latency histogram over
// those rounds; its memory afterwards.
func runStorm(e *env) ([]row, error) {
	perProc, cachedPasses, firstRounds := 2500, 20, 3
	if e.quick {
		perProc, cachedPasses, firstRounds = 500, 3, 1
	}
	root, err := e.dir("storm")
	if err != nil {
		return nil, err
	}
	total := stormProcs * perProc
	e.progress("storm: writing %s files of 4 KiB in %d directories", group(int64(total)), stormProcs)
	dirs := make([]string, stormProcs)
	for p := range dirs {
		dirs[p] = filepath.Join(root, fmt.Sprintf("p%d", p))
		if err := os.Mkdir(dirs[p], 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", dirs[p], err)
		}
	}
	data := randomBytes(latencyFileSize)
	rewrite := func(round int) error {
		for p, d := range dirs {
			if err := e.stopped(); err != nil {
				return err
			}
			for f := range perProc {
				// New contents each round: the next open is a scan, whatever
				// the daemon's cache keys on.
				copy(data, fmt.Sprintf("%d/%d/%d.", round, p, f))
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", f)), data, 0o644); err != nil {
					return fmt.Errorf("write storm file: %w", err)
				}
			}
		}
		return nil
	}
	if err := rewrite(0); err != nil {
		return nil, err
	}

	e.progress("storm: no monitor, %d passes over every file", cachedPasses)
	base1, err := stormRound(e, dirs, cachedPasses)
	if err != nil {
		return nil, err
	}

	e.progress("storm: starting vigil on %s", root)
	d, err := e.startDaemon("storm", root)
	if err != nil {
		return nil, err
	}
	defer d.stop()

	var (
		first          stormRun
		firstSpan      time.Duration
		events, scans  uint64
		answers, fails uint64
		hist           []bucket
	)
	for k := range firstRounds {
		if k > 0 {
			if err := rewrite(k); err != nil {
				return nil, err
			}
		}
		m0, c0, err := scrape(d)
		if err != nil {
			return nil, err
		}
		e.progress("storm: first opens, round %d/%d", k+1, firstRounds)
		r, err := stormRound(e, dirs, 1)
		if err != nil {
			return nil, fmt.Errorf("first opens: %w", err)
		}
		m1, c1, err := scrape(d)
		if err != nil {
			return nil, err
		}
		delta := func(k string) uint64 { return c1[k] - c0[k] }
		events += delta("events")
		scans += delta("scans")
		answers += delta("allowed") + delta("denied")
		for _, k := range []string{"denied", "errors", "timeouts", "queue_full", "respond_errors"} {
			fails += delta(k)
		}
		h, err := histogramDelta(m1, m0)
		if err != nil {
			return nil, fmt.Errorf("decision latency histogram: %w", err)
		}
		if hist == nil {
			hist = h
		} else {
			for i := range hist {
				hist[i].count += h[i].count
			}
		}
		first.opens += r.opens
		first.lat = append(first.lat, r.lat...)
		firstSpan += r.span
	}
	first.span = firstSpan

	// The last first-open round left an ignore mark on every file.
	_, c0, err := scrape(d)
	if err != nil {
		return nil, err
	}
	e.progress("storm: cached files, %d passes over every file", cachedPasses)
	cpu0, err := cpuTime(d.pid())
	if err != nil {
		return nil, err
	}
	cached, err := stormRound(e, dirs, cachedPasses)
	if err != nil {
		return nil, fmt.Errorf("cached opens: %w", err)
	}
	cpu1, err := cpuTime(d.pid())
	if err != nil {
		return nil, err
	}
	c1, err := d.counters()
	if err != nil {
		return nil, err
	}
	leaked := c1["events"] - c0["events"]
	rss, peak, err := d.rss()
	if err != nil {
		return nil, err
	}
	d.stop()

	e.progress("storm: no monitor again")
	base2, err := stormRound(e, dirs, cachedPasses)
	if err != nil {
		return nil, err
	}

	baseRate := (base1.rate() + base2.rate()) / 2
	cachedRatio := cached.rate() / baseRate
	procs := fmt.Sprintf("%d processes", stormProcs)
	rows := []row{
		{
			figure: fmt.Sprintf("storm, clean cached files (kernel ignore marks: never reach vigil): opens/s from %s, %s files × %d passes, with vigil vs no monitor", procs, group(int64(total)), cachedPasses),
			aim:    "as no monitor (≥ 0.95×)",
			measured: fmt.Sprintf("%s/s vs %s/s (%s; no monitor before and after: %s/s, %s/s); %s opens reached the daemon, which used %s of CPU meanwhile",
				group(int64(cached.rate())), group(int64(baseRate)), ratio(cachedRatio),
				group(int64(base1.rate())), group(int64(base2.rate())), group(int64(leaked)), millis(cpu1-cpu0)),
			met: atLeast(cachedRatio, 0.95),
		},
		{
			figure: fmt.Sprintf("storm, first opens (files rewritten between rounds: each open a scan): permission decisions/s from %s (daemon's events counter)", procs),
			aim:    "report",
			measured: fmt.Sprintf("%s/s (%s events, %s scans in %s over %d rounds)",
				group(int64(float64(events)/first.span.Seconds())), group(int64(events)), group(int64(scans)), millis(first.span), firstRounds),
		},
		{
			figure:   "storm, first opens: every event answered exactly once, no clean open failed",
			aim:      fmt.Sprintf("allowed+denied = events ≥ %s opens, 0 denied or on_error", group(int64(first.opens))),
			measured: fmt.Sprintf("%s answers for %s events; %d denied or on_error", group(int64(answers)), group(int64(events)), fails),
			met:      boolVerdict(answers == events && events >= uint64(first.opens) && fails == 0),
		},
	}
	r := row{
		figure: "storm, first opens: decision latency p50 / p99 (daemon's vigil_decision_seconds, power-of-two buckets)",
		aim:    "p99 ≤ 200 µs",
		ref:    "~1 ms median",
	}
	lo50, hi50, err50 := quantileBucket(hist, 0.5)
	lo99, hi99, err99 := quantileBucket(hist, 0.99)
	if err50 != nil || err99 != nil {
		r.measured = "no decision in the histogram"
		r.met = aimMissed
	} else {
		r.measured = fmt.Sprintf("%s / %s", bucketText(lo50, hi50), bucketText(lo99, hi99))
		switch {
		case hi99 <= 200e-6:
			r.met = aimMet
		case lo99 >= 200e-6:
			r.met = aimMissed
		default:
			r.measured += " (the bucket straddles the aim)"
		}
	}
	rows = append(rows, r,
		row{
			figure:   fmt.Sprintf("storm, first opens: open+read+close as the openers saw it, p50 / p99 (%s opens)", group(int64(first.opens))),
			measured: p50p99(first.lat),
		},
		row{
			figure:   fmt.Sprintf("daemon RSS after the storm (%s files, %s opens)", group(int64(total)), group(int64(first.opens+cached.opens))),
			measured: fmt.Sprintf("%s (peak %s)", mib(rss), mib(peak)),
		})
	return rows, nil
}

// scrape reads the decision latency histogram and the counters.
func scrape(d *daemonProc) ([]bucket, map[string]uint64, error) {
	text, err := d.metrics()
	if err != nil {
		return nil, nil, err
	}
	h, err := parseHistogram(text, "vigil_decision_seconds")
	if err != nil {
		return nil, nil, err
	}
	c, err := d.counters()
	if err != nil {
		return nil, nil, err
	}
	return h, c, nil
}

// bucketText formats the bucket (lo, hi] seconds in microseconds.
func bucketText(lo, hi float64) string {
	us := func(s float64) string { return strconv.FormatFloat(s*1e6, 'f', -1, 64) }
	if hi > 1e300 {
		return fmt.Sprintf("> %s µs", us(lo))
	}
	return fmt.Sprintf("%s–%s µs", us(lo), us(hi))
}

func boolVerdict(ok bool) verdict {
	if ok {
		return aimMet
	}
	return aimMissed
}

// exprocess is a child the bench started: killed by PID after its
// deadline, and on the way out of the round.
type exprocess struct {
	cmd    *exec.Cmd
	out    *strings.Builder
	timer  *time.Timer
	once   sync.Once
	waitCh chan error
}

// stderr returns what the child wrote on its stderr; call it after wait,
// the builder is written by os/exec's copier until then.
func (p *exprocess) stderr() string {
	return strings.TrimSpace(p.out.String())
}

func startProcess(cmd *exec.Cmd, stderr *strings.Builder, deadline time.Duration) (*exprocess, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &exprocess{cmd: cmd, out: stderr, waitCh: make(chan error, 1)}
	p.timer = time.AfterFunc(deadline, func() { cmd.Process.Kill() })
	return p, nil
}

// wait waits for the child once; later calls return the same error.
func (p *exprocess) wait() error {
	p.once.Do(func() {
		p.waitCh <- p.cmd.Wait()
		p.timer.Stop()
	})
	select {
	case err := <-p.waitCh:
		p.waitCh <- err
		return err
	default:
		return nil
	}
}

// killWait kills the child by its PID if it still runs, and reaps it.
func (p *exprocess) killWait() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
	}
	p.wait()
}

// cpuTime is the CPU time the process pid's threads have used, from
// /proc/PID/task/*/schedstat (nanoseconds on the CPU, first field).
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("read CPU time of %d: no tasks (%v)", pid, err)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time of %d: %s: %w", pid, t, err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}
