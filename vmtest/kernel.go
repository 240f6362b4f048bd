package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The x86 boot protocol's setup header (Documentation/arch/x86/boot.rst):
// these are offsets into a bzImage, not kernel ABI numbers x/sys offers.
const (
	bootSetupSects   = 0x1f1 // u8, 0 means 4
	bootHeaderMagic  = 0x202 // "HdrS"
	bootVersion      = 0x206 // u16 protocol version
	bootKernelVer    = 0x20e // u16 offset of the version string, minus 0x200
	bootPayloadOff   = 0x248 // u32, from the start of the protected-mode code
	bootPayloadLen   = 0x24c // u32
	bootMinProtocol  = 0x208 // payload fields exist from protocol 2.08
	bootSectorLength = 512
)

// bzImage is a compressed x86 kernel image.
type bzImage struct {
	data []byte
}

func readBzImage(file string) (*bzImage, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	bz, err := readBzImageBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return bz, nil
}

func readBzImageBytes(data []byte) (*bzImage, error) {
	if len(data) < bootPayloadLen+4 || string(data[bootHeaderMagic:bootHeaderMagic+4]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS boot header)")
	}
	return &bzImage{data: data}, nil
}

// Release is the kernel's release (uname -r), the first word of the
// version string the boot header points at.
func (b *bzImage) Release() (string, error) {
	off := int(binary.LittleEndian.Uint16(b.data[bootKernelVer:])) + 0x200
	if off >= len(b.data) {
		return "", errors.New("kernel version offset past the image")
	}
	s := b.data[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	f := strings.Fields(string(s))
	if len(f) == 0 {
		return "", errors.New("empty kernel version string")
	}
	return f[0], nil
}

// Payload is the compressed vmlinux inside the image and the name of its
// compression.
func (b *bzImage) Payload() ([]byte, string, error) {
	if v := binary.LittleEndian.Uint16(b.data[bootVersion:]); v < bootMinProtocol {
		return nil, "", fmt.Errorf("boot protocol %d.%02d has no payload fields", v>>8, v&0xff)
	}
	sects := int(b.data[bootSetupSects])
	if sects == 0 {
		sects = 4
	}
	start := (sects+1)*bootSectorLength + int(binary.LittleEndian.Uint32(b.data[bootPayloadOff:]))
	end := start + int(binary.LittleEndian.Uint32(b.data[bootPayloadLen:]))
	if start >= end || end > len(b.data) {
		return nil, "", fmt.Errorf("payload %d-%d outside the image (%d bytes)", start, end, len(b.data))
	}
	p := b.data[start:end]
	for _, c := range compressions {
		if bytes.HasPrefix(p, c.magic) {
			return p, c.name, nil
		}
	}
	return nil, "", fmt.Errorf("payload compression not recognized (starts % x)", p[:min(len(p), 6)])
}

// compressions are the payload formats we can open: gzip in Go, the others
// through the host's own tools, since the standard library has no xz or zstd.
var compressions = []struct {
	name  string
	magic []byte
	tool  []string
}{
	{"gzip", []byte{0x1f, 0x8b}, nil},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, []string{"xz", "-dcq"}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dcq"}},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}, []string{"lz4", "-dcq"}},
	{"bzip2", []byte("BZh"), []string{"bzip2", "-dcq"}},
	{"lzma", []byte{0x5d, 0x00, 0x00}, []string{"xz", "--format=lzma", "-dcq"}},
}

func decompress(p []byte, name string) ([]byte, error) {
	for _, c := range compressions {
		if c.name != name {
			continue
		}
		if c.tool == nil {
			zr, err := gzip.NewReader(bytes.NewReader(p))
			if err != nil {
				return nil, err
			}
			// The kernel's gzip stream is followed by the decompressed size.
			zr.Multistream(false)
			return io.ReadAll(zr)
		}
		if _, err := exec.LookPath(c.tool[0]); err != nil {
			return nil, fmt.Errorf("%s payload needs the %s command: %w", name, c.tool[0], err)
		}
		cmd := exec.Command(c.tool[0], c.tool[1:]...)
		cmd.Stdin = bytes.NewReader(p)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		// The payload may carry trailing bytes (the size the kernel's own
		// decompressor wants): a complaint about them after a full ELF is
		// no failure.
		if err != nil && !bytes.HasPrefix(out, []byte(elf.ELFMAG)) {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(c.tool, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown compression %s", name)
}

// trimELF cuts what follows an ELF image (the relocation table a
// relocatable kernel appends to vmlinux before compressing it) and checks
// that the ELF parses.
func trimELF(data []byte) ([]byte, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse vmlinux: %w", err)
	}
	defer f.Close()
	var end uint64
	for _, p := range f.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, s.Offset+s.FileSize)
		}
	}
	// The section header table sits at the end of the file.
	if f.Class != elf.ELFCLASS64 {
		return nil, errors.New("vmlinux is not a 64-bit ELF")
	}
	var hdr elf.Header64
	if err := binary.Read(bytes.NewReader(data), f.ByteOrder, &hdr); err != nil {
		return nil, fmt.Errorf("parse vmlinux header: %w", err)
	}
	shoff, shnum, shentsize := hdr.Shoff, uint64(hdr.Shnum), uint64(hdr.Shentsize)
	end = max(end, shoff+shnum*shentsize)
	if end > uint64(len(data)) {
		return nil, fmt.Errorf("vmlinux ELF claims %d bytes, has %d", end, len(data))
	}
	return data[:end], nil
}

// hasPVH reports whether the ELF carries the Xen PVH entry note that lets
// qemu boot it directly (CONFIG_PVH).
func hasPVH(data []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return false
	}
	defer f.Close()
	const xenElfnotePhys32Entry = 18 // include/xen/interface/elfnote.h
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return false
		}
		for len(notes) >= 12 {
			namesz := int(binary.LittleEndian.Uint32(notes[0:]))
			descsz := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			name := notes[12:min(len(notes), 12+namesz)]
			if typ == xenElfnotePhys32Entry && bytes.HasPrefix(name, []byte("Xen")) {
				return true
			}
			next := 12 + align4(namesz) + align4(descsz)
			if next > len(notes) {
				break
			}
			notes = notes[next:]
		}
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }

// kernel is what a guest boots: the image qemu loads and where its modules
// are.
type kernel struct {
	Name    string // as the table shows it
	Release string
	Image   string          // vmlinux (PVH) when extracted, else the bzImage
	Modules string          // /lib/modules/<release>
	Note    string          // why the compressed image is booted, if it is
	Config  map[string]bool // the =y options of its config file, nil if none was found
}

// prepareKernel finds the release of the bzImage at file, extracts its
// vmlinux into cacheDir (once: keyed by release and image size and time) and
// returns what to boot. A vmlinux that cannot be had is no error: the
// bzImage boots too, only slower under emulation, and Note says why.
func prepareKernel(file, cacheDir string) (*kernel, error) {
	bz, err := readBzImage(file)
	if err != nil {
		return nil, err
	}
	rel, err := bz.Release()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	k := &kernel{Name: rel, Release: rel, Image: file, Modules: filepath.Join("/lib/modules", rel)}
	k.Config = readConfig(filepath.Join(filepath.Dir(file), "config-"+rel))
	st, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	cached := filepath.Join(cacheDir, fmt.Sprintf("vmlinux-%s-%d-%d", rel, st.Size(), st.ModTime().Unix()))
	if _, err := os.Stat(cached); err == nil {
		k.Image = cached
		return k, nil
	}
	vmlinux, err := extractVmlinux(bz)
	if err != nil {
		k.Note = fmt.Sprintf("booting the bzImage: %v", err)
		return k, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	tmp := cached + ".tmp"
	if err := os.WriteFile(tmp, vmlinux, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, cached); err != nil {
		return nil, err
	}
	k.Image = cached
	return k, nil
}

func extractVmlinux(bz *bzImage) ([]byte, error) {
	p, comp, err := bz.Payload()
	if err != nil {
		return nil, err
	}
	raw, err := decompress(p, comp)
	if err != nil {
		return nil, fmt.Errorf("decompress %s payload: %w", comp, err)
	}
	vmlinux, err := trimELF(raw)
	if err != nil {
		return nil, err
	}
	if !hasPVH(vmlinux) {
		return nil, errors.New("vmlinux has no PVH entry note (CONFIG_PVH): qemu cannot boot it directly")
	}
	return vmlinux, nil
}

// readConfig reads the built-in (=y) options of a kernel config file, as
// Debian installs it beside the image; nil when there is none.
func readConfig(file string) map[string]bool {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	opts := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		if name, ok := strings.CutSuffix(strings.TrimSpace(line), "=y"); ok {
			opts[name] = true
		}
	}
	return opts
}
