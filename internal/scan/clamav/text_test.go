package clamav

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf16"
)

func utf16Bytes(s string, be, bom bool) []byte {
	var b []byte
	if bom {
		if be {
			b = append(b, 0xfe, 0xff)
		} else {
			b = append(b, 0xff, 0xfe)
		}
	}
	for _, u := range utf16.Encode([]rune(s)) {
		if be {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return b
}

func TestTextKind(t *testing.T) {
	random := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	tests := []struct {
		name string
		head []byte
		want textKind
	}{
		{"ascii", []byte("Hello, World\r\n\t\f\a\b\x1b"), textASCII},
		{"latin-1 is ascii", []byte("caf\xe9 \x85 \xff"), textASCII},
		{"utf-8 is ascii", []byte("caf\xc3\xa9"), textASCII},
		{"VT is not ascii", []byte("ab\x00\vcd"), notText},
		{"DEL is not ascii", []byte("ab\x00\x7fcd"), notText},
		{"VT not aligned reads as utf-16", []byte("hello\vworld"), textUTF16BE},
		{"utf-8 never: a control refuses it too", []byte("ca\x00\x01\xc3\xa9"), notText},
		{"too short to refuse", []byte("a\vb"), textUTF16BE},
		{"utf-16le bom", utf16Bytes("Hello", false, true), textUTF16LE},
		{"utf-16be bom", utf16Bytes("Hello", true, true), textUTF16BE},
		{"utf-16le without bom reads big-endian", utf16Bytes("Hello", false, false), textUTF16BE},
		{"utf-16be without bom", utf16Bytes("Hello", true, false), textUTF16BE},
		{"utf-16 bom, few controls", append(utf16Bytes("Hello", false, true), 1, 0), textUTF16LE},
		{"utf-16 no bom, a control", append(utf16Bytes("Hello", true, false), 0, 1), notText},
		{"utf-16 fffe", []byte{0, 1, 0xff, 0xfe, 'c', 'd'}, notText},
		{"one byte", []byte{0}, notText},
		{"first two bytes unread", []byte{0, 1, 'a', 'b'}, textUTF16BE},
		{"random data is utf-16 to libclamav", random[:textHead], textUTF16BE},
		{"NULs", make([]byte, 64), notText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := textKindOf(tt.head); got != tt.want {
				t.Errorf("got %d want %d", got, tt.want)
			}
		})
	}
}

func TestNormalise(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Hello   World", "hello world"},
		{"A\t\r\n\v\fB", "a b"},
		{"a \x1b\x00 b", "a b"},                    // dropped bytes do not end a run
		{"a\x1bb", "ab"},                           // nor make one
		{"caf\xc3\xa9 \x7f\x80\xff!", "caf \x7f!"}, // over 0x7f: dropped
		{"[\\]^_`{|}~@", "[\\]^_`{|}~@"},
		{"  lead", " lead"},
	}
	for _, tt := range tests {
		space := false
		if got := string(normalise(nil, []byte(tt.in), &space)); got != tt.want {
			t.Errorf("normalise(%q) = %q want %q", tt.in, got, tt.want)
		}
	}
	// A cut anywhere changes nothing: the state carries over.
	r := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 4096)
	for i := range data {
		data[i] = " \t\x00Aa\x80\x1b"[r.IntN(7)]
	}
	var s0 bool
	whole := normalise(nil, data, &s0)
	for cut := 0; cut < 64; cut++ {
		var s1 bool
		if got := normalise(normalise(nil, data[:cut], &s1), data[cut:], &s1); !bytes.Equal(got, whole) || s1 != s0 {
			t.Fatalf("cut at %d: got another normalisation", cut)
		}
	}
}

// A "hello world" signature in lower case.
const helloHex = "68656c6c6f20776f726c64"

// TestTextScan: text files are matched normalised too, as clamscan does,
// target 0 and target 7 signatures alike; clamscan agrees on each case.
func TestTextScan(t *testing.T) {
	pad := strings.Repeat("abcdefghij", 13108)[:scanBuff] // one buffer of text
	z7 := "Z7:7:*:7a7a7a7a7a7a7a7a7a7a7a"                 // a target 7 part of 11 bytes
	z7eof := "Z7:7:EOF-1:7a7a7a7a7a7a7a7a7a7a7a"          // ...at EOF-n: the whole-file way
	mkdb := func(lines ...string) string { return strings.Join(lines, "\n") }
	tests := []dbCase{
		{"case and whitespace", "t.ndb", "T0:0:*:" + helloHex, "xx Hello \t\r\n  World xx\n", "T0"},
		{"target 7", "t.ndb", "T7:7:*:" + helloHex, "xx HELLO  WORLD xx\n", "T7"},
		{"target 7 never sees upper case", "t.ndb", "T7:7:*:48454c4c4f", "xx HELLO WORLD xx\n", ""},
		{"target 7 is not matched raw", "t.ndb", "T7:7:*:48454c4c4f", "\x00\x01HELLO\x00\x01\x02\x03", ""},
		{"raw scan first", "t.ndb", mkdb("T7:7:*:"+helloHex, "RAW:0:*:48454c4c4f"), "xx HELLO WORLD xx\n", "RAW"},
		{"bytes over 0x7e dropped", "t.ndb", "T0:0:*:" + helloHex, "xx HEL\xe9LO WOR\xffLD xx\n", "T0"},
		{"control dropped", "t.ndb", "T0:0:*:" + helloHex, "HEL\aLO \x1b WORLD....\n", "T0"},
		{"VT: utf-16 to libclamav", "t.ndb", "T0:0:*:" + helloHex, "hello\vworld....\n", "T0"},
		{"VT: not text", "t.ndb", "T0:0:*:" + helloHex, "he\x00\vHello world....\n", ""},
		{"two spaces never", "t.ndb", "T7:7:*:68656c6c6f2020776f726c64", "hello  world....\n", ""},
		{"utf-8", "t.ndb", "T0:0:*:" + helloHex, "\xef\xbb\xbfHello  World \xc3\xa9\n", "T0"},
		{"utf-16le bom", "t.ndb", "T0:0:*:" + helloHex, string(utf16Bytes("Hello  World, hello.\n", false, true)), "T0"},
		{"utf-16be bom", "t.ndb", "T7:7:*:" + helloHex, string(utf16Bytes("Hello  World, hello.\n", true, true)), "T7"},
		{"utf-16le no bom", "t.ndb", "T0:0:*:" + helloHex, string(utf16Bytes("Hello  World, hello.\n", false, false)), "T0"},
		{"binary", "t.ndb", "T0:0:*:" + helloHex, "\x00\x01\x00\x01Hello   World\x00\x01\x02\x03", ""},
		{"binary to file(1), utf-16 to libclamav", "t.ndb", "T0:0:*:" + helloHex, "\x00\x01\x02\x03Hello   World\x00\x01\x02\x03", "T0"},
		{"typed by magic: [aliases] is tar", "t.ndb", "T0:0:*:" + helloHex, "[aliases]\nHello  World\n", ""},
		{"typed by magic: PDF", "t.ndb", "T0:0:*:" + helloHex, "%PDF-1.4\nHello  World\n", ""},
		{"typed by magic: BMP", "t.ndb", "T0:0:*:" + helloHex, "BMHello  World.....\n", ""},
		{"HTML in the head", "t.ndb", "T7:7:*:" + helloHex, "Hello World <TABLE>\n", ""},
		{"HTML further on", "t.ndb", "T7:7:*:" + helloHex, "Hello World\n" + pad + pad + "<img src=x>\n", ""},
		{"HTML further on, raw hit", "t.ndb", "RAW:0:*:48656c6c6f", "Hello World\n" + pad + pad + "<img src=x>\n", "RAW"},
		{"a link", "t.ndb", "T7:7:*:" + helloHex, "Hello World\n" + pad + "<a " + pad + " hREF=x\n", ""},
		{"a link's href, before", "t.ndb", "T7:7:*:" + helloHex, "Hello World href\n" + pad + "<a x\n", "T7"},
		{"a tag's case", "t.ndb", "T7:7:*:" + helloHex, "Hello World <tAble> <hTML>\n", "T7"},
		{"HTML at 0 only", "t.ndb", "T7:7:*:" + helloHex, "<%@ LANGUAGE = x> Hello World\n", ""},
		{"HTML at 0 only, further", "t.ndb", "T7:7:*:" + helloHex, " <%@ LANGUAGE = x> Hello World\n", "T7"},
		{"HTML in utf-16", "t.ndb", "T7:7:*:" + helloHex, string(utf16Bytes("Hello World <html>\n", false, true)), ""},
		{"HTML in utf-16be", "t.ndb", "T7:7:*:" + helloHex, string(utf16Bytes("Hello World <html>\n", true, true)), ""},
		{"mail in the head", "t.ndb", "T7:7:*:" + helloHex, "Hello World\nFrom: a\nMIME-Version: 1.0\n", ""},
		{"mail in the head, too far apart", "t.ndb", "T7:7:*:" + helloHex, "Hello World\nFrom: a\n" + strings.Repeat("x", 1030) + "\nMIME-Version: 1.0\n", "T7"},
		{"an XML document", "t.ndb", "T7:7:*:" + helloHex, `<?xml version="1.0"?><w:wordDocument>Hello World</w:wordDocument>`, ""},
		{"an XML file", "t.ndb", "T7:7:*:" + helloHex, `<?xml version="1.0"?><doc>Hello World</doc>`, "T7"},
		{"LHA", "t.ndb", "T7:7:*:" + helloHex, "ab-lh5- Hello World\n", ""},
		{"Python byte code", "t.ndb", "T7:7:*:" + helloHex, "a\r\r\nHello World\n", ""},
		{"PDF in the head", "t.ndb", "T7:7:*:" + helloHex, "Hello World\n%PDF-1.4\n", ""},
		{"PDF further on", "t.ndb", "T7:7:*:" + helloHex, "Hello World\n" + pad + "%PDF-1.4\n", "T7"},
		{"offset 0", "t.ndb", "A7:7:0:" + helloHex, "HELLO WORLD and more\n", "A7"},
		{"offset 0, normalised", "t.ndb", "A7:7:0:" + helloHex, "  HELLO WORLD and more\n", ""},
		{"offset 1, normalised", "t.ndb", "A7:7:1:" + helloHex, "  HELLO WORLD and more\n", "A7"},
		{"target 7 EOF-n: from the normalised end", "t.ndb", "E7:7:EOF-12:" + helloHex, "and more HELLO  WORLD\n", "E7"},
		{"target 7 EOF-n miss", "t.ndb", "E7:7:EOF-11:" + helloHex, "and more HELLO  WORLD\n", ""},
		{"target 0 EOF-n: never, streamed", "t.ndb", "E0:0:EOF-12:" + helloHex, "and more HELLO  WORLD\n", ""},
		{"target 0 EOF-n: whole", "t.ndb", mkdb("E0:0:EOF-12:"+helloHex, z7eof), "and more HELLO  WORLD\n", "E0"},
		{"found in the first of several buffers", "t.ndb", "T7:7:*:" + helloHex, "HELLO WORLD" + pad + pad, "T7"},
		{"target 0 EOF-n: whole, by a target 7 that never matches", "t.ndb", mkdb("E0:0:EOF-12:"+helloHex, "N:7:EOF-1:41424344{5-3}45464748"), "and more HELLO  WORLD\n", "E0"},
		{"first cut, no target 7", "t.ndb", "T0:0:*:" + helloHex, pad[:scanBuff-5] + "HELLO WORLD" + strings.Repeat("x", 5000), ""},
		{"first cut, carried", "t.ndb", "T7:7:*:" + helloHex, pad[:scanBuff-5] + "HELLO WORLD" + strings.Repeat("x", 5000), "T7"},
		{"second buffer offset", "t.ndb", "BA:0:134072:" + helloHex, pad + strings.Repeat("x", 3000) + "HELLO WORLD" + strings.Repeat("x", 100), "BA"},
		{"second buffer offset, carry counted twice", "t.ndb", mkdb("BS:0:134083:"+helloHex, z7), pad + strings.Repeat("x", 3000) + "HELLO WORLD" + strings.Repeat("x", 100), "BS"},
		{"second buffer offset, true", "t.ndb", mkdb("BS:0:134072:"+helloHex, z7), pad + strings.Repeat("x", 3000) + "HELLO WORLD" + strings.Repeat("x", 100), ""},
		{"second buffer offset, whole", "t.ndb", mkdb("BE:7:134072:"+helloHex, z7eof), pad + strings.Repeat("x", 3000) + "HELLO WORLD" + strings.Repeat("x", 100), "BE"},
		{"whitespace across a cut is two spaces", "t.ndb", "WS:7:*:6f2020776f", strings.Repeat("q", 126980) + "hello" + strings.Repeat(" ", 9000) + "world", "WS"},
		{"whole: whitespace across a slice is two spaces", "t.ndb", mkdb("WS:7:*:6f2020776f", z7eof), strings.Repeat("q", scanBuff+11-8) + "hello" + strings.Repeat(" ", 10) + "world" + strings.Repeat("x", 50), "WS"},
		{"whole: whitespace across a slice is not one", "t.ndb", mkdb("WA:7:*:6f20776f", z7eof), strings.Repeat("q", scanBuff+11-8) + "hello" + strings.Repeat(" ", 10) + "world" + strings.Repeat("x", 50), ""},
		{"whitespace across a cut is not one", "t.ndb", "WA:7:*:6f20776f", strings.Repeat("q", 126980) + "hello" + strings.Repeat(" ", 9000) + "world", ""},
	}
	runDBCases(t, tests)
}

// TestTextable: a signature needing a byte normalised text never holds
// is left out of the normalised pass; with none left, there is none.
func TestTextable(t *testing.T) {
	tests := []struct {
		sig  string
		want bool
	}{
		{helloHex, true},
		{"68656c6c6f20576f726c64", false}, // W
		{"68656c6c6f0a", false},           // LF
		{"68656c6c6fe9", false},
		{"68656c6c6f7f", true}, // DEL is kept
		{"68656c6c6f??", true},
		{"68656c6c6f4?", true},  // 0x40 '@'
		{"68656c6c6f5?", true},  // 0x5b-0x5f
		{"68656c6c6f0?", false}, // controls only
		{"68656c6c6f(0a|0b)", true},
		{"0a0a0a0a*68656c6c6f", false},
	}
	for _, tt := range tests {
		p, err := parseHex(tt.sig)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.textable(); got != tt.want {
			t.Errorf("%s: got %v want %v", tt.sig, got, tt.want)
		}
	}
	e, _ := loadNDB(t, "B:0:*:00010203040506")
	if e.body.any[classText] {
		t.Errorf("a binary signature makes a normalised pass")
	}
}

func TestHTMLFinder(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"x <script> y", true},
		{"x <IFRAME y", true},
		{"x <Iframe y", false},
		{"x <a b c href", true},
		{"x <A b c HrEF", true},
		{"x <a b c hreF", false},
		{"x href <a ", false},
		{"x <ab href", false},
		{"<img", true},
		{"<im", false},
	}
	for _, tt := range tests {
		// Every way of cutting it in three.
		for i := range len(tt.in) + 1 {
			for j := i; j <= len(tt.in); j++ {
				var h htmlFinder
				h.feed([]byte(tt.in[:i]))
				h.feed([]byte(tt.in[i:j]))
				h.feed([]byte(tt.in[j:]))
				if h.found != tt.want {
					t.Errorf("%q cut at %d, %d: got %v want %v", tt.in, i, j, h.found, tt.want)
				}
			}
		}
	}
}

// TestTextMembers: an archive's text members are normalised too.
func TestTextMembers(t *testing.T) {
	text := []byte("xx Hello \t World xx\n")
	tests := []dbCase{
		{"zip", "t.ndb", "T7:7:*:" + helloHex, string(zipOf(t, zip.Deflate, member{"m.txt", text})), "T7"},
		{"gzip", "t.ndb", "T0:0:*:" + helloHex, string(gzipOf(t, text)), "T0"},
	}
	runDBCases(t, tests)
}

// TestTextLimit: a text file over clamscan's --max-scriptnormalize default
// is matched raw only.
func TestTextLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MiB files")
	}
	line := strings.Repeat("abcdefghi\n", maxNormalise/10)
	tests := []dbCase{
		{"at the limit", "t.ndb", "T0:0:*:" + helloHex, line[:maxNormalise-12] + "HELLO WORLD\n", "T0"},
		{"over it", "t.ndb", "T0:0:*:" + helloHex, line + "HELLO WORLD\n", ""},
	}
	runDBCases(t, tests)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// TestTextReadOnce: the normalised pass reads nothing of its own, in
// either way of matching.
func TestTextReadOnce(t *testing.T) {
	data := []byte(strings.Repeat("Some text, Hello  World ", 60000) + "NOT  THERE") // 1.4 MB, several chunks
	for _, db := range [][]string{
		{"T7:7:*:6e6f74207468657265"},
		{"T7:7:EOF-9:6e6f74207468657265"},
	} {
		e, _ := loadNDB(t, db...)
		c := &countingReader{r: bytes.NewReader(data)}
		res, _, err := e.scan(context.Background(), c, int64(len(data)), "mem")
		if err != nil || !res.Infected {
			t.Fatalf("%v: got %+v, %v", db, res, err)
		}
		if c.n != int64(len(data)) {
			t.Errorf("%v: read %d bytes of %d", db, c.n, len(data))
		}
	}
}

// cancelAfter is a context whose Err is nil for its first n calls.
type cancelAfter struct {
	context.Context
	n int
}

func (c *cancelAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

// TestTextContext: the whole-file way checks ctx between slices of the
// normalised text, after the file is read, and stops when it says so.
func TestTextContext(t *testing.T) {
	data := []byte(strings.Repeat("Some text, Hello  World ", 60000))
	checks := func(db string) int {
		e, _ := loadNDB(t, db)
		ctx := &cancelAfter{Context: context.Background(), n: 1 << 30}
		if _, _, err := e.scan(ctx, bytes.NewReader(data), int64(len(data)), "mem"); err != nil {
			t.Fatal(err)
		}
		return 1<<30 - ctx.n
	}
	const whole = "T7:7:EOF-3:6e6f74207468657265"
	streamed, all := checks("T7:7:*:6e6f74207468657265"), checks(whole)
	space := false
	norm := len(normalise(nil, data, &space))
	if want := (norm - 1) / chunk; all-streamed != want || want < 2 {
		t.Errorf("got %d more checks whole than streamed, want %d", all-streamed, want)
	}
	e, _ := loadNDB(t, whole)
	ctx := &cancelAfter{Context: context.Background(), n: all - 1}
	if _, _, err := e.scan(ctx, bytes.NewReader(data), int64(len(data)), "mem"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled at the last check: got %v", err)
	}
}
