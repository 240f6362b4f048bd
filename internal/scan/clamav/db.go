package clamav

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// FunctionalityLevel is the ClamAV functionality level (FLEVEL) whose
// signature semantics we follow, ClamAV 1.4.6's (`clamconf`: "Engine
// flevel: 216"): signatures whose MinFL/MaxFL range excludes it are
// skipped, as ClamAV skips them. It is part of the engine's version.
const FunctionalityLevel = 216

// maxLine bounds one database line; ClamAV's own limit is far lower.
const maxLine = 1 << 20

// kind is a hash algorithm; a signature's kind follows from its length.
type kind uint8

const (
	kindMD5 kind = iota
	kindSHA1
	kindSHA256
	numKinds
)

var kindNames = [numKinds]string{"md5", "sha1", "sha256"}

func (k kind) String() string { return kindNames[k] }

// kinds is a set of hash kinds.
type kinds uint8

func (s kinds) has(k kind) bool { return s&(1<<k) != 0 }

// anySize marks a signature that matches files of every size (`*`).
const anySize = -1

// sig is one parsed hash signature line.
type sig struct {
	kind kind
	hash []byte // raw digest
	size int64  // anySize or > 0
	name string
}

// parseHashDB reads a hash database in ClamAV's format,
// HashString:FileSize:MalwareName[:MinFL[:MaxFL]], calling add for each
// signature within our functionality level. It returns how many signatures
// it left out for their level. Every error names file:line.
func parseHashDB(file string, r io.Reader, add func(sig)) (excluded int, err error) {
	return parseHashes(file, r, add, false)
}

func parseHashes(file string, r io.Reader, add func(sig), sizeFirst bool) (excluded int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" || text[0] == '#' || strings.TrimSpace(text) == "" {
			continue
		}
		s, ok, err := parseHashLine(text, sizeFirst)
		if err != nil {
			return excluded, fmt.Errorf("%s:%d: %w", file, line, err)
		}
		if !ok {
			excluded++
			continue
		}
		add(s)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return excluded, fmt.Errorf("%s:%d: line longer than %d bytes", file, line+1, maxLine)
		}
		return excluded, fmt.Errorf("%s:%d: read: %w", file, line+1, err)
	}
	return excluded, nil
}

// parseSectionDB reads a PE section hash database (.mdb/.msb),
// SectionSize:HashString:MalwareName[:MinFL[:MaxFL]]: a hash line with its
// first two fields swapped.
func parseSectionDB(file string, r io.Reader, add func(sig)) (excluded int, err error) {
	return parseHashes(file, r, add, true)
}

// parseHashLine parses one signature line; ok is false when the signature
// is valid but outside our functionality level.
func parseHashLine(text string, sizeFirst bool) (s sig, ok bool, err error) {
	f := strings.Split(text, ":")
	if len(f) < 3 || len(f) > 5 {
		if sizeFirst {
			return s, false, fmt.Errorf("%d fields, want 3 to 5 (size:hash:name[:minfl[:maxfl]])", len(f))
		}
		return s, false, fmt.Errorf("%d fields, want 3 to 5 (hash:size:name[:minfl[:maxfl]])", len(f))
	}
	if sizeFirst {
		f[0], f[1] = f[1], f[0]
	}
	h := f[0]
	for i := 0; i < len(h); i++ {
		if !isHex(h[i]) {
			return s, false, fmt.Errorf("hash has non-hex character %q at column %d", h[i], i+1)
		}
	}
	switch len(h) {
	case 32:
		s.kind = kindMD5
	case 40:
		s.kind = kindSHA1
	case 64:
		s.kind = kindSHA256
	default:
		return s, false, fmt.Errorf("hash has %d hex digits, want 32, 40 or 64", len(h))
	}
	if s.hash, err = hex.DecodeString(h); err != nil {
		return s, false, fmt.Errorf("hash: %w", err)
	}
	// The size is strtoul's, white space and '+' allowed; the levels are
	// atoi's, unchecked: "x" or "" is 0, so an empty maximum excludes the
	// line. This is cli_loadhash.
	if f[1] == "*" {
		s.size = anySize
	} else {
		n, rest := cStrtoul(f[1])
		if rest != "" || n == 0 || n > math.MaxInt64 { // "-1" is 2^64-1
			return s, false, fmt.Errorf("file size %q is not a positive number or *", clip(f[1]))
		}
		s.size = int64(n)
	}
	if f[2] == "" {
		return s, false, errors.New("empty malware name")
	}
	s.name = f[2]
	if len(f) > 3 && uint32(cAtoi(f[3])) > FunctionalityLevel {
		return s, false, nil
	}
	if len(f) > 4 && uint32(cAtoi(f[4])) < FunctionalityLevel {
		return s, false, nil
	}
	return s, true, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// clip keeps hostile input from flooding an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// digest is a raw hash of one kind, used as a map key.
type digest interface {
	[16]byte | [20]byte | [32]byte
}

type sizedKey[H digest] struct {
	size int64
	hash H
}

// table holds the signatures of one hash kind. sizes lets Scan decide from
// a file's size alone, without reading it, that no signature can match.
type table[H digest] struct {
	sized map[sizedKey[H]]string
	any   map[H]string
	sizes map[int64]struct{}
}

func (t *table[H]) add(s sig) {
	h := H(s.hash)
	if s.size == anySize {
		if t.any == nil {
			t.any = make(map[H]string)
		}
		if _, dup := t.any[h]; !dup {
			t.any[h] = s.name
		}
		return
	}
	if t.sized == nil {
		t.sized = make(map[sizedKey[H]]string)
		t.sizes = make(map[int64]struct{})
	}
	k := sizedKey[H]{s.size, h}
	if _, dup := t.sized[k]; !dup {
		t.sized[k] = s.name
	}
	t.sizes[s.size] = struct{}{}
}

func (t *table[H]) wants(size int64) bool {
	if len(t.any) > 0 {
		return true
	}
	_, ok := t.sizes[size]
	return ok
}

func (t *table[H]) lookup(sum []byte, size int64) (string, bool) {
	h := H(sum)
	if name, ok := t.sized[sizedKey[H]{size, h}]; ok {
		return name, true
	}
	name, ok := t.any[h]
	return name, ok
}

func (t *table[H]) len() int { return len(t.sized) + len(t.any) }

// set is a block list or an allow list, all kinds.
type set struct {
	md5    table[[16]byte]
	sha1   table[[20]byte]
	sha256 table[[32]byte]
}

func (s *set) add(g sig) {
	switch g.kind {
	case kindMD5:
		s.md5.add(g)
	case kindSHA1:
		s.sha1.add(g)
	case kindSHA256:
		s.sha256.add(g)
	}
}

// kinds reports which hashes a file of this size needs for a lookup.
func (s *set) kinds(size int64) kinds {
	var k kinds
	if s.md5.wants(size) {
		k |= 1 << kindMD5
	}
	if s.sha1.wants(size) {
		k |= 1 << kindSHA1
	}
	if s.sha256.wants(size) {
		k |= 1 << kindSHA256
	}
	return k
}

// lookup checks the computed sums (nil where not computed), MD5 first.
func (s *set) lookup(sums *[numKinds][]byte, size int64) (string, bool) {
	if sums[kindMD5] != nil {
		if name, ok := s.md5.lookup(sums[kindMD5], size); ok {
			return name, true
		}
	}
	if sums[kindSHA1] != nil {
		if name, ok := s.sha1.lookup(sums[kindSHA1], size); ok {
			return name, true
		}
	}
	if sums[kindSHA256] != nil {
		if name, ok := s.sha256.lookup(sums[kindSHA256], size); ok {
			return name, true
		}
	}
	return "", false
}

func (s *set) counts() [numKinds]int {
	return [numKinds]int{s.md5.len(), s.sha1.len(), s.sha256.len()}
}

func (s *set) empty() bool {
	c := s.counts()
	return c[kindMD5]+c[kindSHA1]+c[kindSHA256] == 0
}
