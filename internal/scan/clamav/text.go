package clamav

import (
	"bytes"
	"encoding/hex"
	"slices"
)

// Text files get a second body scan, as libclamav gives them
// (cli_scanscript): their bytes normalised, matched against the target 0
// and target 7 (ASCII) signatures. What is text, how it is normalised and
// which offsets the normalised bytes have follow ClamAV 1.4, quirks
// included; see textScan.

const (
	// textHead is how much of a file libclamav types: CL_FILE_MBUFF_SIZE.
	textHead = 1024
	// maxNormalise is clamscan's --max-scriptnormalize default: a larger
	// file gets no normalised scan.
	maxNormalise = 20 << 20
	// scanBuff and textPage are libclamav's SCANBUFF and the page size its
	// file maps read in: they set where normalised buffers are cut.
	scanBuff = 128 << 10
	textPage = 4096
)

// textKind is libclamav's verdict on a file's head: text or not.
type textKind uint8

const (
	notText textKind = iota
	textASCII
	textUTF8
	textUTF16LE
	textUTF16BE
)

// Byte classes of libclamav's text detection (from file(1)'s ascmagic):
// never in text, plain ASCII, ISO-8859, other extended ASCII.
const (
	tcNever = iota
	tcASCII
	tcISO
	tcExt
)

var textClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c == 7, c == 8, c == 9, c == 10, c == 12, c == 13, c == 27:
			t[c] = tcASCII // BEL BS HT LF FF CR ESC (not VT)
		case c < 0x20, c == 0x7f:
			t[c] = tcNever
		case c < 0x7f, c == 0x85: // NEL
			t[c] = tcASCII
		case c < 0xa0:
			t[c] = tcExt
		default:
			t[c] = tcISO
		}
	}
	return t
}()

// magicAt holds the offset-0 magics by first byte, and the others.
var magicAt, magicFar = func() (at [256][][]byte, far []farMagic) {
	for _, m := range magics {
		b, err := hex.DecodeString(m.hex)
		if err != nil || len(b) == 0 {
			panic("clamav: bad magic " + m.hex)
		}
		if m.off != 0 {
			far = append(far, farMagic{m.off, b})
			continue
		}
		at[b[0]] = append(at[b[0]], b)
	}
	return at, far
}()

type farMagic struct {
	off int
	b   []byte
}

// typedByMagic reports whether libclamav's magic types a file with this
// head as something (cli_compare_ftm_file), so that it is not text.
func typedByMagic(head []byte) bool {
	if len(head) == 0 {
		return false
	}
	for _, m := range magicAt[head[0]] {
		if len(head) >= len(m) && string(head[:len(m)]) == string(m) {
			return true
		}
	}
	for _, m := range magicFar {
		if len(head) >= m.off+len(m.b) && string(head[m.off:m.off+len(m.b)]) == string(m.b) {
			return true
		}
	}
	return false
}

// textKindOf types a file's first textHead bytes as libclamav's
// cli_texttype does. "ASCII" is any byte but C0 controls other than
// BEL BS HT LF FF CR ESC, and DEL: Latin-1 and UTF-8 text is ASCII there.
func textKindOf(head []byte) textKind {
	switch {
	case isASCIIText(head):
		return textASCII
	case isUTF8Text(head):
		return textUTF8
	}
	return utf16Text(head)
}

func isASCIIText(b []byte) bool {
	for _, c := range b {
		if textClass[c] == tcNever {
			return false
		}
	}
	return true
}

// isUTF8Text: well-formed sequences of up to 6 bytes, at least one of
// them multi-byte, and no control but the text ones. A sequence cut by
// the end of head ends the check with what was seen so far.
func isUTF8Text(b []byte) bool {
	multi := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < 0x80 {
			if textClass[c] != tcASCII {
				return false
			}
			continue
		}
		var follow int
		switch {
		case c&0x40 == 0:
			return false
		case c&0x20 == 0:
			follow = 1
		case c&0x10 == 0:
			follow = 2
		case c&0x08 == 0:
			follow = 3
		case c&0x04 == 0:
			follow = 4
		case c&0x02 == 0:
			follow = 5
		default:
			return false
		}
		for range follow {
			i++
			if i >= len(b) {
				return multi
			}
			if b[i]&0xc0 != 0x80 {
				return false
			}
		}
		multi = true
	}
	return multi
}

// utf16Text is libclamav's UTF-16 check. Its first two bytes are never
// read as a character, BOM or not; without a BOM it reads big-endian and
// refuses any control character, with one it refuses only when half the
// length in bytes are controls. Most random data passes: 0xfffe or a
// control, each 1 in 2,048 per character, is all that fails it, and
// libclamav normalises such files as text. So do we.
func utf16Text(b []byte) textKind {
	if len(b) < 2 {
		return notText
	}
	be, bom := true, true
	switch {
	case b[0] == 0xff && b[1] == 0xfe:
		be = false
	case b[0] == 0xfe && b[1] == 0xff:
	default:
		bom = false
	}
	bad := 0
	for i := 2; i+1 < len(b); i += 2 {
		c := int(b[i])<<8 | int(b[i+1])
		if !be {
			c = int(b[i+1])<<8 | int(b[i])
		}
		if c == 0xfffe {
			return notText
		}
		if c < 0x80 && textClass[c] != tcASCII {
			if !bom {
				return notText
			}
			bad++
		}
	}
	if bom && bad >= len(b)/2 {
		return notText
	}
	if be {
		return textUTF16BE
	}
	return textUTF16LE
}

// normTab is libclamav's text normalisation (textnorm.c) as one table:
// 0 drops the byte (controls but whitespace, and every byte over 0x7f;
// DEL is kept), ' ' is whitespace (HT LF VT FF CR and space: a run is
// one space), anything else is the byte written, upper case lowered. A
// dropped byte does not end a run of whitespace.
var normTab = func() (t [256]byte) {
	for c := range t {
		switch {
		case c >= 9 && c <= 13, c == ' ':
			t[c] = ' '
		case c < 0x20, c >= 0x80:
			t[c] = 0
		case 'A' <= c && c <= 'Z':
			t[c] = byte(c) + 'a' - 'A'
		default:
			t[c] = byte(c)
		}
	}
	return t
}()

// normOut is what normalised text is made of: every byte normTab writes.
var normOut = func() (out [256]bool) {
	for _, o := range normTab {
		out[o] = o != 0
	}
	return out
}()

// textable reports whether p may match normalised text: no byte a run of
// it requires is one normalisation never writes (a control, upper case, a
// byte over 0x7f). Most signatures are binary: they are left out of the
// normalised pass, which costs nothing when none is left.
func (p *hexPattern) textable() bool {
	for _, pt := range p.parts {
		for _, e := range pt.elems {
			if e.kind != elRun {
				continue // conservative: alternatives, sets and classes may
			}
			for _, b := range e.run {
				ok := false
				for c := range 256 {
					if normOut[c] && byte(c)&b.mask == b.val {
						ok = true
						break
					}
				}
				if !ok {
					return false
				}
			}
		}
	}
	return true
}

// normalise appends src, normalised, to dst; space says whether the last
// byte written was whitespace and is updated. Every byte is written, then
// kept or not, without a branch: words and spaces, and random data (which
// libclamav mostly takes for UTF-16 text), would mispredict most of them.
func normalise(dst, src []byte, space *bool) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(src))[:n+len(src)]
	var sp uint8
	if *space {
		sp = 1
	}
	for _, c := range src {
		o := normTab[c]
		dst[n] = o
		isSp := b2u(o == ' ')
		n += int(b2u(o > ' ') | isSp&^sp)
		sp = isSp | sp&b2u(o == 0)
	}
	*space = sp == 1
	return dst[:n]
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// textScan is the normalised pass over one text file. libclamav has two
// ways (cli_scanscript), and which it takes depends on the database:
//
//   - Streamed, the usual way: pages of the file are normalised into a
//     buffer of scanBuff plus the longest target 7 part; a full buffer is
//     matched alone (a part cannot span two), its last maxPat bytes are
//     carried to the next one, and the next buffer's offsets start where
//     the last one's ended, carried bytes counted twice. So an absolute
//     offset past the first buffer is off by maxPat per buffer before it,
//     and EOF-n offsets never match (there is no size to count from). A
//     run of whitespace across a cut is two spaces.
//   - Whole, when a target 7 signature has an EOF-n offset: the file is
//     normalised whole, in slices of scanBuff+maxPat input bytes
//     (whitespace runs across them are again two spaces), and matched as
//     a file of its own: offsets are into it, EOF-n from its end. vigil
//     keeps the normalised text in memory for that, maxNormalise at most.
//
// We model the streamed offsets rather than fix them: a signature's
// verdict is clamscan's.
type textScan struct {
	bs     *bodyScan
	whole  bool
	size   int64 // the file's size, for the page lengths
	in     int64 // input bytes normalised so far
	out    []byte
	space  bool
	base   int64 // streamed: the offset of out[0]
	carry  int   // streamed: maxPat
	pooled *[]byte
	hit    int // a signature found, or -1
	// html looks for HTML in an ASCII file: libclamav's raw scan, meeting
	// some, makes the file HTML, and then does not normalise it as text.
	html *htmlFinder
}

// startText returns the normalised pass for a file of the given size
// whose first bytes are head, or nil when the file is not text to
// libclamav or no signature applies to text.
func (m *matcher) startText(size int64, head []byte) *textScan {
	if m == nil || !m.any[classText] || size > maxNormalise || !isText(head) {
		return nil
	}
	bs := m.start(classText, size, nil)
	t := &textScan{bs: bs, whole: m.textRel, size: size, carry: m.textPat, hit: -1}
	if textKindOf(head[:min(len(head), textHead)]) == textASCII {
		t.html = &htmlFinder{}
	}
	if t.whole {
		t.out = make([]byte, 0, min(size, 1<<20))
	} else {
		bs.noEOF = true
		t.pooled = m.textBufs.Get().(*[]byte)
		t.out = (*t.pooled)[:0]
	}
	return t
}

func (t *textScan) release() {
	if t.bs == nil {
		return
	}
	if t.pooled != nil {
		t.bs.m.textBufs.Put(t.pooled)
		t.pooled = nil
	}
	t.bs.release()
	t.bs = nil
}

// dropped reports that the file turned out HTML: no normalised pass.
func (t *textScan) dropped() bool { return t.html != nil && t.html.found }

// settled reports that the rest of the file cannot change the verdict.
func (t *textScan) settled() bool { return t.dropped() || t.hit >= 0 && t.html == nil }

// feed normalises the file's next bytes; streamed, it matches every
// buffer it fills, up to a signature found.
func (t *textScan) feed(p []byte) {
	if t.html != nil {
		if t.html.feed(p); t.html.found {
			return
		}
	}
	if t.hit >= 0 {
		return
	}
	if t.whole {
		slice := int64(scanBuff + t.carry)
		for len(p) > 0 {
			at := t.in % slice
			if at == 0 {
				t.space = false
			}
			n := int(min(int64(len(p)), slice-at))
			t.out = normalise(t.out, p[:n], &t.space)
			t.in += int64(n)
			p = p[n:]
		}
		return
	}
	for len(p) > 0 {
		at := t.in % textPage
		if at == 0 {
			// libclamav checks a whole page's room before reading it.
			page := min(textPage, t.size-t.in)
			if int64(len(t.out))+page > int64(cap(t.out)) {
				if t.hit = t.flush(); t.hit >= 0 {
					return
				}
			}
		}
		n := int(min(int64(len(p)), textPage-at))
		t.out = normalise(t.out, p[:n], &t.space)
		t.in += int64(n)
		p = p[n:]
	}
}

// flush matches the streamed buffer and starts the next one.
func (t *textScan) flush() int {
	n := len(t.out)
	sig := t.bs.scan(t.out, t.base, t.base, t.base+int64(n))
	t.base += int64(n)
	if n > t.carry {
		copy(t.out, t.out[n-t.carry:])
	}
	// Fewer bytes than the carry happen only at the end.
	t.out = t.out[:t.carry]
	t.space = false
	return sig
}

// finish matches what is left, or the whole normalised text, checking
// ctx between slices of it; it returns the signature found, or -1.
func (t *textScan) finish(done func() error) (int, error) {
	if t.dropped() {
		return -1, nil
	}
	if t.hit >= 0 {
		return t.hit, nil
	}
	if !t.whole {
		return t.flush(), nil
	}
	t.bs.size = int64(len(t.out))
	for from := 0; from < len(t.out); from += chunk {
		if from > 0 {
			if err := done(); err != nil {
				return -1, err
			}
		}
		to := min(from+chunk, len(t.out))
		if sig := t.bs.scan(t.out, 0, int64(from), int64(to)); sig >= 0 {
			return sig, nil
		}
	}
	return -1, nil
}

// isText reports whether libclamav normalises a file with this head: text
// that no magic types. (Its one script magic, an mIRC ini's "[aliases]",
// is shadowed by a later line making such files POSIX tar.)
func isText(head []byte) bool {
	head = head[:min(len(head), textHead)]
	if typedByMagic(head) {
		return false
	}
	switch k := textKindOf(head); k {
	case notText:
		return false
	case textUTF16LE, textUTF16BE:
		if utf16HTML(head, k) {
			return false
		}
	}
	return !typedByContent(head)
}

// htmlTags are libclamav's built-in HTML file type signatures (type 1,
// any offset), but for "<a " ... "href": a text file holding one is HTML
// to it, and HTML files are parsed, not normalised as text (out of our
// scope: their target 3 signatures stay unused). In the first 1,024 bytes
// they make the file HTML; further on, a raw scan that meets one turns an
// ASCII file into HTML all the same (scanraw's dettype).
var htmlTags = []string{
	"<HEAD>", "<HTML>", "<Head>", "<Html>", "<IFRAME", "<IMG", "<Img",
	"<OBJECT", "<Object", "<SCRIPT", "<Script", "<TABLE", "<head>",
	"<html>", "<iframe", "<img", "<object", "<script", "<table",
}

// htmlAt is the one HTML signature at offset 0 only.
const htmlAt = "<%@ LANGUAGE ="

// htmlReach is the longest tag, less one: what a tag may reach into the
// next chunk.
const htmlReach = 6

// htmlFinder looks for HTML in a file's bytes fed in order.
type htmlFinder struct {
	tail  [htmlReach]byte
	nt    int
	sawA  bool // "<a " or "<A " was seen: an href after it is HTML
	found bool
}

// feed looks at the file's next bytes.
func (h *htmlFinder) feed(p []byte) {
	if h.found || len(p) == 0 {
		return
	}
	if h.nt > 0 {
		// What starts in the tail and ends in p.
		var j [2 * htmlReach]byte
		k := copy(j[:], h.tail[:h.nt])
		k += copy(j[k:], p[:min(len(p), htmlReach)])
		if h.scan(j[:k], h.nt); h.found {
			return
		}
	}
	h.scan(p, len(p))
	if len(p) >= htmlReach {
		h.nt = copy(h.tail[:], p[len(p)-htmlReach:])
	} else {
		keep := min(h.nt, htmlReach-len(p))
		copy(h.tail[:], h.tail[h.nt-keep:h.nt])
		h.nt = keep + copy(h.tail[keep:], p)
	}
}

// scan looks for HTML starting before limit in b.
func (h *htmlFinder) scan(b []byte, limit int) {
	for i := 0; i < limit; {
		if h.sawA {
			for ; i < limit; i++ {
				if i+4 <= len(b) && b[i]|0x20 == 'h' && b[i+1]|0x20 == 'r' &&
					(b[i+2] == 'E' && b[i+3] == 'F' || b[i+2] == 'e' && b[i+3] == 'f') {
					h.found = true
					return
				}
			}
			return
		}
		k := bytes.IndexByte(b[i:limit], '<')
		if k < 0 {
			return
		}
		i += k
		rest := b[i:]
		for _, tag := range htmlTags {
			if len(rest) >= len(tag) && string(rest[:len(tag)]) == tag {
				h.found = true
				return
			}
		}
		if len(rest) >= 3 && rest[1]|0x20 == 'a' && rest[2] == ' ' {
			h.sawA = true
			i += 3
			continue
		}
		i++
	}
}

// typedByContent reports whether libclamav's file type signatures make
// a file with this head something other than text: HTML, PDF ("%PDF-" or
// "%pdf-", a byte, a dot, anywhere in it), or one of headTypes.
func typedByContent(head []byte) bool {
	if bytes.HasPrefix(head, []byte(htmlAt)) {
		return true
	}
	for i := 0; ; {
		k := bytes.Index(head[i:], []byte("-"))
		if k < 0 {
			break
		}
		i += k + 1
		if j := i - 5; j >= 0 && i+2 <= len(head) && head[i+1] == '.' &&
			(string(head[j:i]) == "%PDF-" || string(head[j:i]) == "%pdf-") {
			return true
		}
	}
	if typedByHead(head, len(headTypes)) {
		return true
	}
	var h htmlFinder
	h.scan(head, len(head))
	return h.found
}

// utf16HTML reports whether libclamav finds HTML in a UTF-16 head, which
// it decodes twice for that: each pair as (second<<4)+first, a byte, and,
// after a byte order mark, as UTF-16 of that order.
func utf16HTML(head []byte, k textKind) bool {
	var h htmlFinder
	dec := make([]byte, 0, len(head)/2)
	for i := 0; i+1 < len(head); i += 2 {
		dec = append(dec, head[i+1]<<4+head[i])
	}
	if h.scan(dec, len(dec)); h.found {
		return true
	}
	if len(head) < 2 || !(head[0] == 0xff && head[1] == 0xfe || head[0] == 0xfe && head[1] == 0xff) {
		return false
	}
	dec = dec[:0]
	for i := 2; i+1 < len(head); i += 2 {
		lo, hi := head[i], head[i+1]
		if k == textUTF16BE {
			lo, hi = hi, lo
		}
		if hi == 0 && lo < 0x80 {
			dec = append(dec, lo)
		}
	}
	h.scan(dec, len(dec))
	return h.found
}

// headType is one of libclamav's file type signatures for text-looking
// files other than HTML's, as a first piece starting in [0, within], and
// optionally a second starting at most gap bytes after the first's end.
// Pieces are literal but for [xy], one of two bytes, and \x01, any byte. A head that holds
// one is typed (mail, MHTML, an XML document, ...), not text.
type headType struct {
	first  string
	within int
	gap    int
	second string
}

// mailHeads are the headTypes of mail and MHTML: a file they type is
// scanned as a mail (see isMail).
var mailHeads = []headType{
	{"\n[Ff]rom: ", textHead, 1024, "\n[Mm][Ii][Mm][Ee]-[Vv]ersion: "},
	{"\n[Ff]rom: ", textHead, 2048, "\n[Cc]ontent-[Tt]ype: "},
	{"\n[Mm][Ii][Mm][Ee]-[Vv]ersion: ", textHead, 2048, "\n[Cc]ontent-[Tt]ype: "},
	{"\n[Mm]essage-[Ii]d: ", textHead, 1024, "\n[Cc]ontent-[Tt]ype: "},
	{"\n[Rr]eceived: ", 2048, 2048, "\n[Cc]ontent-[Tt]ype: "},
	{"Delivered-To:", textHead, 256, "Received:"},
	{"[Mm][Ii][Mm][Ee]-[Vv]ersion: ", 0, 1024, "\n[Cc]ontent-[Tt]ype: "},          // MHTML
	{"\n[Mm][Ii][Mm][Ee]-[Vv]ersion: ", textHead, 1024, "\n[Cc]ontent-[Tt]ype: "}, // MHTML
}

var headTypes = append(slices.Clip(mailHeads), []headType{
	{`<?xml version="1.0"`, 0, 1024, "<Workbook"},
	{`<?xml version="1.0"`, 0, 1024, "<wordDocument"},
	{`<?xml version="1.0"`, 0, 1024, "<\x01\x01:Workbook"},
	{`<?xml version="1.0"`, 0, 1024, "<\x01\x01:wordDocument"},
	{`<?xml version="1.0"`, 0, 1024, `progid="Word.Document"?>`},
	{"\xef\xbb\xbf<?xml version=\"1.0\"", 0, textHead, "<HWPML"},
	{"<xdp:xdp", textHead, 0, ""},
	{"\x01\r\r\n", 0, 0, ""},       // Python 3.7 byte code
	{"\x01\x01-lh[01]-", 0, 0, ""}, // LHA
	{"\x01\x01-lh[23]-", 0, 0, ""},
	{"\x01\x01-lh[45]-", 0, 0, ""},
	{"\x01\x01-lh[67]-", 0, 0, ""},
	{"\x01\x01-lh[dx]-", 0, 0, ""},
	{"\x01\x01-lz[s4]-", 0, 0, ""},
	{"\x01\x01-lz5-", 0, 0, ""},
	{"\x01\x01-pm0-", 0, 0, ""},
}...)

// piece is a parsed headType piece: per byte, two allowed values.
type piece [][2]byte

func parsePiece(s string) piece {
	var p piece
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '[' && i+3 < len(s) && s[i+3] == ']':
			p = append(p, [2]byte{s[i+1], s[i+2]})
			i += 3
		case s[i] == 1:
			p = append(p, [2]byte{}) // any byte
		default:
			p = append(p, [2]byte{s[i], s[i]})
		}
	}
	return p
}

func (p piece) at(b []byte, i int) bool {
	if i < 0 || i+len(p) > len(b) {
		return false
	}
	for k, c := range p {
		if v := b[i+k]; c != [2]byte{} && v != c[0] && v != c[1] {
			return false
		}
	}
	return true
}

// find returns the first i in [from, last] where p is in b, or -1. A
// piece starting with a fixed byte is looked for by that byte first.
func (p piece) find(b []byte, from, last int) int {
	last = min(last, len(b)-len(p))
	for i := from; i <= last; i++ {
		if c := p[0]; c[0] == c[1] && c[0] != 0 {
			k := bytes.IndexByte(b[i:last+1], c[0])
			if k < 0 {
				return -1
			}
			i += k
		}
		if p.at(b, i) {
			return i
		}
	}
	return -1
}

var headPieces = func() (out [][2]piece) {
	for _, h := range headTypes {
		out = append(out, [2]piece{parsePiece(h.first), parsePiece(h.second)})
	}
	return out
}()

// typedByHead reports whether one of headTypes[:types] is in head.
func typedByHead(head []byte, types int) bool {
	for k, h := range headTypes[:types] {
		p := headPieces[k]
		for i := p[0].find(head, 0, h.within); i >= 0; i = p[0].find(head, i+1, h.within) {
			if len(p[1]) == 0 {
				return true
			}
			if from := i + len(p[0]); p[1].find(head, from, from+h.gap) >= 0 {
				return true
			}
		}
	}
	return false
}
