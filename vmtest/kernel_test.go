package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBzImage builds an image with the x86 boot header's fields set as a
// real bzImage has them, around payload.
func fakeBzImage(release string, payload []byte) []byte {
	const sects = 3
	img := make([]byte, (sects+1)*bootSectorLength)
	img[bootSetupSects] = sects
	copy(img[bootHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[bootVersion:], 0x20f)
	ver := 0x400
	copy(img[ver:], release+" (builder@example) #1 SMP\x00")
	binary.LittleEndian.PutUint16(img[bootKernelVer:], uint16(ver-0x200))
	const junk = 100 // the decompressor's code before the payload
	binary.LittleEndian.PutUint32(img[bootPayloadOff:], junk)
	binary.LittleEndian.PutUint32(img[bootPayloadLen:], uint32(len(payload)))
	img = append(img, make([]byte, junk)...)
	return append(append(img, payload...), 0xde, 0xad) // trailing bytes, as the real one has
}

// anELF is an ELF64 file to stand in for vmlinux: this test binary.
func anELF(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBzImage(t *testing.T) {
	elfData := anELF(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(elfData)
	zw.Close()
	// The kernel appends the relocation table to vmlinux before compressing.
	withRelocs := append(append([]byte{}, elfData...), bytes.Repeat([]byte{1, 2, 3, 4}, 64)...)
	var gzRelocs bytes.Buffer
	zw = gzip.NewWriter(&gzRelocs)
	zw.Write(withRelocs)
	zw.Close()

	tests := []struct {
		name        string
		img         []byte
		wantRelease string
		wantComp    string
		wantErr     string
	}{
		{name: "gzip", img: fakeBzImage("6.1.0-57-amd64", gz.Bytes()), wantRelease: "6.1.0-57-amd64", wantComp: "gzip"},
		{name: "gzip with relocations", img: fakeBzImage("6.12.117+deb12-amd64", gzRelocs.Bytes()), wantRelease: "6.12.117+deb12-amd64", wantComp: "gzip"},
		{name: "unknown compression", img: fakeBzImage("6.1.0", []byte("not compressed at all")), wantRelease: "6.1.0", wantErr: "compression not recognized"},
		{name: "not a bzImage", img: make([]byte, 4096), wantErr: "not a bzImage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "vmlinuz")
			if err := os.WriteFile(file, tt.img, 0o644); err != nil {
				t.Fatal(err)
			}
			bz, err := readBzImage(file)
			if err != nil {
				if tt.wantErr == "" || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v want %q", err, tt.wantErr)
				}
				return
			}
			rel, err := bz.Release()
			if err != nil || rel != tt.wantRelease {
				t.Fatalf("Release: got %q, %v want %q", rel, err, tt.wantRelease)
			}
			p, comp, err := bz.Payload()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Payload: got error %v want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || comp != tt.wantComp {
				t.Fatalf("Payload: got %s, %v want %s", comp, err, tt.wantComp)
			}
			raw, err := decompress(p, comp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := trimELF(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, elfData) {
				t.Errorf("got a %d-byte vmlinux want the %d-byte ELF", len(got), len(elfData))
			}
			// A Go binary has no Xen PVH note: prepareKernel boots the image.
			if hasPVH(got) {
				t.Error("got a PVH note in a Go binary")
			}
			k, err := prepareKernel(file, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if k.Image != file || !strings.Contains(k.Note, "PVH") {
				t.Errorf("got image %s note %q want the bzImage and why", k.Image, k.Note)
			}
		})
	}
}

func TestDecompressTools(t *testing.T) {
	elfData := anELF(t)[:1<<20]
	for _, c := range []struct{ name, tool string }{{"xz", "xz"}, {"zstd", "zstd"}} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				t.Skipf("%s not installed", c.tool)
			}
			cmd := exec.Command(c.tool, "-c")
			cmd.Stdin = bytes.NewReader(elfData)
			comp, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			bz, err := readBzImageBytes(fakeBzImage("6.12.0", comp))
			if err != nil {
				t.Fatal(err)
			}
			p, name, err := bz.Payload()
			if err != nil || name != c.name {
				t.Fatalf("got %s, %v want %s", name, err, c.name)
			}
			got, err := decompress(p, name)
			if err != nil || !bytes.Equal(got, elfData) {
				t.Fatalf("got %d bytes, %v want the %d compressed", len(got), err, len(elfData))
			}
		})
	}
}

// TestInstalledKernels extracts the vmlinux of each installed kernel of the
// list: it must be an ELF with the PVH note, or vmtest boots slowly.
func TestInstalledKernels(t *testing.T) {
	if os.Getenv("VMTEST_GUEST") == "1" {
		t.Skip("the host's job: unpacking under emulation only costs time")
	}
	list := listedKernels(t)
	if len(list) == 0 {
		t.Skip("no kernel of vmtest/kernels.txt is installed (make vmtest-deps)")
	}
	for _, file := range list {
		t.Run(filepath.Base(file), func(t *testing.T) {
			k, err := prepareKernel(file, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if k.Note != "" || k.Image == file {
				t.Fatalf("got no vmlinux: %s", k.Note)
			}
			want := strings.TrimPrefix(filepath.Base(file), "vmlinuz-")
			if k.Release != want {
				t.Errorf("got release %s want %s", k.Release, want)
			}
		})
	}
}

// listedKernels returns the image files of vmtest/kernels.txt's kernels that
// are installed.
func listedKernels(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("kernels.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := parseKernelList(f)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, n := range names {
		if file := findKernel(n); fileExists(file) {
			files = append(files, file)
		}
	}
	return files
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}
