package clamav

import (
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

// normalise appends src, normalised, to dst; space says whether the last
// byte written was whitespace and is updated.
func normalise(dst, src []byte, space *bool) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(src))[:n+len(src)]
	sp := *space
	for _, c := range src {
		o := normTab[c]
		if o > ' ' {
			dst[n] = o
			n++
			sp = false
		} else if o == ' ' && !sp {
			dst[n] = ' '
			n++
			sp = true
		}
	}
	*space = sp
	return dst[:n]
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
}

// startText returns the normalised pass for a file of the given size
// whose first bytes are head, or nil when the file is not text to
// libclamav or no signature applies to text.
func (m *matcher) startText(size int64, head []byte) *textScan {
	if m == nil || !m.any[classText] || size > maxNormalise || !isText(head) {
		return nil
	}
	bs := m.start(classText, size, nil)
	t := &textScan{bs: bs, whole: m.textRel, size: size, carry: m.textPat}
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

// feed normalises the file's next bytes; streamed, it matches every
// buffer it fills and returns a signature found, or -1.
func (t *textScan) feed(p []byte) int {
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
		return -1
	}
	for len(p) > 0 {
		at := t.in % textPage
		if at == 0 {
			// libclamav checks a whole page's room before reading it.
			page := min(textPage, t.size-t.in)
			if int64(len(t.out))+page > int64(cap(t.out)) {
				if sig := t.flush(); sig >= 0 {
					return sig
				}
			}
		}
		n := int(min(int64(len(p)), textPage-at))
		t.out = normalise(t.out, p[:n], &t.space)
		t.in += int64(n)
		p = p[n:]
	}
	return -1
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
// ctx between slices of it; it returns a signature found, or -1.
func (t *textScan) finish(done func() error) (int, error) {
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
	return !typedByMagic(head) && textKindOf(head) != notText
}
