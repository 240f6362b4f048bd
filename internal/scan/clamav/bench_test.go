package clamav

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var benchSizes = []struct {
	name string
	size int
}{
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
	{"64MiB", 64 << 20},
}

func benchFile(b *testing.B, dir string, size int) (*os.File, []byte) {
	b.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(dir, fmt.Sprintf("sample-%d", size))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f, data
}

func benchScan(b *testing.B, e *Engine, f *os.File, size int, want bool) {
	b.Helper()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Scan(context.Background(), f)
		if err != nil || res.Infected != want {
			b.Fatalf("got %+v, %v want infected=%v", res, err, want)
		}
	}
}

// BenchmarkScanHashHit scans files whose size matches a signature, so
// every scan reads and hashes the whole file.
func BenchmarkScanHashHit(b *testing.B) {
	hexOf := map[string]func(string) string{"md5": md5Hex, "sha1": sha1Hex, "sha256": sha256Hex}
	for _, kind := range []string{"md5", "sha1", "sha256"} {
		for _, sz := range benchSizes {
			b.Run(kind+"/"+sz.name, func(b *testing.B) {
				dir := b.TempDir()
				f, data := benchFile(b, dir, sz.size)
				ext := ".hsb"
				if kind == "md5" {
					ext = ".hdb"
				}
				db := writeFile(b, dir, "bench"+ext, fmt.Sprintf("%s:%d:Bench.Hit\n", hexOf[kind](string(data)), sz.size))
				benchScan(b, mustLoad(b, db), f, sz.size, true)
			})
		}
	}
}

// BenchmarkScanNoSizeMatch scans files no signature's size matches: the
// common case, decided without reading.
func BenchmarkScanNoSizeMatch(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(sz.name, func(b *testing.B) {
			dir := b.TempDir()
			f, _ := benchFile(b, dir, sz.size)
			db := writeFile(b, dir, "bench.hdb", fmt.Sprintf("%s:%d:A\n%s:%d:B\n",
				md5Hex("a"), sz.size+1, sha256Hex("b"), sz.size-1))
			benchScan(b, mustLoad(b, db), f, sz.size, false)
		})
	}
}
