package clamav

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tinyMachO builds a 32-bit x86 Mach-O of 0x200 bytes: one LC_SEGMENT
// with one section of 0x40 bytes at file offset 0x100, code at at. Its
// entry point is 0, as libclamav takes it for x86.
func tinyMachO(code []byte, at int) []byte {
	f := make([]byte, 0x200)
	le := binary.LittleEndian
	le.PutUint32(f[0:], 0xfeedface) // written little-endian: cefaedfe
	le.PutUint32(f[4:], 7)          // x86
	le.PutUint32(f[12:], 2)         // MH_EXECUTE
	le.PutUint32(f[16:], 1)         // ncmds
	le.PutUint32(f[20:], 56+68)
	seg := f[28:]
	le.PutUint32(seg[0:], 1) // LC_SEGMENT
	le.PutUint32(seg[4:], 56+68)
	copy(seg[8:], "__TEXT")
	le.PutUint32(seg[24:], 0x1000) // vmaddr
	le.PutUint32(seg[28:], 0x200)  // vmsize
	le.PutUint32(seg[36:], 0x200)  // filesize
	le.PutUint32(seg[48:], 1)      // nsects
	sect := seg[56:]
	copy(sect[0:], "__text")
	copy(sect[16:], "__TEXT")
	le.PutUint32(sect[32:], 0x1100) // addr
	le.PutUint32(sect[36:], 0x40)   // size
	le.PutUint32(sect[40:], 0x100)  // offset
	copy(f[at:], code)
	return f
}

// fatArch is one architecture of a universal file: off and size 0 place
// the slice after the previous one, 0x1000-aligned.
type fatArch struct {
	data      []byte
	off, size uint32
}

// fatOf builds a universal (fat) Mach-O file of the slices.
func fatOf(archs ...fatArch) []byte {
	f := binary.BigEndian.AppendUint32(nil, 0xcafebabe)
	f = binary.BigEndian.AppendUint32(f, uint32(len(archs)))
	at := uint32(0x1000)
	type placed struct{ off, size uint32 }
	var ps []placed
	for _, a := range archs {
		off, size := a.off, a.size
		if off == 0 {
			off, size = at, uint32(len(a.data))
			at += (size + 0xfff) &^ 0xfff
		}
		ps = append(ps, placed{off, size})
		for _, v := range []uint32{7, 3, off, size, 12} {
			f = binary.BigEndian.AppendUint32(f, v)
		}
	}
	for i, a := range archs {
		if a.off == 0 {
			f = append(f, make([]byte, int(ps[i].off)-len(f))...)
			f = append(f, a.data...)
		}
	}
	return f
}

func padTo(b []byte, n int) string { return string(b) + strings.Repeat("\x00", n-len(b)) }

func TestFatMachO(t *testing.T) {
	one := tinyMachO([]byte("slice one code"), 0x100)
	two := tinyMachO([]byte("VIGILTWO"), 0x180)
	fat := fatOf(fatArch{data: one}, fatArch{data: two})
	hexOf := func(s string) string { return fmt.Sprintf("%x", s) }
	java := "\xca\xfe\xba\xbe\x00\x00\x00\x34" + strings.Repeat("\x00", 40) + "VIGILTWO" + strings.Repeat("\x00", 40)
	var archs32 []fatArch
	for range 32 {
		archs32 = append(archs32, fatArch{data: two})
	}
	tests := []dbCase{
		{"any offset", "t.ndb", "F:9:*:" + hexOf("VIGILTWO"), string(fat), "F"},
		{"whole file is Mach-O", "t.ndb", "F:9:0:cafebabe00000002", string(fat), "F"},
		{"slice offset 0", "t.ndb", "F:9:0:cefaedfe07000000", string(fat), "F"},
		{"slice EP+0", "t.ndb", "F:9:EP+0:cefaedfe07000000", string(fat), "F"},
		{"slice S0+0", "t.ndb", "F:9:S0+0:" + hexOf("slice one"), string(fat), "F"},
		{"slice S0+0 is not the file's", "t.ndb", "F:9:S0+0:" + hexOf("VIGILTWO"), string(fat), ""},
		{"slice EOF-n", "t.ndb", "F:9:EOF-128:" + hexOf("VIGILTWO"), string(fat), "F"},
		{"no EP in the whole file", "t.ndb", "F:9:EP+0:cafebabe00000002", string(fat), ""},
		{"PE target", "t.ndb", "F:1:*:" + hexOf("VIGILTWO"), string(fat), ""},
		{"slice hash", "t.hdb", fmt.Sprintf("%s:%d:F", md5Hex(string(two)), len(two)), string(fat), "F"},
		{"slice of size 0 runs to the end", "t.ndb", "F:9:EOF-128:" + hexOf("VIGILTWO"),
			padTo(fatOf(fatArch{data: one}, fatArch{off: 0x2000}), 0x2000) + string(two), "F"},
		{"slice past the end is cut", "t.ndb", "F:9:EOF-128:" + hexOf("VIGILTWO"),
			padTo(fatOf(fatArch{data: one}, fatArch{off: 0x2000, size: 0x10000}), 0x2000) + string(two), "F"},
		{"slice starting past the end", "t.ndb", "F:9:0:cefaedfe07000000",
			string(fatOf(fatArch{off: 0x9000, size: 0x200}, fatArch{data: two})), "F"},
		{"fat in fat", "t.ndb", "F:9:0:cefaedfe07000000", string(fatOf(fatArch{data: fatOf(fatArch{data: two})})), "F"},
		{"31 architectures", "t.ndb", "F:9:*:" + hexOf("VIGILTWO"), string(fatOf(archs32[:31]...)), "F"},
		{"32 architectures are Java's", "t.ndb", "F:9:*:" + hexOf("VIGILTWO"), string(fatOf(archs32...)), ""},
		{"Java class file", "t.ndb", "F:9:*:" + hexOf("VIGILTWO"), java, ""},
		{"Java class file, any target", "t.ndb", "F:0:*:" + hexOf("VIGILTWO"), java, "F"},
	}
	runDBCases(t, tests)
}

// TestFatMachOGo is the audit's repro, on Go's own universal test binary.
func TestFatMachOGo(t *testing.T) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Skipf("go env GOROOT: %v", err)
	}
	b64, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "src/debug/macho/testdata/fat-gcc-386-amd64-darwin-exec.base64"))
	if err != nil {
		t.Skipf("Go's test binary: %v", err)
	}
	fat, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b64)))
	if err != nil {
		t.Fatal(err)
	}
	runDBCases(t, []dbCase{
		{"any offset", "t.ndb", "S:9:*:00000000000000000200", string(fat), "S"},
		{"slice offset 0", "t.ndb", "S:9:0:cefaedfe07000000", string(fat), "S"},
		{"64-bit slice offset 0", "t.ndb", "S:9:0:cffaedfe07000001", string(fat), "S"},
	})
	if c := classOf(fat); c != classMachO {
		t.Errorf("got class %d want Mach-O", c)
	}
}

// TestFatSlicesBudget: slices count against what a scan may unpack.
func TestFatSlicesBudget(t *testing.T) {
	e, _ := loadNDB(t, "F:9:0:cefaedfe07000000"+"*"+fmt.Sprintf("%x", "VIGILTWO"))
	fat := fatOf(fatArch{data: tinyMachO(nil, 0)}, fatArch{data: tinyMachO([]byte("VIGILTWO"), 0x180)})
	for _, tt := range []struct {
		bytes int64
		want  bool
	}{{0x400, true}, {0x388, true}, {0x387, false}, {0x200, false}} {
		u := &unpacking{bytes: tt.bytes, members: maxArchiveMembers}
		res, err := e.scanFile(t.Context(), bytes.NewReader(fat), int64(len(fat)), "fat", u, 0)
		if err != nil || res.Infected != tt.want {
			t.Errorf("budget %#x: got %+v, %v want infected=%v", tt.bytes, res, err, tt.want)
		}
	}
}
