package clamav

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func zipOf(t testing.TB, method uint16, ms ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, m := range ms {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: m.Name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tarOf(t testing.TB, ms ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range ms {
		if err := tw.WriteHeader(&tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipOf(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// nestZips puts data in n zips, one in the other.
func nestZips(t testing.TB, n int, data []byte) []byte {
	for i := range n {
		data = zipOf(t, zip.Deflate, member{fmt.Sprintf("level%d", i), data})
	}
	return data
}

// scanFileBytes is scanString for bytes: the signature found, if any.
func scanFileBytes(t *testing.T, e *Engine, data []byte) string {
	t.Helper()
	return scanString(t, e, string(data)).Signature
}

// What an archive holds is scanned as a file of its own, as libclamav
// scans it; clamscan, when installed, agrees on each case.
func TestArchiveMembers(t *testing.T) {
	eicar := []byte(EICAR)
	body := []byte("some text, then the marker ABCDEFGHIJ, then more")
	bomb := bytes.Repeat([]byte{0}, 2<<20) // past inMemory: unpacked to a memfd
	bz2, err := os.ReadFile(filepath.Join("testdata", "eicar.com.bz2"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hdb := writeFile(t, dir, "t.hdb", fmt.Sprintf("%s:%d:Test.Member.Hash\n", md5Hex("hashed member"), len("hashed member")))
	ndb := writeFile(t, dir, "t.ndb", "Test.Member.Body:0:*:4142434445464748494a\n")
	e := mustLoad(t, hdb, ndb)

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"EICAR in a zip, stored", zipOf(t, zip.Store, member{"eicar.com", eicar}), EICARSignature},
		{"EICAR in a zip, deflated", zipOf(t, zip.Deflate, member{"a.txt", body[:10]}, member{"eicar.com", eicar}), EICARSignature},
		{"EICAR in a zip in a zip (eicarcom2.zip)", nestZips(t, 2, eicar), EICARSignature},
		{"EICAR in a tar", tarOf(t, member{"x", []byte("clean")}, member{"eicar.com", eicar}), EICARSignature},
		{"EICAR in a tar.gz", gzipOf(t, tarOf(t, member{"d/eicar.com", eicar})), EICARSignature},
		{"EICAR gzip'd", gzipOf(t, eicar), EICARSignature},
		{"EICAR bzip2'd", bz2, EICARSignature},
		{"hash signature of a member", zipOf(t, zip.Deflate, member{"m", []byte("hashed member")}), "Test.Member.Hash"},
		{"body signature in a member", gzipOf(t, tarOf(t, member{"m", body})), "Test.Member.Body"},
		{"after a member unpacked to a memfd", zipOf(t, zip.Deflate, member{"zeros", bomb}, member{"eicar.com", eicar}), EICARSignature},
		{"body signature in a memfd member", gzipOf(t, append(bytes.Clone(bomb), body...)), "Test.Member.Body"},
		{"clean zip", zipOf(t, zip.Deflate, member{"a", []byte("hello")}, member{"b", bomb}), ""},
		{"EICAR with trailing bytes in a zip is not EICAR", zipOf(t, zip.Store, member{"x", append(bytes.Clone(eicar), "junk"...)}), ""},
		{"truncated zip", zipOf(t, zip.Deflate, member{"eicar.com", eicar})[:40], ""},
	}
	bin := clamscan(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanFileBytes(t, e, tt.data); got != tt.want {
				t.Errorf("found %q, want %q", got, tt.want)
			}
			if bin != "" && tt.want != EICARSignature { // clamscan's EICAR needs its own database
				if found := clamscanFound(t, bin, dir, tt.data); found != (tt.want != "") {
					t.Errorf("clamscan found something: %v, want %v", found, tt.want != "")
				}
			}
		})
	}
}

// An allow list entry for an archive clears it, members and all.
func TestArchiveAllowed(t *testing.T) {
	data := zipOf(t, zip.Store, member{"eicar.com", []byte(EICAR)})
	fp := writeFile(t, t.TempDir(), "t.fp", fmt.Sprintf("%s:%d:Allowed.Zip\n", md5Hex(string(data)), len(data)))
	if got := scanFileBytes(t, mustLoad(t, fp), data); got != "" {
		t.Errorf("allow-listed zip: found %q", got)
	}
}

// The bounds hold: nesting past maxArchiveDepth, members past
// maxArchiveMembers and bytes past maxUnpacked are not scanned, and
// neither is a zip whose directory is larger than maxZipDirectory.
func TestArchiveBounds(t *testing.T) {
	e := mustLoad(t)
	eicar := []byte(EICAR)
	if got := scanFileBytes(t, e, nestZips(t, maxArchiveDepth, eicar)); got != EICARSignature {
		t.Errorf("EICAR %d archives deep: found %q", maxArchiveDepth, got)
	}
	if got := scanFileBytes(t, e, nestZips(t, maxArchiveDepth+1, eicar)); got != "" {
		t.Errorf("EICAR %d archives deep: found %q, past the bound", maxArchiveDepth+1, got)
	}

	many := func(n int) []byte {
		ms := make([]member, n)
		for i := range ms {
			ms[i] = member{fmt.Sprint(i), nil}
		}
		ms[n-1].Data = eicar
		return zipOf(t, zip.Store, ms...)
	}
	if got := scanFileBytes(t, e, many(maxArchiveMembers)); got != EICARSignature {
		t.Errorf("EICAR as member %d: found %q", maxArchiveMembers, got)
	}
	if got := scanFileBytes(t, e, many(maxArchiveMembers+1)); got != "" {
		t.Errorf("EICAR as member %d: found %q, past the bound", maxArchiveMembers+1, got)
	}

	big := bytes.Repeat([]byte{0}, maxUnpacked)
	if got := scanFileBytes(t, e, zipOf(t, zip.Deflate, member{"zeros", big}, member{"eicar.com", eicar})); got != "" {
		t.Errorf("EICAR after %d bytes unpacked: found %q, past the bound", maxUnpacked, got)
	}

	long := strings.Repeat("n", 200)
	ms := make([]member, maxZipDirectory/(46+len(long))+1)
	for i := range ms {
		ms[i] = member{fmt.Sprintf("%s%06d", long, i), nil}
	}
	ms[0].Data = eicar
	if got := scanFileBytes(t, e, zipOf(t, zip.Store, ms...)); got != "" {
		t.Errorf("EICAR in a zip whose directory is over %d bytes: found %q", maxZipDirectory, got)
	}
}

// A scan of an archive ends with its context: unpacking does not outlive
// the deadline.
func TestArchiveCanceled(t *testing.T) {
	data := gzipOf(t, bytes.Repeat([]byte("x"), 8<<20))
	p := writeFile(t, t.TempDir(), "big.gz", string(data))
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	u := newUnpacking(ctx)
	r, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, _, _, err := unpack(ctx, r, u); !errors.Is(err, context.Canceled) {
		t.Errorf("unpack after cancel: %v, want context.Canceled", err)
	}
	if _, err := mustLoad(t).Scan(ctx, f); !errors.Is(err, context.Canceled) {
		t.Errorf("scan after cancel: %v, want context.Canceled", err)
	}
}

// slowReader gives a byte each millisecond, without end.
type slowReader struct{}

func (slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	p[0] = 'x'
	return 1, nil
}

// Under a deadline, unpacking ends halfway to it, with what it unpacked
// scanned and nothing more unpacked for the file: the scan's verdict comes
// in time.
func TestArchiveUnpackTimeBound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	u := newUnpacking(ctx)
	start := time.Now()
	_, n, done, err := unpack(ctx, slowReader{}, u)
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	done()
	if took := time.Since(start); took > 1500*time.Millisecond || n == 0 {
		t.Errorf("unpacked %d bytes in %v, want some, by halfway to the 2s deadline", n, took)
	}
	if u.members != 0 {
		t.Errorf("members left to unpack once the time is up: %d, want 0", u.members)
	}
}
