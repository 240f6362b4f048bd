package clamav

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// b64 is data in base64, in lines of 76 as mailers write it.
func b64(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s + "\r\n"
}

// mailPart is a MIME part: its headers, a blank line, its body.
func mailPart(headers, body string) string { return headers + "\r\n\r\n" + body }

// multipart joins parts under boundary, close delimiter included.
func multipart(boundary string, parts ...string) string {
	var b strings.Builder
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p + "\r\n")
	}
	return b.String() + "--" + boundary + "--\r\n"
}

// eml is a mail with the usual headers, then headers, a blank line, body.
func eml(headers, body string) string {
	return "Return-Path: <a@example.org>\r\nFrom: a@example.org\r\nTo: b@example.org\r\n" +
		"Subject: hi\r\nMIME-Version: 1.0\r\n" + mailPart(headers, body)
}

// attached is a mail with a text part and one base64 attachment.
func attached(data []byte) string {
	return eml(`Content-Type: multipart/mixed; boundary="=-b1"`, multipart("=-b1",
		mailPart("Content-Type: text/plain; charset=us-ascii", "See attached.\r\n"),
		mailPart("Content-Type: application/octet-stream; name=\"x.com\"\r\n"+
			"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"x.com\"", b64(data))))
}

// nestMultiparts puts part in n multiparts, one in the other.
func nestMultiparts(n int, part string) string {
	for i := range n {
		b := fmt.Sprintf("level%d", i)
		part = mailPart("Content-Type: multipart/mixed; boundary="+b, multipart(b, part))
	}
	return part
}

var eicarPart = mailPart("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64", b64([]byte(EICAR)))

// The leaf parts of a mail are decoded and scanned as files of their own,
// as libclamav scans them (clamscan finds EICAR in each of these mails).
func TestMailParts(t *testing.T) {
	eicar := []byte(EICAR)
	body := "some text, then the marker ABCDEFGHIJ, then more"
	dir := t.TempDir()
	hdb := writeFile(t, dir, "t.hdb", fmt.Sprintf("%s:%d:Test.Part.Hash\n", md5Hex("hashed part"), len("hashed part")))
	ndb := writeFile(t, dir, "t.ndb", "Test.Part.Body:0:0:4142434445464748494a\n"+
		"Test.Raw.Header:0:*:"+hex.EncodeToString([]byte("Subject: hello"))+"\n")
	e := mustLoad(t, hdb, ndb)
	qp := "=58=35O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STAND=\r\nARD-ANTIVIRUS-TEST-FILE!$H+H*"
	rfc822 := eml(`Content-Type: multipart/mixed; boundary="outer"`, multipart("outer",
		mailPart("Content-Type: text/plain", "Forwarded."),
		mailPart("Content-Type: message/rfc822", eml("Content-Type: multipart/alternative; boundary=inner",
			multipart("inner", mailPart("Content-Type: text/plain", "hi"),
				mailPart(`Content-Type: multipart/related; boundary="deeper"`, multipart("deeper", eicarPart)))))))

	tests := []struct {
		name string
		data string
		want string
	}{
		{"EICAR in a base64 attachment", attached(eicar), EICARSignature},
		{"EICAR, LF line ends", strings.ReplaceAll(attached(eicar), "\r\n", "\n"), EICARSignature},
		{"EICAR quoted-printable", eml("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable", qp), EICARSignature},
		{"EICAR as the base64 body", eml("Content-Type: application/x-msdos-program\r\nContent-Transfer-Encoding: base64", b64(eicar)), EICARSignature},
		{"EICAR in multiparts and a message/rfc822", rfc822, EICARSignature},
		{"EICAR in a base64 message/rfc822", eml("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64",
			b64([]byte(attached(eicar)))), EICARSignature},
		{"EICAR in a multipart/digest", eml("Content-Type: multipart/digest; boundary=d", multipart("d",
			mailPart("Content-Description: forwarded", mailPart("Content-Type: multipart/mixed; boundary=z", multipart("z", eicarPart))))), EICARSignature},
		{"EICAR in a zip attachment", attached(zipOf(t, zip.Deflate, member{"eicar.com", eicar})), EICARSignature},
		{"EICAR in a gzip in a zip attachment", attached(zipOf(t, zip.Store, member{"e.gz", gzipOf(t, eicar)})), EICARSignature},
		{"EICAR in a mail in a zip", string(zipOf(t, zip.Deflate, member{"m.eml", []byte(attached(eicar))})), EICARSignature},
		{"hash signature of an attachment", attached([]byte("hashed part")), "Test.Part.Hash"},
		{"body signature at offset 0 of an attachment", attached([]byte(body[27:])), "Test.Part.Body"},
		{"body signature of the raw mail", "Subject: hello\r\n" + mailPart("Content-Type: text/plain", body), "Test.Raw.Header"},
		{"mbox, EICAR in the second message", "From a@example.org Mon Jan  1 00:00:00 2024\n" +
			strings.ReplaceAll(eml("Content-Type: text/plain", "From the start.\n>From here.\n"), "\r\n", "\n") +
			"\nFrom b@example.org Mon Jan  1 00:00:01 2024\n" + strings.ReplaceAll(attached(eicar), "\r\n", "\n"), EICARSignature},
		{"MHTML, typed by its head", "MIME-Version: 1.0\r\n" + mailPart("Content-Type: multipart/mixed; boundary=m",
			multipart("m", eicarPart)), EICARSignature},
		{"typed by its head past 1,024 bytes", "X-Junk: j\r\nFrom: a\r\nX-Pad: " + strings.Repeat("j", 1500) + "\r\n" +
			mailPart("Content-Type: multipart/mixed; boundary=m", multipart("m", eicarPart)), EICARSignature},

		// Lenient, as libclamav and mail readers are.
		{"base64 with junk", eml("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64",
			"!!"+strings.Join(strings.SplitAfter(base64.StdEncoding.EncodeToString(eicar), "A"), " *")), EICARSignature},
		{"base64 cut short", eml("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64",
			b64(append(eicar, "\r\n"...))[:93]), EICARSignature},
		{"no close delimiter", strings.TrimSuffix(attached(eicar), "--=-b1--\r\n"), EICARSignature},
		{"boundary among bad parameters", eml(`Content-Type: multipart/mixed; boundary="x"; boundary="y"; a`, multipart("y", eicarPart)), EICARSignature},
		{"boundary on a line not indented", eml("Content-Type: multipart/mixed;\r\nboundary=\"x\"", multipart("x", eicarPart)), EICARSignature},
		{"header after a line ending in ;", eml("Content-Type: application/octet-stream;\r\nContent-Transfer-Encoding: base64", b64(eicar)), EICARSignature},
		{"blank lines before a part's header", eml("Content-Type: multipart/mixed; boundary=x", multipart("x", "\r\n\r\n"+eicarPart)), EICARSignature},
		{"delimiter in another case, one dash more", eml("Content-Type: multipart/mixed; boundary=AbC", "---abc\r\n"+eicarPart), EICARSignature},
		{"long preamble line", eml("Content-Type: multipart/mixed; boundary=x", strings.Repeat("p", 10000)+"\r\n"+multipart("x", eicarPart)), EICARSignature},
		{"long header line", eml("X-Long: "+strings.Repeat("h", 10000)+"\r\nContent-Type: multipart/mixed; boundary=x", multipart("x", eicarPart)), EICARSignature},
		{"misspelt encoding", eml("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-base64", b64(eicar)), EICARSignature},

		{"clean mail", attached([]byte("MZ but harmless")), ""},
		{"clean mbox", "From a Mon Jan  1 00:00:00 2024\n" + eml("Content-Type: text/plain", "hi\n") + "\nFrom b\n\n", ""},
		{"EICAR with trailing bytes is not EICAR", attached(append(eicar, "junk"...)), ""},
		{"text that is no mail is not decoded", "notes\n\n" + b64(eicar), ""},
		{"a part past the close delimiter is epilogue", eml("Content-Type: multipart/mixed; boundary=x",
			"--x--\r\n"+eicarPart), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanFileBytes(t, e, []byte(tt.data)); got != tt.want {
				t.Errorf("found %q, want %q", got, tt.want)
			}
		})
	}
}

// What libclamav types as mail: its mail magics, and its mail and MHTML
// file type signatures in a file no other magic types.
func TestIsMail(t *testing.T) {
	for _, m := range mailMagics {
		if !typedByMagic([]byte(m)) {
			t.Errorf("mail magic %q is not among magics", m)
		}
	}
	tests := []struct {
		head string
		want bool
	}{
		{"Received: from x\n", true},
		{"From a@b Mon Jan 1\n", true},
		{"X-Mozilla-Status: 0001\nFrom: a\nMIME-Version: 1.0\n", true},
		{"x\nmessage-Id: <a>\nX: y\ncontent-Type: text/plain\n", true},
		{"mime-version: 1.0\ncontent-type: text/plain\n", true},
		{"x\nMessage-ID: <a>\nContent-Type: text/plain\n", false}, // [Mm]essage-[Ii]d only
		{"MZ\nFrom: a\nMIME-Version: 1.0\n", false},
		{"hello\nFrom: a\n" + strings.Repeat(" ", 1100) + "\nMIME-Version: 1.0\n", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isMail([]byte(tt.head)); got != tt.want {
			t.Errorf("isMail(%.40q) = %v, want %v", tt.head, got, tt.want)
		}
	}
}

// The bounds of unpacking hold in mail as in archives: each multipart and
// message/rfc822 is a level, each leaf part a member, each byte decoded
// or read in place counts.
func TestMailBounds(t *testing.T) {
	e := mustLoad(t)
	deep := func(n int) string {
		return "Return-Path: <a@example.org>\r\n" + nestMultiparts(n, eicarPart)
	}
	// The mail is one level, as an archive is, and its multiparts each
	// one more.
	if got := scanFileBytes(t, e, []byte(deep(maxArchiveDepth-1))); got != EICARSignature {
		t.Errorf("EICAR %d multiparts deep: found %q", maxArchiveDepth-1, got)
	}
	if got := scanFileBytes(t, e, []byte(deep(maxArchiveDepth))); got != "" {
		t.Errorf("EICAR %d multiparts deep: found %q, past the bound", maxArchiveDepth, got)
	}

	many := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = mailPart("Content-Type: text/plain", "x")
		}
		parts[n-1] = eicarPart
		return eml("Content-Type: multipart/mixed; boundary=m", multipart("m", parts...))
	}
	if got := scanFileBytes(t, e, []byte(many(maxArchiveMembers))); got != EICARSignature {
		t.Errorf("EICAR as part %d: found %q", maxArchiveMembers, got)
	}
	if got := scanFileBytes(t, e, []byte(many(maxArchiveMembers+1))); got != "" {
		t.Errorf("EICAR as part %d: found %q, past the bound", maxArchiveMembers+1, got)
	}

	// Bytes, read in place or decoded: a small budget shows both.
	big := strings.Repeat("z", 4096)
	for _, enc := range []string{"8bit", "base64"} {
		data := []byte(eml("Content-Type: multipart/mixed; boundary=m", multipart("m",
			mailPart("Content-Transfer-Encoding: "+enc, map[string]string{"8bit": big, "base64": b64([]byte(big))}[enc]),
			eicarPart)))
		for _, tt := range []struct {
			bytes int64
			want  bool
		}{{4096 + int64(len(EICAR)), true}, {4096, false}} {
			u := &unpacking{bytes: tt.bytes, members: maxArchiveMembers}
			res, err := e.scanFile(t.Context(), strings.NewReader(string(data)), int64(len(data)), "mail", u, 0)
			if err != nil || res.Infected != tt.want {
				t.Errorf("%s part, %d bytes to unpack: infected %v, %v; want %v", enc, tt.bytes, res.Infected, err, tt.want)
			}
		}
	}
}

// Hostile mail costs what its size does, and never panics: endless
// nesting, endless parts, headers without end, boundaries that are not.
func TestMailMalformed(t *testing.T) {
	e := mustLoad(t)
	var open strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&open, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	tests := []struct {
		name string
		data string
	}{
		{"nesting without end", "From: a\r\n" + open.String()},
		{"message/rfc822 without end", "From: a\r\n" + strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 100000)},
		{"base64 message/rfc822 in itself", eml("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64",
			b64([]byte(eml("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64", b64([]byte("x"))))))},
		{"delimiters without end", eml("Content-Type: multipart/mixed; boundary=a", strings.Repeat("--a\r\n", 200000))},
		{"header without end", "From: a\r\nX: " + strings.Repeat("x", 8<<20)},
		{"Content-Type without end", "From: a\r\nContent-Type: multipart/mixed; boundary=" + strings.Repeat("b", 8<<20)},
		{"folded header without end", "From: a\r\nContent-Type: x" + strings.Repeat("\r\n y", 1<<20)},
		{"empty boundary", eml(`Content-Type: multipart/mixed; boundary=""`, "--\r\n--\r\n"+eicarPart)},
		{"no boundary", eml("Content-Type: multipart/mixed", "--\r\n"+eicarPart)},
		{"boundary never met", eml("Content-Type: multipart/mixed; boundary=q", eicarPart)},
		{"invalid base64", eml("Content-Transfer-Encoding: base64", "====A===B\x00\xff\r\n=\r\nQ")},
		{"invalid quoted-printable", eml("Content-Transfer-Encoding: quoted-printable", "=\x00=Z=\r=\n=   \r\n=4")},
		{"truncated mid-header", "From: a\r\nContent-Type: multipart/mixed; bou"},
		{"NUL bytes", "From: a\x00\r\nContent-Type: \x00multipart/mixed; boundary=\x00\r\n\r\n--\x00\r\n\x00"},
		{"invalid UTF-8 in parameters", "From: a\r\nContent-Type: multipart/mixed; \xff\xfeboundary=\xc3\r\n\r\n--\xc3\r\n\r\nx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			start := time.Now()
			u := newUnpacking(ctx)
			if _, err := e.scanFile(ctx, strings.NewReader(tt.data), int64(len(tt.data)), "mail", u, 0); err != nil {
				t.Errorf("scan: %v", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}

// Base64 and quoted-printable decode as leniently as libclamav decodes
// them, through reads of any size.
func TestMailDecoders(t *testing.T) {
	unbase64 := func(r io.Reader) io.Reader { return newBase64Reader(r) }
	unqp := func(r io.Reader) io.Reader { return qpReader{bufio.NewReader(r)} }
	tests := []struct {
		dec     func(io.Reader) io.Reader
		in, out string
	}{
		{unbase64, "aGVsbG8=", "hello"},
		{unbase64, "aGVs\r\nbG8", "hello"},
		{unbase64, "a G*V!sb-G8=", "hello"},
		{unbase64, "aGk=aGk=", "hihi"},
		{unbase64, "aGVsbG8gd29ybGQ", "hello world"},
		{unbase64, "aGVsbG8gd29ybGQx", "hello world1"},
		{unbase64, "aGVsbG8gd29ybGQxM", "hello world1"}, // a lone sextet makes no byte
		{unbase64, "", ""},
		{unbase64, "====", ""},
		{unqp, "a=3Db", "a=b"},
		{unqp, "a=3db", "a=b"},
		{unqp, "soft=\r\nbreak", "softbreak"},
		{unqp, "soft= \t\nbreak", "softbreak"},
		{unqp, "a=zz", "a=zz"},
		{unqp, "\x00\x01=", "\x00\x01="},
		{unqp, strings.Repeat("l", 10000) + "=41", strings.Repeat("l", 10000) + "A"},
	}
	for _, tt := range tests {
		if err := iotest.TestReader(tt.dec(strings.NewReader(tt.in)), []byte(tt.out)); err != nil {
			t.Errorf("decode %.20q: %v", tt.in, err)
		}
	}
}

// A scan of a mail ends with its context, its parts unscanned.
func TestMailCanceled(t *testing.T) {
	data := attached([]byte(EICAR))
	ctx := &countdownCtx{Context: context.Background()}
	ctx.n.Store(1)
	_, err := mustLoad(t).scanFile(ctx, strings.NewReader(data), int64(len(data)), "mail", newUnpacking(ctx), 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("scan: %v, want context.Canceled", err)
	}
}
