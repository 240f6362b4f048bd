package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vigilsec/vigil/internal/scan/clamav"
)

var engineSection = section{
	name:  "engine",
	title: "built-in engine, hash signatures",
	run:   runEngine,
}

// corpusFileSize is the size of the corpus files; each file gets its own
// size (this plus or minus a multiple of 4 KiB) so each has its own
// signature kind.
const corpusFileSize = 1 << 20

// runEngine scans a corpus from one goroutine with a 1,000-signature
// database. One signature per corpus file has the file's size (a random
// digest, so the file is hashed and found clean); three files carry a
// real digest, one of each kind, and must be reported infected: proof
// that the hashing happened.
func runEngine(e *env) ([]row, error) {
	corpusMiB, minTime, smallFiles := 64, time.Second, 1000
	if e.quick {
		corpusMiB, minTime, smallFiles = 8, 200*time.Millisecond, 200
	}
	dir, err := e.dir("engine")
	if err != nil {
		return nil, err
	}
	e.progress("engine: writing a %d MiB corpus", corpusMiB)
	files := corpusMiB << 20 / corpusFileSize
	// File i is data[i*4 KiB:] for its size: neighbours overlap, none is equal.
	data := randomBytes(corpusFileSize + 2*files*4096)
	var corpus []string
	byKind := map[string][]string{}
	var sigs []sigSpec
	sizes := map[int64]bool{}
	infected := 0
	for i := range files {
		if err := e.stopped(); err != nil {
			return nil, err
		}
		size := int64(corpusFileSize + (i-files/2)*4096) // 64 MiB in all, near enough
		content := data[i*4096 : int64(i*4096)+size]
		kind := hashKinds[i%len(hashKinds)]
		p := filepath.Join(dir, fmt.Sprintf("corpus-%03d", i))
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return nil, fmt.Errorf("write corpus: %w", err)
		}
		corpus = append(corpus, p)
		byKind[kind] = append(byKind[kind], p)
		sizes[size] = true
		sum := make([]byte, len(sumOf(kind, nil)))
		if i < len(hashKinds) {
			sum = sumOf(kind, content)
			infected++
		} else {
			for j := range sum {
				sum[j] = byte(i + j)
			}
		}
		sigs = append(sigs, sigSpec{kind: kind, sum: sum, size: size, name: fmt.Sprintf("Bench.Corpus-%d", i)})
	}
	small := make([]string, smallFiles)
	for i := range small {
		small[i] = filepath.Join(dir, fmt.Sprintf("small-%04d", i))
		if err := os.WriteFile(small[i], data[i:i+latencyFileSize], 0o644); err != nil {
			return nil, fmt.Errorf("write corpus: %w", err)
		}
	}
	sizes[latencyFileSize] = true
	sigs = append(sigs, fillerSigs(dbSignatures-len(sigs), func(s int64) bool { return sizes[s] })...)
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		return nil, fmt.Errorf("write database: %w", err)
	}
	if err := writeHashDB(db, sigs); err != nil {
		return nil, err
	}
	eng, err := clamav.Load([]string{db}, nil)
	if err != nil {
		return nil, err
	}
	if got := eng.Report().Total(); got != dbSignatures {
		return nil, fmt.Errorf("engine loaded %d signatures, want %d", got, dbSignatures)
	}

	// The whole corpus, kinds in turn as the files come: the headline.
	all, err := scanFor(e, eng, corpus, minTime)
	if err != nil {
		return nil, err
	}
	if got := all.infected / all.passes; got != infected {
		return nil, fmt.Errorf("engine found %d infected corpus files per pass, want %d", got, infected)
	}
	rate := float64(all.bytes) / 1e6 / all.elapsed.Seconds()
	rows := []row{{
		figure:   fmt.Sprintf("built-in engine, hash signatures (%s corpus: md5, sha1, sha256 in turn), MB/s on one core", mib(all.bytes/int64(all.passes))),
		aim:      "≥ 1,000 (1 GB/s per core)",
		measured: fmt.Sprintf("%s MB/s", group(int64(rate))),
		ref:      "n/a (clamd)",
		met:      atLeast(rate, 1000),
	}}
	for _, kind := range hashKinds {
		s, err := scanFor(e, eng, byKind[kind], minTime/2)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{
			figure:   fmt.Sprintf("built-in engine, %s signature of the file's size, MB/s on one core", kind),
			measured: fmt.Sprintf("%s MB/s", group(int64(float64(s.bytes)/1e6/s.elapsed.Seconds()))),
		})
	}

	s, err := scanFor(e, eng, small, minTime)
	if err != nil {
		return nil, err
	}
	if s.infected > 0 {
		return nil, fmt.Errorf("engine found %d of the clean 4 KiB files infected", s.infected)
	}
	rows = append(rows, row{
		figure:   "built-in engine, 4 KiB files no signature's size matches, files/s on one core",
		measured: group(int64(float64(s.files) / s.elapsed.Seconds())),
		ref:      "n/a (clamd)",
	})
	return rows, nil
}

// scanStats sums the passes of scanFor.
type scanStats struct {
	passes, infected int
	files, bytes     int64
	elapsed          time.Duration
}

// scanFor scans paths in passes until minTime has passed, after one
// untimed pass that brings them into the page cache. Files are opened
// before the clock starts: this measures the engine, not open(2).
func scanFor(e *env, eng *clamav.Engine, paths []string, minTime time.Duration) (scanStats, error) {
	fs := make([]*os.File, 0, len(paths))
	defer func() {
		for _, f := range fs {
			f.Close()
		}
	}()
	var size int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return scanStats{}, fmt.Errorf("open corpus: %w", err)
		}
		fs = append(fs, f)
		fi, err := f.Stat()
		if err != nil {
			return scanStats{}, fmt.Errorf("stat corpus: %w", err)
		}
		size += fi.Size()
	}
	ctx := context.Background()
	onePass := func() (int, error) {
		infected := 0
		for _, f := range fs {
			res, err := eng.Scan(ctx, f)
			if err != nil {
				return 0, err
			}
			if res.Infected {
				infected++
			}
		}
		return infected, nil
	}
	if _, err := onePass(); err != nil {
		return scanStats{}, err
	}
	var s scanStats
	start := time.Now()
	for s.elapsed < minTime {
		if err := e.stopped(); err != nil {
			return s, err
		}
		n, err := onePass()
		if err != nil {
			return s, err
		}
		s.passes++
		s.infected += n
		s.files += int64(len(fs))
		s.bytes += size
		s.elapsed = time.Since(start)
	}
	return s, nil
}
