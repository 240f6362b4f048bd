package main

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// dbSignatures is the size of the generated databases: enough that the
// engine's size tables are not trivially small.
const dbSignatures = 1000

var hashKinds = []string{"md5", "sha1", "sha256"}

// sigSpec is one hash signature of a generated database.
type sigSpec struct {
	kind string // md5, sha1 or sha256
	sum  []byte
	size int64
	name string
}

// sumOf returns data's digest of kind.
func sumOf(kind string, data []byte) []byte {
	switch kind {
	case "md5":
		s := md5.Sum(data)
		return s[:]
	case "sha1":
		s := sha1.Sum(data)
		return s[:]
	default:
		s := sha256.Sum256(data)
		return s[:]
	}
}

// fillerSigs returns n signatures of random digests, kinds in turn, with
// sizes between 1 KiB and 16 MiB for which skip is false. The seed is
// fixed: every run loads the same database.
func fillerSigs(n int, skip func(size int64) bool) []sigSpec {
	rng := rand.New(rand.NewPCG(1, 2))
	sigs := make([]sigSpec, 0, n)
	for i := 0; len(sigs) < n; i++ {
		size := 1<<10 + rng.Int64N(16<<20)
		if skip != nil && skip(size) {
			continue
		}
		kind := hashKinds[i%len(hashKinds)]
		sum := make([]byte, len(sumOf(kind, nil)))
		for j := range sum {
			sum[j] = byte(rng.Uint32())
		}
		sigs = append(sigs, sigSpec{kind: kind, sum: sum, size: size, name: fmt.Sprintf("Bench.Filler-%d", i)})
	}
	return sigs
}

// writeHashDB writes sigs into dir as ClamAV databases: MD5 in bench.hdb,
// SHA-1 and SHA-256 in bench.hsb, as ClamAV's own files split them.
func writeHashDB(dir string, sigs []sigSpec) error {
	var hdb, hsb strings.Builder
	for _, s := range sigs {
		w := &hsb
		if s.kind == "md5" {
			w = &hdb
		}
		fmt.Fprintf(w, "%x:%d:%s\n", s.sum, s.size, s.name)
	}
	for name, text := range map[string]string{"bench.hdb": hdb.String(), "bench.hsb": hsb.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return fmt.Errorf("write database: %w", err)
		}
	}
	return nil
}

// daemonDB is the database the daemons load: 1,000 signatures, none of
// the 4 KiB the latency files weigh, so clean files are decided as a real
// database would decide most of them.
func (e *env) daemonDB() (string, error) {
	e.mu.Lock()
	db := e.db
	e.mu.Unlock()
	if db != "" {
		return db, nil
	}
	db, err := e.dir("db")
	if err != nil {
		return "", err
	}
	sigs := fillerSigs(dbSignatures, func(size int64) bool { return size == latencyFileSize })
	if err := writeHashDB(db, sigs); err != nil {
		return "", err
	}
	e.mu.Lock()
	e.db = db
	e.mu.Unlock()
	return db, nil
}

// randomBytes returns n bytes that no compressor or deduplicator shortens.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{'v', 'i', 'g', 'i', 'l'}).Read(b)
	return b
}
