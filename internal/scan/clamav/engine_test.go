package clamav

import (
	"archive/zip"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vigilsec/vigil/internal/scan"
)

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func md5Hex(s string) string    { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
func sha1Hex(s string) string   { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) }
func sha256Hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// scanString writes content to a temp file and scans it.
func scanString(t *testing.T, e *Engine, content string) scan.Result {
	t.Helper()
	p := writeFile(t, t.TempDir(), "sample", content)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := e.Scan(context.Background(), f)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return res
}

func mustLoad(t testing.TB, paths ...string) *Engine {
	t.Helper()
	e, err := Load(paths, nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return e
}

func TestEICAR(t *testing.T) {
	e := mustLoad(t) // no databases: EICAR is built in
	tests := []struct {
		name    string
		content string
		want    bool
	}{
		{"exact", EICAR, true},
		{"trailing CRLF", EICAR + "\r\n", true},
		{"trailing LF", EICAR + "\n", true},
		{"trailing mixed whitespace", EICAR + " \t\r\n\x1a", true},
		{"exactly 128 bytes", EICAR + strings.Repeat(" ", eicarMax-len(EICAR)), true},
		{"129 bytes", EICAR + strings.Repeat(" ", eicarMax-len(EICAR)+1), false},
		{"trailing non-whitespace", EICAR + "x", false},
		{"trailing whitespace then text", EICAR + "\r\nhello", false},
		{"leading space", " " + EICAR, false},
		{"truncated", EICAR[:len(EICAR)-1], false},
		{"one byte changed", strings.Replace(EICAR, "EICAR", "EICAS", 1), false},
		{"empty", "", false},
		{"large non-EICAR", strings.Repeat("a", 1<<20), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanString(t, e, tt.content)
			if got.Infected != tt.want {
				t.Fatalf("got infected=%v want %v", got.Infected, tt.want)
			}
			if tt.want && got.Signature != EICARSignature {
				t.Fatalf("got signature %q want %q", got.Signature, EICARSignature)
			}
			if !tt.want && got.Signature != "" {
				t.Fatalf("got signature %q on a clean file, want none", got.Signature)
			}
		})
	}
}

func TestScanIgnoresOffset(t *testing.T) {
	e := mustLoad(t)
	p := writeFile(t, t.TempDir(), "eicar.com", EICAR)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(10, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	res, err := e.Scan(context.Background(), f)
	if err != nil || !res.Infected {
		t.Fatalf("got %+v, %v want infected", res, err)
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil || off != 10 {
		t.Fatalf("got offset %d, %v after scan, want 10", off, err)
	}
}

func TestScanNotRegular(t *testing.T) {
	e := mustLoad(t)
	f, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := e.Scan(context.Background(), f)
	if err != nil || res.Infected {
		t.Fatalf("got %+v, %v want clean, nil", res, err)
	}
}

func TestHashSignatures(t *testing.T) {
	const (
		sample = "this is a harmless sample pretending to be malware\n"
		other  = "this is a harmless sample pretending to be malwarf\n" // same size
	)
	n := len(sample)
	tests := []struct {
		name    string
		file    string // database file name, decides the list
		db      string
		content string
		want    string // signature, "" for clean
	}{
		{"md5 sized", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5", md5Hex(sample), n), sample, "Test.MD5"},
		{"md5 upper-case hex", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5", strings.ToUpper(md5Hex(sample)), n), sample, "Test.MD5"},
		{"md5 any size", "a.hdb", fmt.Sprintf("%s:*:Test.MD5Any", md5Hex(sample)), sample, "Test.MD5Any"},
		{"md5 wrong size", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5", md5Hex(sample), n+1), sample, ""},
		{"md5 other content", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5", md5Hex(sample), n), other, ""},
		{"sha1 sized", "a.hsb", fmt.Sprintf("%s:%d:Test.SHA1", sha1Hex(sample), n), sample, "Test.SHA1"},
		{"sha1 any size", "a.hsb", fmt.Sprintf("%s:*:Test.SHA1Any:73", sha1Hex(sample)), sample, "Test.SHA1Any"},
		{"sha256 sized", "a.hsb", fmt.Sprintf("%s:%d:Test.SHA256", sha256Hex(sample), n), sample, "Test.SHA256"},
		{"sha256 any size", "a.hsb", fmt.Sprintf("%s:*:Test.SHA256Any:73", sha256Hex(sample)), sample, "Test.SHA256Any"},
		{"sha256 other content", "a.hsb", fmt.Sprintf("%s:*:Test.SHA256Any", sha256Hex(sample)), other, ""},
		{"comments and blank lines", "a.hdb", fmt.Sprintf("# comment\n\n   \n%s:%d:Test.MD5\r\n", md5Hex(sample), n), sample, "Test.MD5"},
		{"min flevel too high", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5:%d", md5Hex(sample), n, FunctionalityLevel+1), sample, ""},
		{"max flevel too low", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5:1:%d", md5Hex(sample), n, FunctionalityLevel-1), sample, ""},
		{"flevel range holds ours", "a.hdb", fmt.Sprintf("%s:%d:Test.MD5:1:%d", md5Hex(sample), n, FunctionalityLevel), sample, "Test.MD5"},
		{"allow list alone", "a.fp", fmt.Sprintf("%s:%d:Clean", md5Hex(sample), n), sample, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := writeFile(t, t.TempDir(), tt.file, tt.db+"\n")
			got := scanString(t, mustLoad(t, db), tt.content)
			if got.Signature != tt.want || got.Infected != (tt.want != "") {
				t.Fatalf("got %+v want signature %q", got, tt.want)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	const sample = "an allowed file that a bad signature also matches\n"
	n := len(sample)
	block := fmt.Sprintf("%s:%d:Test.MD5\n%s:%d:Test.SHA256\n", md5Hex(sample), n, sha256Hex(sample), n)
	tests := []struct {
		name    string
		files   map[string]string
		content string
		want    string
	}{
		{"no allow list", map[string]string{"a.hdb": block}, sample, "Test.MD5"},
		{"fp md5 wins", map[string]string{"a.hdb": block, "a.fp": fmt.Sprintf("%s:%d:Ok", md5Hex(sample), n)}, sample, ""},
		{"sfp sha1 wins", map[string]string{"a.hdb": block, "a.sfp": fmt.Sprintf("%s:%d:Ok", sha1Hex(sample), n)}, sample, ""},
		{"sfp sha256 any size wins", map[string]string{"a.hdb": block, "a.sfp": fmt.Sprintf("%s:*:Ok", sha256Hex(sample))}, sample, ""},
		{"fp of another size does not", map[string]string{"a.hdb": block, "a.fp": fmt.Sprintf("%s:%d:Ok", md5Hex(sample), n+1)}, sample, "Test.MD5"},
		{"fp of another file does not", map[string]string{"a.hdb": block, "a.fp": fmt.Sprintf("%s:%d:Ok", md5Hex("x"), n)}, sample, "Test.MD5"},
		{"fp clears EICAR", map[string]string{"a.fp": fmt.Sprintf("%s:%d:Ok", md5Hex(EICAR), len(EICAR))}, EICAR, ""},
		{"fp of a variant leaves EICAR", map[string]string{"a.fp": fmt.Sprintf("%s:%d:Ok", md5Hex(EICAR+"\n"), len(EICAR)+1)}, EICAR, EICARSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				writeFile(t, dir, name, content)
			}
			got := scanString(t, mustLoad(t, dir), tt.content)
			if got.Signature != tt.want || got.Infected != (tt.want != "") {
				t.Fatalf("got %+v want signature %q", got, tt.want)
			}
		})
	}
}

func TestLoadMalformed(t *testing.T) {
	good := md5Hex("x") + ":1:Good"
	tests := []struct {
		name string
		db   string
		line int
		want string
	}{
		{"short hash", "# c\n" + good + "\n" + strings.Repeat("a", 31) + ":5:Bad", 3, "hash has 31 hex digits, want 32, 40 or 64"},
		{"long hash", strings.Repeat("a", 65) + ":5:Bad", 1, "hash has 65 hex digits"},
		{"non-hex hash", strings.Repeat("g", 32) + ":5:Bad", 1, "non-hex character 'g' at column 1"},
		{"too few fields", md5Hex("x") + ":5", 1, "2 fields, want 3 to 5"},
		{"too many fields", md5Hex("x") + ":5:Bad:1:2:3", 1, "6 fields, want 3 to 5"},
		{"size not a number", md5Hex("x") + ":five:Bad", 1, `file size "five" is not a positive number or *`},
		{"size zero", md5Hex("x") + ":0:Bad", 1, `file size "0"`},
		{"size negative", md5Hex("x") + ":-5:Bad", 1, `file size "-5"`},
		{"empty name", md5Hex("x") + ":5:", 1, "empty malware name"},
		{"size with a space after", md5Hex("x") + ":5 :Bad", 1, `file size "5 "`},
		{"size signed twice", md5Hex("x") + ":+-5:Bad", 1, `file size "+-5"`},
		{"line too long", good + "\n" + strings.Repeat("a", maxLine+1), 2, "line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := writeFile(t, t.TempDir(), "x.hdb", tt.db)
			_, err := Load([]string{db}, nil)
			if err == nil {
				t.Fatalf("got no error want %q", tt.want)
			}
			loc := fmt.Sprintf("%s:%d: ", db, tt.line)
			if !strings.Contains(err.Error(), loc) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %q want it to contain %q and %q", err, loc, tt.want)
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.hdb", md5Hex("a")+":1:A\n"+md5Hex("b")+":1:B\n")
	writeFile(t, dir, "b.HSB", sha1Hex("c")+":1:C\n"+sha256Hex("d")+":*:D\n")
	writeFile(t, dir, "c.fp", md5Hex("e")+":1:E\n")
	writeFile(t, dir, "d.sfp", sha256Hex("f")+":1:F\n")
	writeFile(t, dir, "bytecode.cbc", "ClamBC binary junk")
	writeFile(t, dir, "daily.ldb", "Sig;Target:0;0;41414141\n")
	writeFile(t, dir, "extra.ldb", "Sig;Target:0;0;42424242\n")
	writeFile(t, dir, "body.ndb", "Sig:0:*:41414141\nHtml:3:*:42424242\n")
	writeFile(t, dir, "README.txt", "not a database")
	if err := os.Mkdir(filepath.Join(dir, "sub.hdb"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub.hdb"), "z.hdb", "garbage") // not recursed into

	r := mustLoad(t, dir).Report()
	if r.Files != 5 {
		t.Errorf("got %d files want 5", r.Files)
	}
	want := map[string]int{"md5": 2, "sha1": 1, "sha256": 1, "ndb": 1, "allow-md5": 1, "allow-sha1": 0, "allow-sha256": 1}
	for k, n := range want {
		if r.Signatures[k] != n {
			t.Errorf("got %s=%d want %d", k, r.Signatures[k], n)
		}
	}
	if r.Total() != 7 {
		t.Errorf("got total %d want 7", r.Total())
	}
	wantSkip := []Skip{{".cbc", 1, "not supported yet"}, {".ldb", 2, "not supported yet"}}
	if fmt.Sprint(r.Skipped) != fmt.Sprint(wantSkip) {
		t.Errorf("got skipped %v want %v", r.Skipped, wantSkip)
	}
	wantSigSkip := []SigSkip{{".ndb", "target 3 (HTML)", 1, reasonNormalise}}
	if fmt.Sprint(r.SkippedSignatures) != fmt.Sprint(wantSigSkip) {
		t.Errorf("got skipped signatures %v want %v", r.SkippedSignatures, wantSigSkip)
	}
	s := r.String()
	for _, sub := range []string{r.Version, "5 files", "7 signatures", "md5=2", "ndb=1", "allow-sha256=1", ".cbc=1 .ldb=2 (not supported yet)", "unused .ndb target-3-(HTML)=1 (" + reasonNormalise + ")"} {
		if !strings.Contains(s, sub) {
			t.Errorf("got report %q want it to contain %q", s, sub)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing", filepath.Join(dir, "nope.hdb"), "no such file"},
		{"explicit ldb", writeFile(t, dir, "x.ldb", "Sig;Target:0;0;41\n"), ".ldb databases are not supported yet"},
		{"explicit other", writeFile(t, dir, "x.txt", "hello\n"), "not a database we read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]string{tt.path}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v want error containing %q", err, tt.want)
			}
		})
	}
}

// countdownCtx is cancelled after its Err has been asked n times, which
// lands the cancellation between two chunks of one scan.
type countdownCtx struct {
	context.Context
	n atomic.Int32
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestScanContext(t *testing.T) {
	content := strings.Repeat("z", 4*chunk+1)
	dir := t.TempDir()
	db := writeFile(t, dir, "a.hsb", fmt.Sprintf("%s:%d:Big\n", sha256Hex(content), len(content)))
	e := mustLoad(t, db)
	p := writeFile(t, dir, "big", content)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), -1)
	defer cancel2()
	midway := &countdownCtx{Context: context.Background()}
	midway.n.Store(2)

	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled before", cancelled, context.Canceled},
		{"deadline passed", expired, context.DeadlineExceeded},
		{"cancelled between chunks", midway, context.Canceled},
		{"live", context.Background(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			res, err := e.Scan(tt.ctx, f)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v want %v", err, tt.want)
			}
			if tt.want == nil && res.Signature != "Big" {
				t.Fatalf("got %+v want Big", res)
			}
			if tt.want != nil && !strings.Contains(err.Error(), p) {
				t.Fatalf("got %q want the path in it", err)
			}
		})
	}
	if midway.n.Load() >= 0 {
		t.Fatalf("countdown not exhausted: the scan did not check ctx between chunks")
	}
}

func TestVersion(t *testing.T) {
	a := md5Hex("a") + ":1:A\n"
	b := sha256Hex("b") + ":*:B\n"
	load := func(files map[string]string) string {
		dir := t.TempDir()
		for name, content := range files {
			writeFile(t, dir, name, content)
		}
		return mustLoad(t, dir).Version()
	}
	base := load(map[string]string{"x.hdb": a + b})
	tests := []struct {
		name  string
		files map[string]string
		same  bool
	}{
		{"same files", map[string]string{"x.hdb": a + b}, true},
		{"other order", map[string]string{"x.hdb": b + a}, true},
		{"split across files", map[string]string{"x.hdb": b, "y.hsb": a}, true},
		{"comment added", map[string]string{"x.hdb": "# hi\n" + a + b}, true},
		{"skipped file added", map[string]string{"x.hdb": a + b, "z.ldb": "x"}, true},
		{"unused body signature added", map[string]string{"x.hdb": a + b, "z.ndb": "H:3:*:4142\n"}, true},
		{"body signature added", map[string]string{"x.hdb": a + b, "z.ndb": "B:0:*:4142\n"}, false},
		{"name changed", map[string]string{"x.hdb": md5Hex("a") + ":1:A2\n" + b}, false},
		{"size changed", map[string]string{"x.hdb": md5Hex("a") + ":2:A\n" + b}, false},
		{"hash changed", map[string]string{"x.hdb": md5Hex("c") + ":1:A\n" + b}, false},
		{"signature removed", map[string]string{"x.hdb": a}, false},
		{"moved to allow list", map[string]string{"x.hdb": b, "x.fp": a}, false},
		{"empty", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := load(tt.files)
			if (got == base) != tt.same {
				t.Fatalf("got version %s, base %s, want same=%v", got, base, tt.same)
			}
		})
	}
	if v1, v2 := mustLoad(t).Version(), mustLoad(t).Version(); v1 != v2 || v1 == "" {
		t.Fatalf("got versions %q and %q for no databases, want equal and set", v1, v2)
	}
}

func TestConcurrentScan(t *testing.T) {
	dir := t.TempDir()
	samples := map[string]string{
		"eicar":  EICAR,
		"md5":    strings.Repeat("m", 3*chunk/2),
		"sha1":   strings.Repeat("s", 1000),
		"sha256": strings.Repeat("t", 2*chunk),
		"clean":  strings.Repeat("c", 1000),
	}
	writeFile(t, dir, "a.hdb", fmt.Sprintf("%s:%d:M\n", md5Hex(samples["md5"]), len(samples["md5"])))
	writeFile(t, dir, "a.hsb", fmt.Sprintf("%s:%d:S\n%s:*:T\n", sha1Hex(samples["sha1"]), len(samples["sha1"]), sha256Hex(samples["sha256"])))
	e := mustLoad(t, dir)
	want := map[string]string{"eicar": EICARSignature, "md5": "M", "sha1": "S", "sha256": "T", "clean": ""}
	files := map[string]*os.File{}
	for name, content := range samples {
		f, err := os.Open(writeFile(t, t.TempDir(), name, content))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[name] = f // shared between goroutines: ReadAt does not move the offset
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				for name, f := range files {
					res, err := e.Scan(context.Background(), f)
					if err != nil || res.Signature != want[name] {
						errs <- fmt.Errorf("%s: got %+v, %v want %q", name, res, err, want[name])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTooSmall: libclamav scans nothing in a file of 5 bytes or fewer
// ("File is too small"), hash signatures included, and so nothing in an
// archive's member of that size.
func TestTooSmall(t *testing.T) {
	const five, six = "abcde", "abcdef"
	hashes := fmt.Sprintf("%s:5:Tiny\n%s:6:Six", md5Hex(five), md5Hex(six))
	anySize := fmt.Sprintf("%s:*:TinyAny:73\n%s:*:SixAny:73", sha256Hex(five), sha256Hex(six))
	zipped := func(data string) string {
		return string(zipOf(t, zip.Store, member{"m", []byte(data)}, member{"n", []byte("xyz")}))
	}
	runDBCases(t, []dbCase{
		{"md5 of 5 bytes", "t.hdb", hashes, five, ""},
		{"md5 of 6 bytes", "t.hdb", hashes, six, "Six"},
		{"sha256 any size, 5 bytes", "t.hsb", anySize, five, ""},
		{"sha256 any size, 6 bytes", "t.hsb", anySize, six, "SixAny"},
		{"body of 5 bytes", "t.ndb", "Body:0:*:61626364", five, ""},
		{"member of 5 bytes", "t.hdb", hashes, zipped(five), ""},
		{"member of 6 bytes", "t.hdb", hashes, zipped(six), "Six"},
	})
}
