package clamav

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"

	"github.com/vigilsec/vigil/internal/scan"
)

// libclamav scans what a mail carries as files of their own (cli_scanmail,
// on by default): EICAR in a base64 attachment is found. The builtin
// engine does the same for a file libclamav types as mail (see isMail):
// each leaf part, decoded from base64 or quoted-printable, is scanned as
// an archive's member is, under the same bounds (unpacking). A multipart
// or message/rfc822 part is a level of nesting, as an archive in an
// archive is, and each message of an mbox is scanned. The parsing is as
// lenient as libclamav's, and as mail readers': a header or a boundary
// line that breaks the rules is read as well as it can be, bytes that are
// not base64 are skipped, and a part cut short is scanned as far as it
// goes. uuencode, binhex, yEnc, TNEF and message/partial are not decoded.
//
// net/mail, mime/multipart and mime/quotedprintable stop at the first
// thing that breaks the rules (a header line without a colon, a preamble
// line over 4 KiB, a control byte), and so would let a mail hide its
// attachment from us but not from its reader: mail is read line by line
// here, with mime.ParseMediaType and encoding/base64 doing what they can.

// mailMagics are the magics (see magics) of libclamav's mail types.
var mailMagics = []string{
	">From ", "Date: ", "Delivered-To: ", "Delivery-date: ", "Envelope-to: ", "For: ",
	"From ", "From: ", "Hi. This is the qmail-send", "Message-ID: ", "Message-Id: ",
	"Received: ", "Return-Path: ", "Return-path: ", "Subject: ", "To: ",
	"X-Apparently-To: ", "X-EVS", "X-Envelope-From: ", "X-Original-To: ",
	"X-Real-To: ", "X-Sieve: ", "X-Symantec-", "X-UIDL: ", "v:\nReceived: ",
	"v:\r\nReceived: ", "Received-SPF: ",
}

// mailHead is as far into a file as isMail looks: where the furthest of
// mailHeads ends, a "\nReceived: " at 2048 and a "\nContent-Type: " 2048
// bytes after it.
const mailHead = 2048 + 11 + 2048 + 15

// maxHeaderValue bounds what is kept of a Content-Type or
// Content-Transfer-Encoding header: the rest is read, not kept.
const maxHeaderValue = 4 << 10

// isMail reports whether libclamav scans a file with this head as a
// mail: it starts with a mail magic, or no magic types it and one of
// mailHeads is in it. libclamav types a file by mailHeads in its first
// 1,024 bytes, and its raw scan of an ASCII file finds them further on
// (MHTML's anywhere): mailHead bytes stand for both.
func isMail(head []byte) bool {
	for _, m := range mailMagics {
		if len(head) >= len(m) && string(head[:len(m)]) == m {
			return true
		}
	}
	head = head[:min(len(head), mailHead)]
	return !typedByMagic(head) && typedByHead(head, len(mailHeads))
}

// scanMail scans the parts of f, a mail, at depth. A file starting with
// "From " is an mbox, as libclamav takes it: a message starts after each
// "From " line that follows a blank line (or starts the file).
func (e *Engine) scanMail(ctx context.Context, f io.ReaderAt, size int64, name string,
	u *unpacking, depth int) (scan.Result, error) {
	var head [5]byte
	if n, _ := f.ReadAt(head[:], 0); n < len(head) || string(head[:]) != "From " {
		return e.scanEntity(ctx, f, size, name, u, depth, "text/plain")
	}
	i := 0
	return split(ctx, f, size, name, u, mboxSep, func(off, end int64) (scan.Result, error) {
		i++
		return e.scanEntity(ctx, io.NewSectionReader(f, off, end-off), end-off,
			path.Join(name, "message"+strconv.Itoa(i)), u, depth, "text/plain")
	})
}

// scanEntity scans the MIME entity r holds, a message or a part: a leaf
// is decoded and scanned as a file at depth; the parts of a multipart and
// the message of a message/rfc822 are entities a level deeper. media is
// the type of an entity that does not say (text/plain, or message/rfc822
// in a multipart/digest).
func (e *Engine) scanEntity(ctx context.Context, r io.ReaderAt, size int64, name string,
	u *unpacking, depth int, media string) (scan.Result, error) {
	h, at, err := readHeader(ctx, r, size, u)
	if err != nil {
		return scan.Result{}, fmt.Errorf("scan %s: %w", name, err)
	}
	if u.spent() {
		return scan.Result{}, nil
	}
	var boundary string
	if v, b := contentType(h.ctype); v != "" {
		media, boundary = v, b
	}
	body := io.NewSectionReader(r, at, size-at)
	switch {
	case strings.HasPrefix(media, "multipart") && boundary != "":
		if depth == maxArchiveDepth {
			return scan.Result{}, nil
		}
		inner := "text/plain"
		if media == "multipart/digest" {
			inner = "message/rfc822"
		}
		i := 0
		return split(ctx, body, size-at, name, u, boundarySep(boundary), func(off, end int64) (scan.Result, error) {
			i++
			return e.scanEntity(ctx, io.NewSectionReader(body, off, end-off), end-off,
				path.Join(name, strconv.Itoa(i)), u, depth+1, inner)
		})
	case media == "message/rfc822":
		if depth == maxArchiveDepth {
			return scan.Result{}, nil
		}
		dec := decoder(h.cte, body)
		if dec == nil {
			return e.scanEntity(ctx, body, size-at, name, u, depth+1, "text/plain")
		}
		return scanUnpacked(ctx, dec, name, u, func(data io.ReaderAt, n int64) (scan.Result, error) {
			return e.scanEntity(ctx, data, n, name, u, depth+1, "text/plain")
		})
	}
	dec := decoder(h.cte, body)
	if dec == nil {
		return e.scanInPlace(ctx, r, at, size-at, name, u, depth)
	}
	return scanUnpacked(ctx, dec, name, u, func(data io.ReaderAt, n int64) (scan.Result, error) {
		return e.scanFile(ctx, data, n, name, u, depth)
	})
}

// mimeHeader is what a MIME entity's header says of its body.
type mimeHeader struct {
	ctype, cte []byte // the last Content-Type and Content-Transfer-Encoding
}

// readHeader reads the header r starts with, up to the blank line that
// ends it, and returns it with the offset of the body. As libclamav does,
// it skips blank lines before the header (some viruses insert them) and
// lines that are not headers, and a header ending in ';' goes on on the
// next line, indented or not. Only the context's errors are errors.
func readHeader(ctx context.Context, r io.ReaderAt, size int64, u *unpacking) (mimeHeader, int64, error) {
	var (
		h     mimeHeader
		cur   *[]byte // the header being read, if one kept
		seen  bool    // a line that is not blank
		off   int64
		whole = true // the line read next starts a line
	)
	br := lines(ctx, r, size, u)
	for {
		line, err := br.ReadSlice('\n')
		off += int64(len(line))
		start := whole
		whole = bytes.HasSuffix(line, []byte("\n"))
		text := trimEOL(line)
		switch {
		case len(line) == 0:
		case start && len(text) == 0:
			if seen {
				return h, off, nil
			}
		case !start, text[0] == ' ' || text[0] == '\t',
			cur != nil && bytes.HasSuffix(bytes.TrimRight(*cur, " \t"), []byte(";")) && !isHeaderLine(text):
			seen = true
			if cur != nil {
				*cur = append(*cur, text[:min(len(text), maxHeaderValue-len(*cur))]...)
			}
		default:
			seen, cur = true, nil
			k, v, _ := bytes.Cut(text, []byte(":"))
			switch {
			case !isHeaderLine(text):
			case bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Type")):
				cur = &h.ctype
			case bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Transfer-Encoding")):
				cur = &h.cte
			}
			if cur != nil {
				*cur = append((*cur)[:0], v[:min(len(v), maxHeaderValue)]...)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if err := ctx.Err(); err != nil {
				return h, 0, err
			}
			return h, off, nil
		}
	}
}

// lines reads r's size bytes for ReadSlice, line by line, a line longer
// than 4 KiB in pieces, failing as unpackReader does. Its buffer is no
// larger than r: a mail of many small parts costs what its size does.
func lines(ctx context.Context, r io.ReaderAt, size int64, u *unpacking) *bufio.Reader {
	return bufio.NewReaderSize(unpackReader{ctx, u, io.NewSectionReader(r, 0, size)}, int(min(size+1, 4<<10)))
}

// isHeaderLine reports whether line starts as a header does: a name, then
// ':'. A line that does not is no header, or goes on the one before.
func isHeaderLine(line []byte) bool {
	k, _, ok := bytes.Cut(line, []byte(":"))
	return ok && len(bytes.TrimSpace(k)) > 0 && !bytes.ContainsAny(bytes.TrimSpace(k), " \t=\"")
}

// trimEOL is line without its line end, "\n" or "\r\n".
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// contentType reads a Content-Type header as a lenient reader does: its
// media type, lower case, and its boundary parameter, the last one, even
// among parameters mime.ParseMediaType refuses.
func contentType(v []byte) (media, boundary string) {
	s := string(v)
	media, params, err := mime.ParseMediaType(s)
	if err == nil {
		return media, params["boundary"]
	}
	t, _, _ := strings.Cut(s, ";")
	return strings.ToLower(strings.TrimSpace(t)), lastParam(s, "boundary")
}

// lastParam returns the value of the last name= in s, quoted or not.
func lastParam(s, name string) string {
	key := name + "="
	for i := len(s) - len(key); i >= 0; i-- {
		if !strings.EqualFold(s[i:i+len(key)], key) {
			continue
		}
		v := s[i+len(key):]
		if q, ok := strings.CutPrefix(v, `"`); ok {
			v, _, _ = strings.Cut(q, `"`)
			return v
		}
		if j := strings.IndexAny(v, "; \t"); j >= 0 {
			v = v[:j]
		}
		return v
	}
	return ""
}

// decoder returns what decodes body in the Content-Transfer-Encoding
// cte, or nil for one read as it is (7bit, 8bit, binary and the unknown).
// Misspelt names are taken as libclamav takes them, as near enough.
func decoder(cte []byte, body io.Reader) io.Reader {
	s := strings.ToLower(string(cte))
	switch {
	case strings.Contains(s, "base64"):
		return newBase64Reader(body)
	case strings.Contains(s, "quoted"), strings.Contains(s, "printable"):
		return qpReader{bufio.NewReader(body)}
	}
	return nil
}

// sep is what split takes a line for.
type sep uint8

const (
	notSep   sep = iota
	sepOpen      // ends the section open, if any, and opens one after it
	sepClose     // ends the section open
)

// mboxSep opens a message at a "From " line after a blank line.
func mboxSep(line []byte, afterBlank bool) sep {
	if afterBlank && bytes.HasPrefix(line, []byte("From ")) {
		return sepOpen
	}
	return notSep
}

// boundarySep opens a part at a boundary's delimiter line, and ends the
// last at its close delimiter. As in libclamav, case does not matter,
// nor does the number of leading dashes past two (some viruses write one
// more or fewer than their boundary has), nor trailing blanks.
func boundarySep(boundary string) func([]byte, bool) sep {
	b := []byte(strings.TrimRight(strings.TrimLeft(boundary, "-"), " \t"))
	return func(line []byte, _ bool) sep {
		if !bytes.HasPrefix(line, []byte("--")) {
			return notSep
		}
		rest := bytes.TrimRight(bytes.TrimLeft(line, "-"), " \t")
		switch {
		case bytes.EqualFold(rest, b):
			return sepOpen
		case len(rest) == len(b)+2 && bytes.EqualFold(rest[:len(b)], b) && string(rest[len(b):]) == "--":
			return sepClose
		}
		return notSep
	}
}

// split reads r's size bytes line by line and calls part with each
// section a line opens (sepOf says, from the line without its line end,
// up to 4 KiB of it, and whether the line before was blank): from after
// that line to the line end before the next that opens or closes one, or
// to the end of r. It stops at a detection, an error or once u is spent.
func split(ctx context.Context, r io.ReaderAt, size int64, name string, u *unpacking,
	sepOf func(line []byte, afterBlank bool) sep, part func(off, end int64) (scan.Result, error)) (scan.Result, error) {
	var (
		off   int64       // of the line read next
		open  int64  = -1 // where the open section starts, -1 for none
		end   int64       // where the last line read ends, its line end excluded
		whole = true      // the line read next starts a line
		blank = true      // the last line was blank
	)
	br := lines(ctx, r, size, u)
	for {
		line, err := br.ReadSlice('\n')
		at := off
		off += int64(len(line))
		start := whole
		whole = bytes.HasSuffix(line, []byte("\n"))
		text := trimEOL(line)
		if start && len(line) > 0 {
			if s := sepOf(text, blank); s != notSep {
				if open >= 0 {
					res, err := part(open, max(open, end))
					if err != nil || res.Infected || u.spent() {
						return res, err
					}
				}
				open = -1
				if s == sepOpen {
					open = off
				}
			}
			blank = len(text) == 0
		} else if len(line) > 0 {
			blank = false
		}
		end = at + int64(len(text))
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return scan.Result{}, fmt.Errorf("scan %s: %w", name, err)
	}
	if open < 0 || u.spent() {
		return scan.Result{}, nil
	}
	return part(open, max(open, off))
}

// base64Reader decodes base64 as leniently as libclamav does: bytes out
// of the alphabet are skipped, '=' ends a quantum wherever it comes, and
// a quantum cut short decodes to what it holds.
type base64Reader struct {
	r   io.Reader
	in  []byte
	enc []byte // alphabet bytes not decoded yet
	dec []byte
	out []byte // decoded, not read yet
	err error
}

var base64Alphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = true
	}
	return t
}()

func newBase64Reader(r io.Reader) *base64Reader {
	const n = 4 << 10
	return &base64Reader{r: r, in: make([]byte, n), enc: make([]byte, 0, n+4), dec: make([]byte, 0, n)}
}

func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.r.Read(b.in)
		b.out = b.dec[:0]
		for _, c := range b.in[:n] {
			if base64Alphabet[c] {
				b.enc = append(b.enc, c)
			} else if c == '=' {
				b.decode(true)
			}
		}
		b.err = err
		b.decode(err != nil)
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// decode appends to out what the whole quanta in enc decode to, and, at
// the end of a quantum or of the data, what the rest does: its last 6
// bits make no byte when it has one byte only.
func (b *base64Reader) decode(end bool) {
	k := len(b.enc) &^ 3
	if end && len(b.enc)%4 != 1 {
		k = len(b.enc)
	}
	n, _ := base64.RawStdEncoding.Decode(b.out[len(b.out):cap(b.out)], b.enc[:k])
	b.out = b.out[:len(b.out)+n]
	if end {
		k = len(b.enc)
	}
	b.enc = b.enc[:copy(b.enc, b.enc[k:])]
}

// qpReader decodes quoted-printable as leniently as libclamav does: an
// '=' that starts no escape and no soft line break is itself, and no
// byte is refused.
type qpReader struct{ r *bufio.Reader }

func (q qpReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c, err := q.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if c == '=' {
			next, _ := q.r.Peek(80)
			var b [1]byte
			if len(next) >= 2 {
				if _, err := hex.Decode(b[:], next[:2]); err == nil {
					q.r.Discard(2)
					p[n] = b[0]
					n++
					continue
				}
			}
			blanks := len(next) - len(bytes.TrimLeft(next, " \t"))
			switch eol := next[blanks:]; {
			case bytes.HasPrefix(eol, []byte("\n")):
				q.r.Discard(blanks + 1)
				continue
			case bytes.HasPrefix(eol, []byte("\r\n")):
				q.r.Discard(blanks + 2)
				continue
			}
		}
		p[n] = c
		n++
	}
	return n, nil
}
