package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/scan/clamav/clamavtest"
)

var engineBodySection = section{
	name:  "engine-body",
	title: "built-in engine, body signatures, vs clamscan on the same databases and files",
	run:   runEngineBody,
}

// mixedFileSize is the size of each file of the mixed corpus.
const mixedFileSize = 4 << 20

// bodyDB is a database the section scans the corpus with.
type bodyDB struct {
	name string // for the rows
	dir  string // the database files, alone in a directory
	sigs int
}

// runEngineBody scans a mixed corpus from one goroutine with a hash-only
// database and with 10,000 and 100,000 generated body signatures, then
// clamscan on the same databases and files when it is installed. Each
// database holds one signature planted for one corpus file: both
// scanners must report exactly that file, proof that they did the work.
func runEngineBody(e *env) ([]row, error) {
	corpusMiB, minTime, runs := 256, 2*time.Second, 2
	if e.quick {
		corpusMiB, minTime, runs = 32, 300*time.Millisecond, 1
	}
	dir, err := e.dir("engine-body")
	if err != nil {
		return nil, err
	}
	e.progress("engine-body: writing a %d MiB mixed corpus", corpusMiB)
	corpus, total, planted, err := mixedCorpus(e, dir, corpusMiB<<20/mixedFileSize)
	if err != nil {
		return nil, err
	}
	dbs, err := bodyDatabases(dir, corpus, planted)
	if err != nil {
		return nil, err
	}

	clamscan, clamscanErr := exec.LookPath("clamscan")
	var rows []row
	var csLoad100k time.Duration // clamscan's start-up with 100,000 signatures
	for _, db := range dbs {
		if err := e.stopped(); err != nil {
			return rows, err
		}
		e.progress("engine-body: %s", db.name)
		eng, err := clamav.Load([]string{db.dir}, nil)
		if err != nil {
			return rows, err
		}
		if got := eng.Report().Total(); got != db.sigs {
			return rows, fmt.Errorf("%s: engine loaded %d signatures, want %d (%s)", db.name, got, db.sigs, eng.Report())
		}
		s, err := scanFor(e, eng, corpus, minTime)
		if err != nil {
			return rows, err
		}
		if got := s.infected / s.passes; got != 1 || s.infected%s.passes != 0 {
			return rows, fmt.Errorf("%s: engine found %d infected files in %d passes, want 1 a pass (the planted one)", db.name, s.infected, s.passes)
		}
		rate := float64(s.bytes) / 1e6 / s.elapsed.Seconds()
		r := row{
			figure:   fmt.Sprintf("built-in engine, %s mixed corpus (executables, text, random, sparse), %s, MB/s on one core", mib(total), db.name),
			measured: fmt.Sprintf("%s MB/s", group(int64(rate))),
		}
		if db.sigs == hashSigsMixed {
			r.aim, r.ref, r.met = "≥ 1,000 (1 GB/s per core)", "n/a (clamd)", atLeast(rate, 1000)
		} else {
			r.aim, r.ref = "≥ 1× clamscan", "1×"
		}
		if clamscanErr != nil {
			r.measured += "; clamscan not installed"
		} else {
			e.progress("engine-body: clamscan, %s", db.name)
			cs, err := clamscanRate(clamscan, db.dir, corpus, total, filepath.Base(corpus[planted]), runs)
			if err != nil {
				return rows, fmt.Errorf("%s: %w", db.name, err)
			}
			x := rate / cs.rate
			r.measured += fmt.Sprintf("; clamscan %s MB/s (%s scan after its %s load): vigil/clamscan %s",
				group(int64(cs.rate)), millis(cs.scan), millis(cs.load), ratio(x))
			if db.sigs != hashSigsMixed {
				r.met = atLeast(x, 1)
			}
			if db.sigs == 100000 {
				csLoad100k = cs.load
			}
		}
		rows = append(rows, r)
	}

	e.progress("engine-body: loading 100,000 body signatures in a process of its own")
	lr, err := measureLoad(dbs[len(dbs)-1].dir)
	if err != nil {
		return rows, err
	}
	measured := fmt.Sprintf("load %s (median of 3), heap +%s, RSS %s (peak %s; %s before loading)",
		millis(lr.load), mib(lr.heap), mib(lr.rss), mib(lr.peak), mib(lr.rssBefore))
	if csLoad100k > 0 {
		measured += fmt.Sprintf("; clamscan starts with it in %s (run on an empty file)", millis(csLoad100k))
	}
	rows = append(rows, row{
		figure:   "built-in engine, database load of 100,000 body signatures, in a process of its own",
		aim:      "report",
		measured: measured,
	})
	return rows, nil
}

// hashSigsMixed is the size of the hash-only database of the mixed corpus.
const hashSigsMixed = 1000

// bodyDatabases writes the databases, each in a directory of its own:
// hash-only, 10,000 and 100,000 generated body signatures.
func bodyDatabases(dir string, corpus []string, planted int) ([]bodyDB, error) {
	data, err := os.ReadFile(corpus[planted])
	if err != nil {
		return nil, fmt.Errorf("read corpus: %w", err)
	}
	mk := func(name string) (string, error) {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", fmt.Errorf("write database: %w", err)
		}
		return d, nil
	}
	var dbs []bodyDB

	hashDir, err := mk("db-hash")
	if err != nil {
		return nil, err
	}
	// One signature a file, of the file's size, kinds in turn, as the
	// engine section's corpus: each file is hashed with one kind.
	var sigs []sigSpec
	sizes := map[int64]bool{}
	for i, p := range corpus {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("stat corpus: %w", err)
		}
		kind := hashKinds[i%len(hashKinds)]
		sum := make([]byte, len(sumOf(kind, nil)))
		for j := range sum {
			sum[j] = byte(i*31 + j)
		}
		name := fmt.Sprintf("Bench.Sized-%d", i)
		if i == planted {
			sum, name = sumOf(kind, data), "Bench.Planted"
		}
		sigs = append(sigs, sigSpec{kind: kind, sum: sum, size: fi.Size(), name: name})
		sizes[fi.Size()] = true
	}
	sigs = append(sigs, fillerSigs(hashSigsMixed-len(sigs), func(s int64) bool { return sizes[s] })...)
	if err := writeHashDB(hashDir, sigs); err != nil {
		return nil, err
	}
	dbs = append(dbs, bodyDB{name: fmt.Sprintf("hash-only database (%s signatures; one of each file's size, md5, sha1, sha256 in turn)", group(hashSigsMixed)), dir: hashDir, sigs: hashSigsMixed})

	// A run of the random part of the planted file, at any offset.
	plantedSig := "Bench.Planted:0:*:" + hex.EncodeToString(data[len(data)/2:len(data)/2+24])
	for _, n := range []int{10000, 100000} {
		d, err := mk(fmt.Sprintf("db-ndb-%d", n))
		if err != nil {
			return nil, err
		}
		lines := append(clamavtest.BodySignatures(n-1, 1), plantedSig)
		if err := os.WriteFile(filepath.Join(d, "bench.ndb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("write database: %w", err)
		}
		dbs = append(dbs, bodyDB{name: fmt.Sprintf("%s generated body signatures (.ndb)", group(int64(n))), dir: d, sigs: n})
	}
	return dbs, nil
}

// mixedCorpus writes files of about mixedFileSize (file i differs from
// it by a multiple of 4 KiB: each has a size of its own for the hash
// signatures) in turn: executables from
// /usr/bin concatenated, text, random (compressed-like), sparse. It
// returns the paths, their total size and the index of a random file,
// the one the databases plant a signature for.
func mixedCorpus(e *env, dir string, files int) (paths []string, total int64, planted int, err error) {
	r := rand.New(rand.NewPCG(5, 6))
	var exes []string
	if des, err := os.ReadDir("/usr/bin"); err == nil {
		for _, de := range des {
			if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > 64<<10 {
				exes = append(exes, filepath.Join("/usr/bin", de.Name()))
			}
		}
	}
	slices.Sort(exes)
	words := strings.Fields("the quick brown fox jumps over a lazy dog function return var if else for while class import from <div> </div> http://example.com/ index.html 0x00 error warning")
	planted = -1
	data := make([]byte, 0, 2*mixedFileSize)
	for i := range files {
		if err := e.stopped(); err != nil {
			return nil, 0, 0, err
		}
		data = data[:0]
		switch i % 4 {
		case 0: // executables, concatenated
			for len(data) < 2*mixedFileSize && len(exes) > 0 {
				if x, err := os.ReadFile(exes[r.IntN(len(exes))]); err == nil {
					data = append(data, x...)
				}
			}
		case 1: // text
			for len(data) < 2*mixedFileSize {
				data = append(data, words[r.IntN(len(words))]...)
				data = append(data, " \n"[r.IntN(2)])
			}
		case 3: // sparse
			for len(data) < 2*mixedFileSize {
				if r.IntN(8) == 0 {
					data = append(data, byte(r.IntN(256)))
				} else {
					data = append(data, 0)
				}
			}
		default: // random
			if planted < 0 {
				planted = i
			}
		}
		size := mixedFileSize + (i-files/2)*4096
		for len(data) < size {
			data = append(data, byte(r.Uint32()))
		}
		data = data[:size]
		p := filepath.Join(dir, fmt.Sprintf("corpus-%03d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, 0, 0, fmt.Errorf("write corpus: %w", err)
		}
		paths = append(paths, p)
		total += int64(len(data))
	}
	if planted < 0 {
		return nil, 0, 0, errors.New("corpus too small: no random file")
	}
	return paths, total, planted, nil
}

// clamscanRun is clamscan's figure on one database.
type clamscanRun struct {
	load, scan time.Duration
	rate       float64 // MB/s
}

// clamscanRate times clamscan over the corpus, and over an empty file
// with the same database: the difference is its scanning time. The
// fastest of runs runs of each counts, as for the built-in engine's
// passes, and the corpus is in the page cache for both. The scan must
// report exactly the planted file.
func clamscanRate(clamscan, db string, corpus []string, total int64, planted string, runs int) (clamscanRun, error) {
	empty := filepath.Join(filepath.Dir(db), "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return clamscanRun{}, fmt.Errorf("write empty file: %w", err)
	}
	run := func(files []string) (time.Duration, []byte, error) {
		args := append([]string{"--no-summary", "--database=" + db}, files...)
		cmd := exec.Command(clamscan, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		elapsed := time.Since(start)
		// 1 is "virus found"; anything else but 0 is an error.
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 1 {
			err = nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("clamscan: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		return elapsed, stdout.Bytes(), nil
	}
	best := func(files []string) (time.Duration, []byte, error) {
		var min time.Duration
		var out []byte
		for range runs {
			el, o, err := run(files)
			if err != nil {
				return 0, nil, err
			}
			if min == 0 || el < min {
				min, out = el, o
			}
		}
		return min, out, nil
	}
	load, _, err := best([]string{empty})
	if err != nil {
		return clamscanRun{}, err
	}
	all, out, err := best(corpus)
	if err != nil {
		return clamscanRun{}, err
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(line, " FOUND") {
			found = append(found, line)
		}
	}
	if len(found) != 1 || !strings.Contains(found[0], planted+":") {
		return clamscanRun{}, fmt.Errorf("clamscan found %q, want only %s", found, planted)
	}
	scan := all - load
	if scan <= 0 {
		return clamscanRun{}, fmt.Errorf("clamscan: corpus in %v, empty file in %v", all, load)
	}
	return clamscanRun{load: load, scan: scan, rate: float64(total) / 1e6 / scan.Seconds()}, nil
}

var _ = helper("load", loadChild)

// loadReport is what the load helper prints.
type loadReport struct {
	LoadNs                     int64
	Heap, RSSBefore, RSS, Peak int64
}

// loadChild is a child process: it loads the database at arg three
// times, and reports the median time and the memory of the last engine
// loaded (heap grown, resident set, peak).
func loadChild(arg string) int {
	var rep loadReport
	rss := func() (int64, int64) {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return -1, -1
		}
		return parseStatusKiB(b, "VmRSS"), parseStatusKiB(b, "VmHWM")
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep.RSSBefore, _ = rss()
	var times []time.Duration
	var eng *clamav.Engine
	for range 3 {
		eng = nil
		runtime.GC()
		start := time.Now()
		var err error
		if eng, err = clamav.Load([]string{arg}, nil); err != nil {
			fmt.Fprintf(os.Stderr, "load helper: %v\n", err)
			return 1
		}
		times = append(times, time.Since(start))
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	rep.Heap = int64(after.HeapAlloc) - int64(before.HeapAlloc)
	rep.RSS, rep.Peak = rss()
	rep.LoadNs = int64(median(times))
	runtime.KeepAlive(eng)
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintf(os.Stderr, "load helper: %v\n", err)
		return 1
	}
	return 0
}

// loadResult is measureLoad's answer.
type loadResult struct {
	load                       time.Duration
	heap, rssBefore, rss, peak int64
}

// measureLoad loads db in a process of its own: the bench's corpus and
// caches are not in its figures.
func measureLoad(db string) (loadResult, error) {
	cmd, err := child("load", db)
	if err != nil {
		return loadResult{}, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return loadResult{}, fmt.Errorf("load helper: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var rep loadReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return loadResult{}, fmt.Errorf("load helper: %w", err)
	}
	return loadResult{load: time.Duration(rep.LoadNs), heap: rep.Heap, rssBefore: rep.RSSBefore, rss: rep.RSS, peak: rep.Peak}, nil
}
