package clamav

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ClamAV's containers (.cvd, .cld, .cud) are a 512-byte text header,
// "ClamAV-VDB:time:version:sigs:flevel:md5:dsig:builder:stime" padded with
// spaces, then a tar archive, gzip'd except in most .cld files. The
// archive holds the database files and a .info file listing each with its
// size and SHA-256, itself signed. We follow libclamav's cvd.c, dsig.c and
// readdb.c (cli_loadinfo, cli_loadign):
//   - .cvd: MD5 of the body equals the header's; the header's dsig signs
//     that MD5; the .info's DSIG signs the .info.
//   - .cld (built by freshclam from diffs): no MD5 or header dsig (the body
//     changed since the header was signed); the .info's DSIG is checked.
//   - .cud (unsigned, from sigtool --unsigned): neither.
//
// In all three the .info's header must agree with the container's, and
// every database member must be listed in the .info with its size and
// SHA-256. verify=false skips only the two RSA checks, for containers built
// locally; the MD5 and the .info digests are always checked.

const cvdHeaderSize = 512

// Limits against hostile containers: real ones hold a few hundred MiB.
const (
	maxContainerData = 2 << 30 // decompressed bytes in all
	maxMembers       = 4096
)

// cvdHeader is a container's header.
type cvdHeader struct {
	Name    string // database name, from the file name: "daily"
	Time    string // build time as written: "06 Nov 2024 09-37 +0000"
	Version int
	Sigs    int
	FLevel  int
	MD5     string // of the body, lower-case hex
	DSig    string // RSA signature of MD5, ClamAV's base-64
	Builder string
	STime   int64 // build time, Unix seconds; 0 in old containers
}

// member is one file of a container.
type member struct {
	Name string
	Data []byte
}

type containerKind uint8

const (
	kindCVD containerKind = iota
	kindCLD
	kindCUD
)

// rsaKey is a public key of ClamAV's signing scheme.
type rsaKey struct{ n, e *big.Int }

// containerKeys are the keys a container is checked with: cvd signs the
// header's MD5 (dsig.c CLI_NSTR/CLI_ESTR), info signs the .info
// (readdb.c INFO_NSTR/INFO_ESTR). Tests swap in keys of their own.
type containerKeys struct{ cvd, info rsaKey }

// clamavKeys are ClamAV's published public keys.
var clamavKeys = containerKeys{
	cvd: mustKey("118640995551645342603070001658453189751527774412027743746599405743243142607464144767361060640655844749760788890022283424922762488917565551002467771109669598189410434699034532232228621591089508178591428456220796841621637175567590476666928698770143328137383952820383197532047771780196576957695822641224262693037",
		"100001027"),
	info: mustKey("11088894983048545473659556106627194923928941791795047620591658697413581043322715912172496806525381055880964520618400224333320534660299233983755341740679502866829909679955734391392668378361221524205396631090105151641270857277080310734320951653700508941717419168723942507890702904702707587451621691050754307850383399865346487203798464178537392211402786481359824461197231102895415093770394216666324484593935762408468516826633192140826667923494822045805347809932848454845886971706424360558667862775876072059437703365380209101697738577515476935085469455279994113145977994084618328482151013142393373316337519977244732747977",
		"100002049"),
}

func mustKey(n, e string) rsaKey {
	k := rsaKey{new(big.Int), new(big.Int)}
	if _, ok := k.n.SetString(n, 10); !ok {
		panic("bad modulus")
	}
	if _, ok := k.e.SetString(e, 10); !ok {
		panic("bad exponent")
	}
	return k
}

// readContainer reads a .cvd, .cld or .cud file and checks it; verify=false
// skips the RSA signature checks (for locally built containers). It returns
// the database members, the .info excluded, in archive order. Every error
// names the file.
func readContainer(path string, verify bool) (cvdHeader, []member, error) {
	return readContainerWith(path, verify, clamavKeys)
}

func readContainerWith(path string, verify bool, keys containerKeys) (cvdHeader, []member, error) {
	h, ms, err := readContainerKeys(path, verify, keys)
	if err != nil {
		return h, nil, fmt.Errorf("read container %s: %w", path, err)
	}
	return h, ms, nil
}

func readContainerKeys(path string, verify bool, keys containerKeys) (cvdHeader, []member, error) {
	var kind containerKind
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".cvd":
		kind = kindCVD
	case ".cld":
		kind = kindCLD
	case ".cud":
		kind = kindCUD
	default:
		return cvdHeader{}, nil, fmt.Errorf("not a container (want .cvd, .cld or .cud)")
	}
	f, err := os.Open(path)
	if err != nil {
		return cvdHeader{}, nil, err
	}
	defer f.Close()

	var raw [cvdHeaderSize]byte
	if n, err := io.ReadFull(f, raw[:]); err != nil {
		return cvdHeader{}, nil, fmt.Errorf("header: %d of %d bytes", n, cvdHeaderSize)
	}
	h, err := parseCVDHeader(raw[:])
	if err != nil {
		return h, nil, err
	}
	h.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))

	// Check before decompressing: untrusted bytes never reach gzip or tar
	// when the container is signed.
	if kind == kindCVD {
		sum := md5.New()
		if _, err := io.Copy(sum, f); err != nil {
			return h, nil, fmt.Errorf("read body: %w", err)
		}
		got := hex.EncodeToString(sum.Sum(nil))
		if got != h.MD5 {
			return h, nil, fmt.Errorf("body MD5 is %s, header says %s: corrupt or tampered", got, clip(h.MD5))
		}
		if verify {
			if err := verifyMD5Sig(got, h.DSig, keys.cvd); err != nil {
				return h, nil, fmt.Errorf("header signature: %w", err)
			}
		}
		if _, err := f.Seek(cvdHeaderSize, io.SeekStart); err != nil {
			return h, nil, err
		}
	}

	ms, err := readBody(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		return h, nil, err
	}
	ms, err = checkInfo(h, ms, verify && kind != kindCUD, keys.info)
	return h, ms, err
}

// parseCVDHeader parses the 512-byte header as cl_cvdparse does, with
// numbers checked rather than atoi'd.
func parseCVDHeader(raw []byte) (cvdHeader, error) {
	var h cvdHeader
	s := string(raw)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, " \x00")
	if !strings.HasPrefix(s, "ClamAV-VDB:") {
		return h, errors.New("header: not a ClamAV container (no ClamAV-VDB: magic)")
	}
	f := strings.Split(s, ":")
	if len(f) < 8 {
		return h, fmt.Errorf("header: %d fields, want at least 8", len(f))
	}
	names := []string{"", "build time", "version", "signature count", "functionality level", "MD5", "digital signature", "builder"}
	for i := 1; i < 8; i++ {
		if f[i] == "" {
			return h, fmt.Errorf("header: empty %s", names[i])
		}
	}
	h.Time, h.MD5, h.DSig, h.Builder = f[1], f[5], f[6], f[7]
	for i, dst := range []*int{2: &h.Version, 3: &h.Sigs, 4: &h.FLevel} {
		if dst == nil {
			continue
		}
		n, err := strconv.ParseUint(f[i], 10, 31)
		if err != nil {
			return h, fmt.Errorf("header: %s %q is not a number", names[i], clip(f[i]))
		}
		*dst = int(n)
	}
	if len(f) > 8 && f[8] != "" {
		n, err := strconv.ParseUint(f[8], 10, 63)
		if err != nil {
			return h, fmt.Errorf("header: build time in seconds %q is not a number", clip(f[8]))
		}
		h.STime = int64(n)
	}
	return h, nil
}

// readBody unpacks the tar archive, gzip'd unless it starts with the
// "COPYING" member as cli_tgzload tells them apart.
func readBody(r *bufio.Reader) ([]member, error) {
	var src io.Reader = r
	if head, _ := r.Peek(7); string(head) != "COPYING" {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	tr := tar.NewReader(src)
	var (
		ms    []member
		total int64
	)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if strings.ContainsRune(hdr.Name, '/') || hdr.Name == "" {
			return nil, fmt.Errorf("body: member name %q: paths are not allowed in a container", clip(hdr.Name))
		}
		if hdr.Typeflag != tar.TypeReg { // the reader reads the old '\x00' as TypeReg
			return nil, fmt.Errorf("body: member %s: type %q, want a regular file", clip(hdr.Name), hdr.Typeflag)
		}
		if len(ms) == maxMembers {
			return nil, fmt.Errorf("body: more than %d members", maxMembers)
		}
		total += hdr.Size
		if hdr.Size < 0 || total > maxContainerData {
			return nil, fmt.Errorf("body: members larger than %d bytes in all", int64(maxContainerData))
		}
		// Grow with the data read, not the size claimed: a lying header
		// must not cost memory.
		var buf bytes.Buffer
		buf.Grow(int(min(hdr.Size, 1<<20)))
		if _, err := io.CopyN(&buf, tr, hdr.Size); err != nil {
			return nil, fmt.Errorf("body: member %s: %w", clip(hdr.Name), err)
		}
		ms = append(ms, member{Name: hdr.Name, Data: buf.Bytes()})
	}
	return ms, nil
}

// infoEntry is one file listed in a .info.
type infoEntry struct {
	size   int64
	sha256 [sha256.Size]byte
}

// checkInfo checks the members against the container's .info and returns
// the verified ones, the .info left out. signed requires a valid DSIG.
func checkInfo(h cvdHeader, ms []member, signed bool, key rsaKey) ([]member, error) {
	idx := -1
	for i, m := range ms {
		if strings.HasSuffix(strings.ToLower(m.Name), ".info") {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, errors.New("no .info member: corrupt container")
	}
	info := ms[idx]
	list, err := parseInfo(h, info, signed, key)
	if err != nil {
		return nil, err
	}
	out := make([]member, 0, len(ms)-1)
	for i, m := range ms {
		if i == idx {
			continue
		}
		e, ok := list[m.Name]
		if !ok {
			if isDatabaseName(m.Name) {
				return nil, fmt.Errorf("member %s is not listed in %s", m.Name, info.Name)
			}
			continue // e.g. COPYING: never loaded, so never checked
		}
		if int64(len(m.Data)) != e.size {
			return nil, fmt.Errorf("member %s: %d bytes, %s says %d: corrupt or tampered", m.Name, len(m.Data), info.Name, e.size)
		}
		if sum := sha256.Sum256(m.Data); subtle.ConstantTimeCompare(sum[:], e.sha256[:]) != 1 {
			return nil, fmt.Errorf("member %s: SHA-256 differs from %s: corrupt or tampered", m.Name, info.Name)
		}
		out = append(out, m)
	}
	return out, nil
}

// parseInfo reads a .info: a ClamAV-VDB header line that must agree with
// the container's, "name:size:sha256" lines, then "DSIG:" signing the
// SHA-256 of every byte before it.
func parseInfo(h cvdHeader, info member, signed bool, key rsaKey) (map[string]infoEntry, error) {
	list := map[string]infoEntry{}
	data := info.Data
	sawHeader, sawSig := false, false
	for off, line := 0, 1; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		text := strings.TrimRight(string(data[off:next]), "\r\n")
		loc := fmt.Sprintf("%s:%d", info.Name, line)
		switch {
		case strings.HasPrefix(text, "DSIG:"):
			if signed {
				digest := sha256.Sum256(data[:off])
				if err := verifyPSS(digest[:], text[len("DSIG:"):], key); err != nil {
					return nil, fmt.Errorf("%s: signature: %w", loc, err)
				}
			}
			sawSig = true
		case strings.HasPrefix(text, "ClamAV-VDB:"):
			if sawHeader {
				return nil, fmt.Errorf("%s: a second ClamAV-VDB header", loc)
			}
			ih, err := parseCVDHeader([]byte(text))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", loc, err)
			}
			if ih.Version != h.Version || ih.Sigs != h.Sigs || ih.FLevel != h.FLevel || ih.STime != h.STime {
				return nil, fmt.Errorf("%s: header (version %d, %d signatures, flevel %d, time %d) differs from the container's (version %d, %d signatures, flevel %d, time %d): corrupt header",
					loc, ih.Version, ih.Sigs, ih.FLevel, ih.STime, h.Version, h.Sigs, h.FLevel, h.STime)
			}
			sawHeader = true
		case text == "":
		default:
			if !sawHeader {
				return nil, fmt.Errorf("%s: entry before the ClamAV-VDB header", loc)
			}
			f := strings.Split(text, ":")
			if len(f) != 3 {
				return nil, fmt.Errorf("%s: %d fields, want 3 (name:size:sha256)", loc, len(f))
			}
			size, err := strconv.ParseUint(f[1], 10, 62)
			if err != nil {
				return nil, fmt.Errorf("%s: size %q is not a number", loc, clip(f[1]))
			}
			var e infoEntry
			if len(f[2]) != 2*sha256.Size {
				return nil, fmt.Errorf("%s: SHA-256 has %d hex digits, want 64", loc, len(f[2]))
			}
			if _, err := hex.Decode(e.sha256[:], []byte(f[2])); err != nil {
				return nil, fmt.Errorf("%s: SHA-256: %w", loc, err)
			}
			e.size = int64(size)
			list[f[0]] = e
		}
		if sawSig {
			break // what follows the signature is not covered by it
		}
		off = next
	}
	if !sawHeader {
		return nil, fmt.Errorf("%s: no ClamAV-VDB header", info.Name)
	}
	if signed && !sawSig {
		return nil, fmt.Errorf("%s: no DSIG line: unsigned", info.Name)
	}
	return list, nil
}

// dbExtensions are the member extensions libclamav loads from a container
// (CLI_DBEXT and the ignore lists): such a member must be in the .info.
var dbExtensions = map[string]bool{
	".db": true, ".hdb": true, ".hdu": true, ".fp": true, ".mdb": true, ".mdu": true,
	".hsb": true, ".hsu": true, ".sfp": true, ".msb": true, ".msu": true, ".ndb": true,
	".ndu": true, ".ldb": true, ".ldu": true, ".sdb": true, ".zmd": true, ".rmd": true,
	".pdb": true, ".gdb": true, ".wdb": true, ".cbc": true, ".ftm": true, ".cfg": true,
	".cdb": true, ".cat": true, ".crb": true, ".idb": true, ".ioc": true, ".yar": true,
	".yara": true, ".pwdb": true, ".ign": true, ".ign2": true, ".imp": true,
}

func isDatabaseName(name string) bool {
	return dbExtensions[strings.ToLower(filepath.Ext(name))]
}

// sigAlphabet is dsig.c's base-64 alphabet; digits are little-endian,
// six bits each.
const sigAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"

// decodeSig is cli_decodesig: the signature as a number, raised to e mod n,
// and its low plen bytes, big-endian.
func decodeSig(sig string, plen int, key rsaKey) ([]byte, error) {
	if sig == "" {
		return nil, errors.New("empty")
	}
	c := new(big.Int)
	d := new(big.Int)
	for i := len(sig) - 1; i >= 0; i-- {
		v := strings.IndexByte(sigAlphabet, sig[i])
		if v < 0 {
			return nil, fmt.Errorf("character %q at %d is not in ClamAV's alphabet", sig[i], i+1)
		}
		c.Lsh(c, 6)
		c.Or(c, d.SetInt64(int64(v)))
	}
	p := new(big.Int).Exp(c, key.e, key.n)
	// Only the low plen bytes count, as in dsig.c: higher ones are dropped.
	b := p.Bytes()
	out := make([]byte, plen)
	if len(b) > plen {
		b = b[len(b)-plen:]
	}
	copy(out[plen-len(b):], b)
	return out, nil
}

// encodeSig is decodeSig's inverse for the number s, for building test
// containers.
func encodeSig(s *big.Int) string {
	var b strings.Builder
	v := new(big.Int).Set(s)
	m := new(big.Int)
	sixtyFour := big.NewInt(64)
	for {
		v.DivMod(v, sixtyFour, m)
		b.WriteByte(sigAlphabet[m.Int64()])
		if v.Sign() == 0 {
			return b.String()
		}
	}
}

// verifyMD5Sig is cli_versig: the signature decodes to the 16 MD5 bytes.
func verifyMD5Sig(md5hex, sig string, key rsaKey) error {
	if len(md5hex) != 2*md5.Size {
		return fmt.Errorf("MD5 %q is not 32 hex digits", clip(md5hex))
	}
	plain, err := decodeSig(sig, md5.Size, key)
	if err != nil {
		return err
	}
	if hex.EncodeToString(plain) != md5hex {
		return errors.New("does not match ClamAV's key: tampered or not signed by ClamAV")
	}
	return nil
}

// PSS parameters of cli_versig2: SHA-256, 32-byte salt, 2048-bit key.
const (
	pssHashLen = sha256.Size
	pssSaltLen = 32
	pssPadLen  = 2048 / 8
	pssBlkLen  = pssPadLen - pssHashLen - 1
)

// verifyPSS is cli_versig2, an EMSA-PSS check (MGF1 and hash SHA-256):
// decoded = maskedDB || H || 0xbc, DB = PS || 0x01 || salt,
// H = SHA-256(8 zero bytes || digest || salt).
func verifyPSS(digest []byte, sig string, key rsaKey) error {
	em, err := decodeSig(sig, pssPadLen, key)
	if err != nil {
		return err
	}
	bad := errors.New("does not match ClamAV's key: tampered or not signed by ClamAV")
	if em[pssPadLen-1] != 0xbc {
		return bad
	}
	hash := em[pssBlkLen : pssBlkLen+pssHashLen]
	db := make([]byte, pssBlkLen)
	var ctr [4]byte
	for i, off := 0, 0; off < pssBlkLen; i, off = i+1, off+pssHashLen {
		ctr[2], ctr[3] = byte(i>>8), byte(i)
		h := sha256.New()
		h.Write(hash)
		h.Write(ctr[:])
		copy(db[off:], h.Sum(nil))
	}
	for i := range db {
		db[i] ^= em[i]
	}
	db[0] &= 0x7f
	// As dsig.c: the salt follows the first 0x01 and fills the block.
	one := bytes.IndexByte(db, 0x01)
	if one < 0 || pssBlkLen-(one+1) != pssSaltLen {
		return bad
	}
	salt := db[one+1:]
	h := sha256.New()
	h.Write(make([]byte, 8))
	h.Write(digest)
	h.Write(salt)
	if subtle.ConstantTimeCompare(h.Sum(nil), hash) != 1 {
		return bad
	}
	return nil
}

// ignoreList holds the signature names of .ign2 (and legacy .ign) files:
// signatures dropped at load, as ClamAV drops them.
type ignoreList struct {
	// names maps a signature name to the MD5s of the signature lines it
	// applies to; an empty, non-nil slice means every line of that name.
	names map[string][][md5.Size]byte
}

// parseIgnore adds the entries of one ignore file to l. Lines are
// "Name", "Name:md5-of-the-signature-line" or the legacy .ign form
// "db:line:Name"; # starts a comment. Errors name file:line.
func (l *ignoreList) parse(file string, r io.Reader) error {
	if l.names == nil {
		l.names = map[string][][md5.Size]byte{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || text[0] == '#' {
			continue
		}
		f := strings.Split(text, ":")
		var name, sum string
		switch len(f) {
		case 1:
			name = f[0]
		case 2:
			name, sum = f[0], f[1]
		case 3:
			name = f[2]
		default:
			return fmt.Errorf("%s:%d: %d fields, want Name, Name:MD5 or db:line:Name", file, line, len(f))
		}
		if name == "" {
			return fmt.Errorf("%s:%d: empty signature name", file, line)
		}
		cur, seen := l.names[name]
		if sum == "" {
			l.names[name] = [][md5.Size]byte{} // every line: drops any MD5s
			continue
		}
		var d [md5.Size]byte
		if len(sum) != 2*md5.Size {
			return fmt.Errorf("%s:%d: MD5 has %d hex digits, want 32", file, line, len(sum))
		}
		if _, err := hex.Decode(d[:], []byte(sum)); err != nil {
			return fmt.Errorf("%s:%d: MD5: %w", file, line, err)
		}
		if seen && len(cur) == 0 {
			continue // already ignored whatever the line
		}
		l.names[name] = append(cur, d)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", file, line+1, err)
	}
	return nil
}

// drops reports whether the signature called name, read from the database
// line text (without its line end), is ignored. Names match exactly.
func (l *ignoreList) drops(name, text string) bool {
	if l == nil {
		return false
	}
	sums, ok := l.names[name]
	if !ok {
		return false
	}
	if len(sums) == 0 {
		return true
	}
	d := md5.Sum([]byte(text))
	for _, s := range sums {
		if s == d {
			return true
		}
	}
	return false
}

// len is the number of names with an entry.
func (l *ignoreList) len() int {
	if l == nil {
		return 0
	}
	return len(l.names)
}

// filter blanks the lines of a database whose signature, named by field
// nameField of the colon-separated line, is ignored; line numbers in
// later errors stay right. It returns the data and how many it dropped.
func (l *ignoreList) filter(data []byte, nameField int) ([]byte, int) {
	dropped := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off
		}
		line := bytes.TrimRight(data[off:end], "\r")
		if f := bytes.SplitN(line, []byte(":"), nameField+2); len(f) > nameField && l.drops(string(f[nameField]), string(line)) {
			for i := off; i < off+len(line); i++ {
				data[i] = ' '
			}
			dropped++
		}
		off = end + 1
	}
	return data, dropped
}
