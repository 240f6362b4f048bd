package clamav

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vigilsec/vigil/internal/scan/clamav/clamavtest"
)

// benchCorpus writes 64 MiB in 16 files: executables from /usr/bin where
// there are some, text, random (compressed-like) and sparse data.
func benchCorpus(b *testing.B, dir string) (paths []string, total int64) {
	b.Helper()
	const fileSize = 4 << 20
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
	for i := range 16 {
		data := make([]byte, 0, fileSize)
		switch i % 4 {
		case 0: // executables, concatenated
			for len(data) < fileSize && len(exes) > 0 {
				x, err := os.ReadFile(exes[r.IntN(len(exes))])
				if err == nil {
					data = append(data, x...)
				}
			}
		case 1: // text
			for len(data) < fileSize {
				data = append(data, words[r.IntN(len(words))]...)
				data = append(data, " \n"[r.IntN(2)])
			}
		case 3: // sparse
			for len(data) < fileSize {
				if r.IntN(8) == 0 {
					data = append(data, byte(r.IntN(256)))
				} else {
					data = append(data, 0)
				}
			}
		}
		for len(data) < fileSize { // random, and filler
			data = append(data, byte(r.Uint32()))
		}
		data = data[:fileSize]
		p := filepath.Join(dir, fmt.Sprintf("corpus-%02d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
		total += fileSize
	}
	return paths, total
}

// BenchmarkScanNDB scans a 64 MiB mixed corpus with 10,000 and 100,000
// body signatures, binary ones (no normalised pass), and 10,000 with
// 1,000 text ones more (a normalised pass of the text files and of most
// random ones, which libclamav takes for UTF-16 text). Set VIGIL_BENCH_DIR to keep the corpus and databases
// there for a side-by-side `clamscan -d DIR/sigs-N.ndb DIR/corpus-*`.
func BenchmarkScanNDB(b *testing.B) {
	dir := os.Getenv("VIGIL_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	paths, total := benchCorpus(b, dir)
	for _, set := range []struct {
		n, text int
	}{{10000, 0}, {100000, 0}, {10000, 1000}} {
		name := fmt.Sprint(set.n)
		if set.text > 0 {
			name += fmt.Sprintf("+text%d", set.text)
		}
		b.Run(name, func(b *testing.B) {
			sigs := append(clamavtest.BodySignatures(set.n, 1), textSignatures(set.text, 2)...)
			db := writeFile(b, dir, fmt.Sprintf("sigs-%s.ndb", name), strings.Join(sigs, "\n")+"\n")
			e := mustLoad(b, db)
			files := make([]*os.File, len(paths))
			for i, p := range paths {
				f, err := os.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				files[i] = f
			}
			b.SetBytes(total)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, f := range files {
					res, err := e.Scan(context.Background(), f)
					if err != nil || res.Infected {
						b.Fatalf("got %+v, %v want clean", res, err)
					}
				}
			}
		})
	}
}

// textSignatures returns n signatures of lower-case ASCII, as script
// malware signatures are, which the normalised pass of text files
// matches: 20 to 40 letters and spaces, at any offset, target 0 or 7.
func textSignatures(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 9))
	out := make([]string, 0, n)
	for i := range n {
		var sb strings.Builder
		for range 20 + r.IntN(21) {
			fmt.Fprintf(&sb, "%02x", "abcdefghijklmnopqrstuvwxyz ();="[r.IntN(31)])
		}
		out = append(out, fmt.Sprintf("Text.%d:%d:*:%s", i, []int{0, 7}[r.IntN(2)], sb.String()))
	}
	return out
}

// BenchmarkLoadNDB measures loading 100,000 body signatures, and the heap
// the loaded engine keeps.
func BenchmarkLoadNDB(b *testing.B) {
	db := writeFile(b, b.TempDir(), "sigs.ndb", strings.Join(clamavtest.BodySignatures(100000, 1), "\n")+"\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load([]string{db}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := mustLoad(b, db)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
	runtime.KeepAlive(e)
}
