package clamav

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigilsec/vigil/internal/scan"
)

// loadNDB loads an engine from .ndb lines.
func loadNDB(t testing.TB, lines ...string) (*Engine, string) {
	t.Helper()
	db := writeFile(t, t.TempDir(), "t.ndb", strings.Join(lines, "\n")+"\n")
	return mustLoad(t, db), db
}

func scanData(t testing.TB, e *Engine, data []byte) scan.Result {
	t.Helper()
	res, _, err := e.scan(context.Background(), bytes.NewReader(data), int64(len(data)), "mem")
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return res
}

// clamscan, when installed, checks our expectations against ClamAV itself.
func clamscan(t *testing.T) string {
	t.Helper()
	if testing.Short() || os.Getenv("VIGIL_NO_CLAMSCAN") != "" {
		return ""
	}
	p, err := exec.LookPath("clamscan")
	if err != nil {
		return ""
	}
	return p
}

func clamscanFound(t *testing.T, bin, db string, data []byte) bool {
	t.Helper()
	f := writeFile(t, t.TempDir(), "sample", string(data))
	out, err := exec.Command(bin, "--no-summary", "-d", db, f).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return true
	}
	t.Fatalf("clamscan: %v: %s", err, out)
	return false
}

type grammarCase struct {
	name string
	sig  string // target:offset:hex
	data string
	want bool
}

func grammarCases() []grammarCase {
	gap := func(n int) string { return strings.Repeat("-", n) }
	return []grammarCase{
		{"exact", "0:*:41424344", "xxABCDyy", true},
		{"exact miss", "0:*:41424344", "xxABCEyy", false},
		{"lower-case hex", "0:*:6162636465", "..abcde..", true},
		{"?? any byte", "0:*:4142??4445", "AB_DE.", true},
		{"?? needs a byte", "0:*:4142??4445", "ABDE..", false},
		{"high nibble", "0:*:41424?4445", "ABJDE.", true},
		{"high nibble miss", "0:*:41424?4445", "ABZDE.", false},
		{"low nibble", "0:*:4142?34445", "ABSDE.", true},
		{"low nibble miss", "0:*:4142?34445", "ABTDE.", false},
		{"star", "0:*:41424344*45464748", "ABCD....EFGH", true},
		{"star adjacent", "0:*:41424344*45464748", "ABCDEFGH", true},
		{"star order", "0:*:41424344*45464748", "EFGH....ABCD", false},
		{"{n} inlined exact", "0:*:41424344{3}45464748", "ABCDxyzEFGH", true},
		{"{n} inlined short", "0:*:41424344{3}45464748", "ABCDxyEFGH", false},
		{"{n} inlined long", "0:*:41424344{3}45464748", "ABCDwxyzEFGH", false},
		{"{n} jump exact", "0:*:41424344{200}45464748", "ABCD" + gap(200) + "EFGH", true},
		{"{n} jump short", "0:*:41424344{200}45464748", "ABCD" + gap(199) + "EFGH", false},
		{"{n} jump long", "0:*:41424344{200}45464748", "ABCD" + gap(201) + "EFGH", false},
		{"{-n} zero", "0:*:41424344{-3}45464748", "ABCDEFGH", true},
		{"{-n} max", "0:*:41424344{-3}45464748", "ABCD---EFGH", true},
		{"{-n} over", "0:*:41424344{-3}45464748", "ABCD----EFGH", false},
		{"{n-} under", "0:*:41424344{2-}45464748", "ABCD-EFGH", false},
		{"{n-} min", "0:*:41424344{2-}45464748", "ABCD--EFGH", true},
		{"{n-} far", "0:*:41424344{2-}45464748", "ABCD" + gap(3000) + "EFGH", true},
		{"{n-m} under", "0:*:41424344{2-4}45464748", "ABCD-EFGH", false},
		{"{n-m} min", "0:*:41424344{2-4}45464748", "ABCD--EFGH", true},
		{"{n-m} max", "0:*:41424344{2-4}45464748", "ABCD----EFGH", true},
		{"{n-m} over", "0:*:41424344{2-4}45464748", "ABCD-----EFGH", false},
		{"{n-m} second try", "0:*:41424344{2-4}45464748", "ABCD------ABCD--EFGH", true},
		{"{0} is unbounded as in libclamav", "0:*:41424344{0}45464748", "ABCD----EFGH", true},
		{"{n-0} is {n-}", "0:*:41424344{2-0}45464748", "ABCD-----EFGH", true},
		{"{n-0} minimum", "0:*:41424344{2-0}45464748", "ABCD-EFGH..", false},
		{"three parts", "0:*:41424344*45464748{1-2}494a4b4c", "ABCD.EFGH-IJKL", true},
		{"three parts gap", "0:*:41424344*45464748{1-2}494a4b4c", "ABCD.EFGH---IJKL", false},
		{"byte alternative", "0:*:4142(43|58)4445", "ABXDE.", true},
		{"byte alternative miss", "0:*:4142(43|58)4445", "ABYDE.", false},
		{"negated byte", "0:*:4142!(43|58)4445", "ABYDE.", true},
		{"negated byte miss", "0:*:4142!(43|58)4445", "ABCDE.", false},
		{"string alternative", "0:*:4142(4344|5859)4546", "ABXYEF", true},
		{"string alternative miss", "0:*:4142(4344|5859)4546", "ABCYEF", false},
		{"negated string", "0:*:4142!(4344|5859)4546", "ABCYEF", true},
		{"negated string miss", "0:*:4142!(4344|5859)4546", "ABCDEF", false},
		{"generic lengths short", "0:*:4142(43|5859)4445", "ABCDE.", true},
		{"generic lengths long", "0:*:4142(43|5859)4445", "ABXYDE", true},
		{"generic lengths miss", "0:*:4142(43|5859)4445", "ABXDE.", false},
		{"generic wildcard", "0:*:4142(4?|5859)4445", "ABJDE.", true},
		{"generic nested", "0:*:4142(43(44|45)|46)4748", "ABCEGH", true},
		{"generic nested other", "0:*:4142(43(44|45)|46)4748", "ABFGH.", true},
		{"generic nested miss", "0:*:4142(43(44|45)|46)4748", "ABCGH.", false},
		{"anchored left", "0:*:41[1-2]42434445", "AxxBCDE", true},
		{"anchored left near", "0:*:41[1-2]42434445", "AxBCDE", true},
		{"anchored left adjacent", "0:*:41[1-2]42434445", "ABCDE", false},
		{"anchored left far", "0:*:41[1-2]42434445", "AxxxBCDE", false},
		{"anchored right", "0:*:42434445[1-2]46", "BCDExF", true},
		{"anchored right adjacent", "0:*:42434445[1-2]46", "BCDEF", false},
		{"anchored both", "0:*:41[1]424344[0-1]45", "A-BCDE", true},
		{"anchored offset is the body", "0:1:41[1]42434445", "A-BCDE", false},
		{"anchored offset at body", "0:2:41[1]42434445", "A-BCDE", true},
		{"left boundary", "0:*:(B)42434445", "x BCDE", true},
		{"left boundary file start", "0:*:(B)42434445", "BCDE..", true},
		{"left boundary miss", "0:*:(B)42434445", "xBCDE", false},
		{"right boundary", "0:*:42434445(B)", "BCDE x", true},
		{"right boundary file end", "0:*:42434445(B)", "..BCDE", true},
		{"right boundary miss", "0:*:42434445(B)", "BCDEx", false},
		{"negated right boundary", "0:*:42434445!(B)", "BCDEx.", true},
		{"right line end LF", "0:*:41424344(L)", "ABCD\nx", true},
		{"right line end CRLF", "0:*:41424344(L)", "ABCD\r\nx", true},
		{"right line end miss", "0:*:41424344(L)", "ABCDx", false},
		{"middle line end", "0:*:4142(L)4344", "AB\nCD.", true},
		{"middle non-alnum", "0:*:4142(W)4344", "AB CD.", true},
		{"middle non-alnum miss", "0:*:4142(W)4344", "ABxCD.", false},
		{"offset 0", "0:0:41424344", "ABCDxx", true},
		{"offset 0 miss", "0:0:41424344", "xABCD", false},
		{"offset n", "0:3:41424344", "xyzABCD", true},
		{"offset n,shift", "0:1,3:41424344", "xyzABCD", true},
		{"offset n,shift over", "0:1,1:41424344", "xyzABCD", false},
		{"offset EOF-n", "0:EOF-4:41424344", "xxABCD", true},
		{"offset EOF-n miss", "0:EOF-4:41424344", "xABCDx", false},
		{"offset EOF-n,shift", "0:EOF-6,2:41424344", "xxABCDxx", true},
		{"offset EOF-n past start", "0:EOF-9:41424344", "ABCD..", false},
		{"offset on first part", "0:2:4142*4344", "xxAB..CD", true},
		{"offset on first part miss", "0:2:4142*4344", "xAB..CD", false},
		{"overlapping occurrences", "0:*:41414142", "AAAAAAAB", true},
		{"target * is any", "*:*:41424344", "ABCD..", true},
		{"files of 5 bytes are not scanned", "0:*:41424344", "ABCD.", false},
	}
}

func TestNDBGrammar(t *testing.T) {
	bin := clamscan(t)
	for _, tt := range grammarCases() {
		t.Run(tt.name, func(t *testing.T) {
			e, db := loadNDB(t, "Test.Sig:"+tt.sig)
			res := scanData(t, e, []byte(tt.data))
			if res.Infected != tt.want || (tt.want && res.Signature != "Test.Sig") {
				t.Errorf("got %+v want infected=%v", res, tt.want)
			}
			if bin != "" {
				if got := clamscanFound(t, bin, db, []byte(tt.data)); got != tt.want {
					t.Errorf("clamscan found=%v, want %v: the expectation disagrees with ClamAV", got, tt.want)
				}
			}
		})
	}
}

func TestNDBMalformed(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string
	}{
		{"too few fields", "A:0:*", "3 fields, want 4 to 6"},
		{"too many fields", "A:0:*:4142:1:2:3", "7 fields"},
		{"empty name", ":0:*:41424344", "empty malware name"},
		{"bad target", "A:x:*:41424344", `target type "x"`},
		{"bad offset", "A:0:x:41424344", `offset "x"`},
		{"bad shift", "A:0:1,x:41424344", `offset "1,x"`},
		{"EP on any", "A:0:EP+0:41424344", "needs target type 1 (PE), 6 (ELF) or 9 (Mach-O)"},
		{"section on any", "A:0:S0+0:41424344", "needs target type"},
		{"bad minfl", "A:0:*:41424344:x", `minimum functionality level "x"`},
		{"bad maxfl", "A:0:*:41424344:1:y", `maximum functionality level "y"`},
		{"empty hex", "A:0:*:", "empty hex signature"},
		{"odd hex", "A:0:*:4142434", "odd number of hex digits"},
		{"not hex", "A:0:*:4142zz", "not a hex digit"},
		{"one byte", "A:0:*:41", "no two fixed bytes"},
		{"only wildcards", "A:0:*:41??42??43", "no two fixed bytes"},
		{"weak part", "A:0:*:41424344*41", "part 2 has no two fixed bytes"},
		{"leading star", "A:0:*:*41424344", "empty part 1"},
		{"double star", "A:0:*:4142**4344", "empty part 2"},
		{"open brace", "A:0:*:4142{3", "'{' without '}'"},
		{"bad jump", "A:0:*:4142{2-x}4344", "jump {2-x}"},
		{"star in alternative", "A:0:*:4142(43|*)4344", "inside an alternative"},
		{"open paren", "A:0:*:4142(43|44", "'(' without ')'"},
		{"close paren", "A:0:*:414243)44", "')' without '('"},
		{"empty first alternative", "A:0:*:4142(|43)4344", "empty first alternative"},
		{"empty alternatives", "A:0:*:4142(|)4344", "empty first alternative"},
		{"jump with a space after", "A:0:*:41424344{2 }45464748", "jump {2 }"},
		{"signed jump", "A:0:*:41424344{+0}45464748", "jump {+0}"},
		{"signed long jump", "A:0:*:41424344{+200}45464748", "jump {+200}"},
		{"signed later jump", "A:0:*:41424344{200}4546{+2}4748", "jump {+2}"},
		{"jump past 2^31", "A:0:*:41424344{2147483648}45464748", "past 2^31-1"},
		{"jump with three numbers", "A:0:*:41424344{3-5-7}45464748", "jump {3-5-7}"},
		{"macro group 32", "A:0:$32$:41424344", "macro groups go up to $31$"},
		{"macro not first", "A:0:x$1$:41424344", `offset "x$1$"`},
		{"macro not a number", "A:0:$x$:41424344", `offset "$x$"`},
		{"version info on any", "A:0:VI:41424344", "needs target type"},
		{"section without number", "A:1:S+2:41424344", `offset "S+2"`},
		{"negative target", "A:-1:*:41424344", `target type "-1"`},
		{"spaced minfl", "A:0:*:41424344: 5", `minimum functionality level " 5"`},
		{"negated generic", "A:0:*:4142!(43|4445)4344", "negation applies only"},
		{"bang alone", "A:0:*:4142!4344", "'!' not before '('"},
		{"anchor range too far", "A:0:*:41[1-33]42434445", "anchor range [1-33]"},
		{"anchor range reversed", "A:0:*:41[3-1]42434445", "anchor range [3-1]"},
		{"anchor without byte", "A:0:*:4142[1-2]4344", "exactly one byte on one side"},
		{"unclosed bracket", "A:0:*:41[1-2", "'[' without ']'"},
	}
	bin := clamscan(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := writeFile(t, t.TempDir(), "x.ndb", "# c\nGood:0:*:41424344\n"+tt.line+"\n")
			if bin != "" {
				if out, err := exec.Command(bin, "--no-summary", "-d", db, db).CombinedOutput(); err == nil || err.(*exec.ExitError).ExitCode() != 2 {
					t.Errorf("clamscan loads it: %v: %s", err, out)
				}
			}
			_, err := Load([]string{db}, nil)
			if err == nil {
				t.Fatalf("got no error want %q", tt.want)
			}
			loc := db + ":3: "
			if !strings.Contains(err.Error(), loc) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %q want it to contain %q and %q", err, loc, tt.want)
			}
		})
	}
}

func TestNDBLoadReport(t *testing.T) {
	e, _ := loadNDB(t,
		"# comment",
		"Any:0:*:41424344",
		"PE:1:EP+0:41424344",
		"Html:3:*:41424344",
		"Mail:4:*:41424344",
		"Text:7:*:41424344",
		"Pdf:10:*:41424344",
		"Future:99:*:41424344",
		"Newer:0:*:41424344:9999",
		"Older:0:*:41424344:1:2",
		"Ranged:0:*:41424344:1:9999",
		"BadButNewer:0:*:zz:9999", // a newer engine's grammar never fails the load
	)
	r := e.Report()
	if r.Signatures["ndb"] != 4 {
		t.Errorf("got ndb=%d want 4", r.Signatures["ndb"])
	}
	if r.Excluded != 3 {
		t.Errorf("got %d excluded want 3", r.Excluded)
	}
	want := []SigSkip{
		{".ndb", "target 10 (PDF)", 1, reasonFileType},
		{".ndb", "target 3 (HTML)", 1, reasonNormalise},
		{".ndb", "target 4 (mail)", 1, reasonNormalise},
		{".ndb", "target 99", 1, reasonTarget},
	}
	if fmt.Sprint(r.SkippedSignatures) != fmt.Sprint(want) {
		t.Errorf("got skipped %v want %v", r.SkippedSignatures, want)
	}
	if s := r.String(); !strings.Contains(s, "ndb=4") || strings.Contains(s, "target-7") || !strings.Contains(s, "target-3-(HTML)=1") {
		t.Errorf("got report %q", s)
	}
}

// tinyPE builds a PE32 file: one section of 0x200 bytes at file offset
// 0x200, mapped at RVA 0x1000, entry point RVA 0x1010 (file offset 0x210).
func tinyPE(code []byte, at int) []byte {
	f := make([]byte, 0x400)
	copy(f, "MZ")
	binary.LittleEndian.PutUint32(f[0x3c:], 0x40)
	copy(f[0x40:], "PE\x00\x00")
	coff := f[0x44:]
	binary.LittleEndian.PutUint16(coff[0:], 0x14c) // i386
	binary.LittleEndian.PutUint16(coff[2:], 1)     // sections
	binary.LittleEndian.PutUint16(coff[16:], 0xe0) // optional header size
	binary.LittleEndian.PutUint16(coff[18:], 0x0102)
	opt := f[0x58:]
	binary.LittleEndian.PutUint16(opt[0:], 0x10b)
	binary.LittleEndian.PutUint32(opt[16:], 0x1010) // entry point
	binary.LittleEndian.PutUint32(opt[28:], 0x400000)
	binary.LittleEndian.PutUint32(opt[32:], 0x1000) // section alignment
	binary.LittleEndian.PutUint32(opt[36:], 0x200)  // file alignment
	binary.LittleEndian.PutUint16(opt[40:], 4)
	binary.LittleEndian.PutUint32(opt[56:], 0x2000) // image size
	binary.LittleEndian.PutUint32(opt[60:], 0x200)  // headers size
	binary.LittleEndian.PutUint16(opt[68:], 3)      // console
	binary.LittleEndian.PutUint32(opt[92:], 16)
	sec := f[0x58+0xe0:]
	copy(sec, ".text")
	binary.LittleEndian.PutUint32(sec[8:], 0x200)
	binary.LittleEndian.PutUint32(sec[12:], 0x1000)
	binary.LittleEndian.PutUint32(sec[16:], 0x200)
	binary.LittleEndian.PutUint32(sec[20:], 0x200)
	binary.LittleEndian.PutUint32(sec[36:], 0x60000020)
	copy(f[at:], code)
	return f
}

// tinyELF builds a 64-bit ELF: one PT_LOAD of the whole file at 0x400000,
// entry point 0x400078 (file offset 0x78), one section at 0x80.
func tinyELF(code []byte, at int) []byte {
	f := make([]byte, 0x200)
	copy(f, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(f[16:], 2)  // executable
	binary.LittleEndian.PutUint16(f[18:], 62) // x86-64
	binary.LittleEndian.PutUint32(f[20:], 1)
	binary.LittleEndian.PutUint64(f[24:], 0x400078)
	binary.LittleEndian.PutUint64(f[32:], 64)    // phoff
	binary.LittleEndian.PutUint64(f[40:], 0x100) // shoff
	binary.LittleEndian.PutUint16(f[52:], 64)
	binary.LittleEndian.PutUint16(f[54:], 56) // phentsize
	binary.LittleEndian.PutUint16(f[56:], 1)
	binary.LittleEndian.PutUint16(f[58:], 64) // shentsize
	binary.LittleEndian.PutUint16(f[60:], 2)
	ph := f[64:]
	binary.LittleEndian.PutUint32(ph[0:], 1) // PT_LOAD
	binary.LittleEndian.PutUint32(ph[4:], 5)
	binary.LittleEndian.PutUint64(ph[16:], 0x400000)
	binary.LittleEndian.PutUint64(ph[24:], 0x400000)
	binary.LittleEndian.PutUint64(ph[32:], 0x200)
	binary.LittleEndian.PutUint64(ph[40:], 0x200)
	sh := f[0x100+64:] // section 1; section 0 is the null section
	binary.LittleEndian.PutUint32(sh[4:], 1)
	binary.LittleEndian.PutUint64(sh[24:], 0x80) // offset
	binary.LittleEndian.PutUint64(sh[32:], 0x40) // size
	copy(f[at:], code)
	return f
}

func TestNDBExecutableOffsets(t *testing.T) {
	code := []byte("\x55\x89\xe5\x83\xec\x18VIGIL")
	sig := "5589e583ec18"
	pe := tinyPE(code, 0x210)
	peAt := func(at int) []byte { return tinyPE(code, at) }
	elf := tinyELF(code, 0x78)
	tests := []struct {
		name string
		sig  string
		data []byte
		want bool
	}{
		{"PE EP+0", "1:EP+0:" + sig, pe, true},
		{"PE EP+0 moved", "1:EP+0:" + sig, peAt(0x211), false},
		{"PE EP+1", "1:EP+1:" + sig, peAt(0x211), true},
		{"PE EP-2", "1:EP-2:" + sig, peAt(0x20e), true},
		{"PE EP+0,4", "1:EP+0,4:" + sig, peAt(0x214), true},
		{"PE EP+0,4 over", "1:EP+0,4:" + sig, peAt(0x215), false},
		{"PE S0+16", "1:S0+16:" + sig, pe, true},
		{"PE S1 missing", "1:S1+16:" + sig, pe, false},
		{"PE SL+16", "1:SL+16:" + sig, pe, true},
		{"PE SE0", "1:SE0:" + sig, peAt(0x300), true},
		{"PE SE0 before", "1:SE0:" + sig, peAt(0x100), false},
		{"PE EOF-n", "1:EOF-496:" + sig, pe, true},
		{"PE type on ELF", "1:*:" + sig, elf, false},
		{"PE type on PE", "1:*:" + sig, pe, true},
		{"any type on PE", "0:*:" + sig, pe, true},
		{"ELF EP+0", "6:EP+0:" + sig, elf, true},
		{"ELF EP+0 moved", "6:EP+0:" + sig, tinyELF(code, 0x79), false},
		{"ELF S1+0", "6:S1+0:" + sig, tinyELF(code, 0x80), true},
		{"ELF type on PE", "6:*:" + sig, pe, false},
		{"Mach-O type on ELF", "9:*:" + sig, elf, false},
		{"PE EP on broken PE", "1:EP+0:" + sig, append([]byte("MZ"), bytes.Repeat([]byte{0}, 0x20e)...), false},
	}
	bin := clamscan(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := loadNDB(t, "Exe.Sig:"+tt.sig)
			res := scanData(t, e, tt.data)
			if res.Infected != tt.want {
				t.Errorf("got %+v want infected=%v", res, tt.want)
			}
			if bin != "" {
				if got := clamscanFound(t, bin, db, tt.data); got != tt.want {
					t.Errorf("clamscan found=%v, want %v: the expectation disagrees with ClamAV", got, tt.want)
				}
			}
		})
	}
}

func TestParseExe(t *testing.T) {
	pe, err := parsePE(bytes.NewReader(tinyPE(nil, 0)), 0x400)
	if err != nil || pe.ep != 0x210 || fmt.Sprint(pe.sections) != "[{512 512}]" {
		t.Errorf("got PE %+v, %v want ep 0x210, one section at 0x200", pe, err)
	}
	elf, err := parseELF(bytes.NewReader(tinyELF(nil, 0)), 0x200)
	if err != nil || elf.ep != 0x78 || len(elf.sections) != 2 || elf.sections[1] != (exeSection{0x80, 0x40}) {
		t.Errorf("got ELF %+v, %v want ep 0x78, section 1 at 0x80", elf, err)
	}
	for _, bad := range [][]byte{nil, []byte("MZ"), tinyPE(nil, 0)[:0x100], []byte("\x7fELF\x09")} {
		if _, err := parseExe(classOf(bad), bytes.NewReader(bad), int64(len(bad))); err == nil {
			t.Errorf("got no error for %q", bad)
		}
	}
	classes := map[string]fileClass{"MZ..": classPE, "\x7fELF": classELF, "\xcf\xfa\xed\xfe": classMachO, "\xfe\xed\xfa\xce": classMachO, "text": classOther}
	for head, want := range classes {
		if got := classOf([]byte(head)); got != want {
			t.Errorf("got class %d for %q want %d", got, head, want)
		}
	}
}

func TestSectionHashes(t *testing.T) {
	pe := tinyPE([]byte("section body"), 0x200)
	sect := pe[0x200:0x400]
	dir := t.TempDir()
	writeFile(t, dir, "s.mdb", fmt.Sprintf("%d:%s:Sect.MD5\n", len(sect), md5Hex(string(sect))))
	writeFile(t, dir, "s.msb", fmt.Sprintf("%d:%s:Sect.SHA256\n*:%s:Sect.Any:73\n", len(sect)+1, sha256Hex(string(sect)), sha256Hex("x")))
	e := mustLoad(t, dir)
	if r := e.Report(); r.Signatures["pe-md5"] != 1 || r.Signatures["pe-sha256"] != 2 {
		t.Errorf("got %v want pe-md5=1 pe-sha256=2", r.Signatures)
	}
	if res := scanData(t, e, pe); res.Signature != "Sect.MD5" {
		t.Errorf("got %+v want Sect.MD5", res)
	}
	if res := scanData(t, e, tinyPE([]byte("other body"), 0x200)); res.Infected {
		t.Errorf("got %+v want clean", res)
	}
	bad := writeFile(t, t.TempDir(), "x.mdb", "zz:"+md5Hex("a")+":X\n")
	if _, err := Load([]string{bad}, nil); err == nil || !strings.Contains(err.Error(), bad+":1: ") {
		t.Errorf("got %v want an error at %s:1", err, bad)
	}
}

func TestNDBWithHashes(t *testing.T) {
	dir := t.TempDir()
	body := "xxABCDxx"
	writeFile(t, dir, "a.ndb", "Body:0:*:41424344\n")
	writeFile(t, dir, "a.hdb", md5Hex(body)+":8:Hash\n")
	e := mustLoad(t, dir)
	if res := scanData(t, e, []byte(body)); res.Signature != "Hash" {
		t.Errorf("got %+v want the hash signature first", res)
	}
	if res := scanData(t, e, []byte("yyABCDyy")); res.Signature != "Body" {
		t.Errorf("got %+v want Body", res)
	}
	writeFile(t, dir, "a.fp", md5Hex("yyABCDyy")+":8:Fine\n")
	e = mustLoad(t, dir)
	if res := scanData(t, e, []byte("yyABCDyy")); res.Infected {
		t.Errorf("got %+v want the allow list to clear it", res)
	}
	if res := scanData(t, e, []byte(EICAR)); res.Signature != EICARSignature {
		t.Errorf("got %+v want EICAR", res)
	}
}

func TestNDBScanFile(t *testing.T) {
	e, _ := loadNDB(t, "File.Sig:0:EOF-4:41424344")
	p := writeFile(t, t.TempDir(), "f", strings.Repeat("z", 3*chunk)+"ABCD")
	f, err := os.Open(filepath.Clean(p))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := e.Scan(context.Background(), f)
	if err != nil || res.Signature != "File.Sig" {
		t.Fatalf("got %+v, %v want File.Sig", res, err)
	}
}

func TestNDBConcurrentScan(t *testing.T) {
	defer func(c int) { windowChunk = c }(windowChunk)
	windowChunk = 512
	e, _ := loadNDB(t, "One:0:*:4f4e4531*4f4e4532", "Two:0:EOF-4:54574f21")
	inputs := map[string][]byte{
		"One":  []byte(strings.Repeat(".", 3000) + "ONE1" + strings.Repeat(".", 3000) + "ONE2"),
		"Two":  []byte(strings.Repeat("x", 5000) + "TWO!"),
		"":     []byte(strings.Repeat("ONE2", 2000) + "ONE1"),
		"Two ": []byte(strings.Repeat("y", 10) + "TWO!"),
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				for want, data := range inputs {
					res, _, err := e.scan(context.Background(), bytes.NewReader(data), int64(len(data)), "mem")
					if err != nil || res.Signature != strings.TrimSpace(want) {
						errs <- fmt.Sprintf("got %+v, %v want %q", res, err, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// padded writes "ABCD" at each of at, "WXYZ" at end, dots elsewhere.
func padded(size, end int, at ...int) []byte {
	b := bytes.Repeat([]byte("."), size)
	for _, a := range at {
		copy(b[a:], "ABCD")
	}
	copy(b[end:], "WXYZ")
	return b
}

func every(from, to, step int) []int {
	var out []int
	for a := from; a <= to; a += step {
		out = append(out, a)
	}
	return out
}

// TestNDBBoundedJumpPadding checks that copies of a part cannot push out
// the one end a bounded jump needs. libclamav keeps a part's first end and
// its last 64; we keep every end still in reach.
func TestNDBBoundedJumpPadding(t *testing.T) {
	tests := []struct {
		name string
		sig  string
		data []byte
		want bool
		clam bool // what clamscan says, where it differs
	}{
		// The audit's repro: the end at 4 is the only one 400-402 before
		// WXYZ, behind 64 copies.
		{"first end behind 64 copies", "0:*:41424344{400-402}5758595a",
			padded(420, 404, append([]int{0}, every(10, 325, 5)...)...), true, true},
		{"first end behind 63 copies", "0:*:41424344{400-402}5758595a",
			padded(420, 404, append([]int{0}, every(10, 320, 5)...)...), true, true},
		{"no end in range", "0:*:41424344{400-402}5758595a",
			padded(420, 404, every(10, 325, 5)...), false, false},
		// Only the 51st of 200 ends is 846 before WXYZ: libclamav has
		// dropped it by then.
		{"middle end of 200", "0:*:41424344{846}5758595a",
			padded(1200, 1100, every(0, 995, 5)...), true, false},
		{"middle end of 200, range", "0:*:41424344{845-847}5758595a",
			padded(1200, 1100, every(0, 995, 5)...), true, false},
		{"middle end of 200, miss", "0:*:41424344{847}5758595a",
			padded(1200, 1100, every(0, 995, 5)...), false, false},
	}
	bin := clamscan(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, db := loadNDB(t, "Pad.Sig:"+tt.sig)
			if res := scanData(t, e, tt.data); res.Infected != tt.want {
				t.Errorf("got %+v want infected=%v", res, tt.want)
			}
			if bin != "" {
				if got := clamscanFound(t, bin, db, tt.data); got != tt.clam {
					t.Errorf("clamscan found=%v, want %v", got, tt.clam)
				}
			}
		})
	}
}

// dbCase is a database and a file to scan with it.
type dbCase struct {
	name string
	file string // the database's name: its extension says how it is read
	db   string // its lines
	data string
	want string // the signature found, "" for none
}

// runDBCases scans each case's data with its database, and with clamscan
// where installed: found by one, found by the other.
func runDBCases(t *testing.T, tests []dbCase) {
	t.Helper()
	bin := clamscan(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := writeFile(t, t.TempDir(), tt.file, tt.db+"\n")
			got := scanString(t, mustLoad(t, db), tt.data)
			if got.Signature != tt.want || got.Infected != (tt.want != "") {
				t.Errorf("got %+v want signature %q", got, tt.want)
			}
			if bin != "" {
				if found := clamscanFound(t, bin, db, []byte(tt.data)); found != (tt.want != "") {
					t.Errorf("clamscan found=%v, want %v: the expectation disagrees with ClamAV", found, tt.want != "")
				}
			}
		})
	}
}

// TestFunctionalityLevel pins ClamAV 1.4.6's level, 216, as clamscan 1.4.6
// applies it.
func TestFunctionalityLevel(t *testing.T) {
	const data = "xxABCDxx"
	runDBCases(t, []dbCase{
		{"ndb min 213", "t.ndb", "L:0:*:41424344:213", data, "L"},
		{"ndb min 216", "t.ndb", "L:0:*:41424344:216", data, "L"},
		{"ndb min 217", "t.ndb", "L:0:*:41424344:217", data, ""},
		{"ndb max 216", "t.ndb", "L:0:*:41424344:1:216", data, "L"},
		{"ndb max 215", "t.ndb", "L:0:*:41424344:1:215", data, ""},
		{"hdb min 216", "t.hdb", fmt.Sprintf("%s:%d:L:216", md5Hex(data), len(data)), data, "L"},
		{"hdb min 217", "t.hdb", fmt.Sprintf("%s:%d:L:217", md5Hex(data), len(data)), data, ""},
		{"hdb max 215", "t.hdb", fmt.Sprintf("%s:%d:L:1:215", md5Hex(data), len(data)), data, ""},
	})
}

// TestLoadAsClamAV: lines that clamscan loads load here too, meaning what
// they mean there, or are counted as unused; none fails the load.
func TestLoadAsClamAV(t *testing.T) {
	pad := func(n int) string { return strings.Repeat(".", n) }
	const abcd = "xxABCDxx"
	sample := strings.Repeat("x", 130)
	hash := md5Hex(sample) + ":"
	runDBCases(t, []dbCase{
		{"macro offset", "t.ndb", "M:0:$1$:41424344", abcd, ""},
		{"macro offset, unterminated", "t.ndb", "M:0:$ 31:41424344", abcd, ""},
		{"version info offset", "t.ndb", "V:1:VI:41424344", abcd, ""},
		{"empty target is 0", "t.ndb", "G::*:41424344", abcd, "G"},
		{"target 2^32 is 0", "t.ndb", "G:4294967296:*:41424344", abcd, "G"},
		{"target 2^32+1 is 1", "t.ndb", "G:4294967297:*:41424344", abcd, ""},
		{"empty minimum level is 0", "t.ndb", "J:0:*:41424344::216", abcd, "J"},
		{"empty maximum level is 0", "t.ndb", "H:0:*:41424344::", abcd, ""},
		{"empty maximum level after 1", "t.ndb", "I:0:*:41424344:1:", abcd, ""},
		{"minimum level past 32 bits", "t.ndb", "S:0:*:41424344:99999999999", abcd, ""},
		{"maximum level 2^32+215", "t.ndb", "X:0:*:41424344:1:4294967511", abcd, ""},
		{"{} is *", "t.ndb", "K:0:*:41424344{}45464748", "ABCD" + pad(300) + "EFGH", "K"},
		{"{-} is *", "t.ndb", "K:0:*:41424344{-}45464748", "ABCD" + pad(300) + "EFGH", "K"},
		{"{--5} is {-5}", "t.ndb", "K:0:*:41424344{--5}45464748", "ABCD" + pad(5) + "EFGH", "K"},
		{"{--5} is {-5}, over", "t.ndb", "K:0:*:41424344{--5}45464748", "ABCD" + pad(6) + "EFGH", ""},
		{"{3-5-} is {3-5}", "t.ndb", "K:0:*:41424344{3-5-}45464748", "ABCD" + pad(4) + "EFGH", "K"},
		{"{+2} is {2}", "t.ndb", "N:0:*:41424344{+2}45464748", "ABCD" + pad(2) + "EFGH", "N"},
		{"{+2} is {2}, over", "t.ndb", "N:0:*:41424344{+2}45464748", "ABCD" + pad(3) + "EFGH", ""},
		{"{ 2} is {2}", "t.ndb", "N:0:*:41424344{ 2}45464748", "ABCD" + pad(2) + "EFGH", "N"},
		{"{\t+2} is {2}", "t.ndb", "N:0:*:41424344{\t+2}45464748", "ABCD" + pad(2) + "EFGH", "N"},
		{"{5-3} never matches", "t.ndb", "K:0:*:41424344{5-3}45464748", "ABCD" + pad(4) + "EFGH", ""},
		{"{2^32} is *", "t.ndb", "K:0:*:41424344{4294967296}45464748", "ABCD" + pad(300) + "EFGH", "K"},
		{"{2^32+130} is {130}", "t.ndb", "K:0:*:41424344{4294967426}45464748", "ABCD" + pad(130) + "EFGH", "K"},
		{"{-(2^32+4)} is {-4}", "t.ndb", "K:0:*:41424344{-4294967300}45464748", "ABCD" + pad(5) + "EFGH", ""},
		{"(45|) empty", "t.ndb", "O:0:*:41424344(45|)464748", pad(9) + "ABCDFGH" + pad(9), "O"},
		{"(45|) full", "t.ndb", "O:0:*:41424344(45|)464748", pad(9) + "ABCDEFGH" + pad(9), "O"},
		{"(45|) other", "t.ndb", "O:0:*:41424344(45|)464748", pad(9) + "ABCDXFGH" + pad(9), ""},
		{"(45||46) empty", "t.ndb", "O:0:*:41424344(45||46)4748", pad(9) + "ABCDGH" + pad(9), "O"},
		{"(4546|) at the end", "t.ndb", "O:0:*:41424344(4546|)", pad(9) + "ABCD", "O"},
		{"nested (|46)", "t.ndb", "O:0:*:41424344(45(|46)|47)4849", pad(9) + "ABCDEHI" + pad(9), "O"},
		{"offset 2^32 is 0", "t.ndb", "P:0:4294967296:41424344", "ABCDxxxx", "P"},
		{"offset 2^32 is 0, miss", "t.ndb", "P:0:4294967296:41424344", "xABCDxxx", ""},
		{"offset 2^32+64 is 64", "t.ndb", "P:0:4294967360:41424344", pad(64) + "ABCD", "P"},
		{"offset 2^32-1 is *", "t.ndb", "P:0:4294967295:41424344", "xxxxxABCD", "P"},
		{"offset past 2^63 is *", "t.ndb", "P:0:99999999999999999999:41424344", "xxxxxABCD", "P"},
		{"empty offset is 0", "t.ndb", "E:0::41424344", "ABCDxxxx", "E"},
		{"empty shift is 0", "t.ndb", "E:0:,:41424344", "ABCDxxxx", "E"},
		{"empty shift is 0, miss", "t.ndb", "E:0:1,:41424344", "xxABCDxx", ""},
		{"empty EOF-", "t.ndb", "E:0:EOF-:41424344", "xxABCDxx", ""},
		{"S%u+%u ignores the rest", "t.ndb", "S:1:S1+2junk:41424344", abcd, ""},
		{"hdb size +130", "t.hdb", hash + "+130:A", sample, "A"},
		{"hdb size ' 130'", "t.hdb", hash + " 130:A", sample, "A"},
		{"hdb size 0130", "t.hdb", hash + "0130:A", sample, "A"},
		{"hdb minimum level x is 0", "t.hdb", hash + "130:A:x", sample, "A"},
		{"hdb minimum level '' is 0", "t.hdb", hash + "130:A:", sample, "A"},
		{"hdb minimum level 5x is 5", "t.hdb", hash + "130:A:5x", sample, "A"},
		{"hdb minimum level -1", "t.hdb", hash + "130:A:-1", sample, ""},
		{"hdb minimum level 2^32 is 0", "t.hdb", hash + "130:A:4294967296", sample, "A"},
		{"hdb maximum level '' is 0", "t.hdb", hash + "130:A::", sample, ""},
		{"hdb maximum level x is 0", "t.hdb", hash + "130:A:1:x", sample, ""},
		{"hdb maximum level -1", "t.hdb", hash + "130:A:1:-1", sample, "A"},
		{"hdb minimum level ' 73' for *", "t.hdb", md5Hex(sample) + ":*:A: 73", sample, "A"},
	})
}

func TestLoadAsClamAVReport(t *testing.T) {
	e, _ := loadNDB(t,
		"Macro:0:$1$:41424344",
		"Version:1:VI:41424344",
		"Never:0:*:41424344{5-3}45464748",
		"EmptyMax:0:*:41424344::",
		"Used:0:*:41424344",
		"BadMacro:3:$99$:41424344", // an HTML target is skipped before its offset is read
	)
	r := e.Report()
	if r.Signatures["ndb"] != 1 || r.Excluded != 1 {
		t.Errorf("got ndb=%d excluded=%d want 1 and 1", r.Signatures["ndb"], r.Excluded)
	}
	want := []SigSkip{
		{".ndb", "target 0 (any)", 1, reasonNever},
		{".ndb", "target 0 (any)", 1, reasonMacro},
		{".ndb", "target 1 (PE)", 1, reasonVersion},
		{".ndb", "target 3 (HTML)", 1, reasonNormalise},
	}
	got := r.SkippedSignatures
	slices.SortStableFunc(got, func(a, b SigSkip) int { return strings.Compare(a.Target+a.Reason, b.Target+b.Reason) })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got skipped %v want %v", got, want)
	}
	if s := r.String(); !strings.Contains(s, "unused .ndb target-0-(any)=1 ("+reasonMacro+")") {
		t.Errorf("got report %q", s)
	}
}
