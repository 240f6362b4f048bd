package clamav

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// This file parses ClamAV's hex signature grammar (BodySignatureFormat.md)
// the way libclamav's cli_add_content_match_pattern and cli_ac_addsig do:
// small {n} jumps are inlined as ??, then `*` and the other {..} jumps split
// the signature into parts, and each part may carry [x-y] anchored bytes,
// (B)/(L)/(W) classes and alternatives.

// Limits from libclamav (matcher-ac.h, readdb.c).
const (
	inlineJumpMax = 128 // {n} with 0 < n < 128 becomes n ?? wildcards
	anchorDistMax = 32  // AC_CH_MAXDIST: [x-y] with y <= 32
	altNestMax    = 15  // ACPATT_ALTN_MAXNEST
	altExpandMax  = 4096
)

// mbyte matches one byte b when b&mask == val: mask 0xff is an exact byte,
// 0xf0 or 0x0f a nibble, 0 any byte (??).
type mbyte struct{ val, mask byte }

func (m mbyte) match(b byte) bool { return b&m.mask == m.val }

type elemKind uint8

const (
	elRun   elemKind = iota // a run of mbytes
	elSet                   // one byte in (or, negated, out of) a set: (aa|bb), !(aa|bb)
	elAlt                   // one of several strings: fixed or generic alternatives
	elNoAlt                 // n bytes equal to none of several n-byte strings: !(aabb|ccdd)
	elClass                 // (B), (L) or (W) inside a part, possibly negated
)

// Character classes; their byte tables follow libclamav's matcher-ac.c.
const (
	classB = 'B' // word boundary
	classL = 'L' // line end: LF or CRLF
	classW = 'W' // non-alphanumeric
)

// elem is one step of a part. Most parts are one or a few runs, so the rare
// kinds keep their data behind a pointer: 100,000 signatures stay small.
type elem struct {
	kind  elemKind
	neg   bool
	class byte
	run   []mbyte
	x     *altData
}

type altData struct {
	set    [4]uint64
	alts   [][]mbyte
	widths []int // ascending
}

var (
	widthOne  = []int{1}
	widthLine = []int{1, 2}
)

// widths lists the lengths e may take, ascending; runs use width instead.
func (e *elem) widths() []int {
	switch e.kind {
	case elAlt, elNoAlt:
		return e.x.widths
	case elClass:
		if e.class == classL && !e.neg {
			return widthLine // LF or CRLF
		}
	}
	return widthOne
}

func (e *elem) minWidth() int {
	if e.kind == elRun {
		return len(e.run)
	}
	return e.widths()[0]
}

func (e *elem) maxWidth() int {
	if e.kind == elRun {
		return len(e.run)
	}
	w := e.widths()
	return w[len(w)-1]
}

// lookaround is a zero-width check next to a part: a class at its edge, as
// in `(B)6162` or `6162!(L)`.
type lookaround struct {
	class byte // 0 when absent
	neg   bool
}

// anchored is an [x-y] byte: `aa[x-y]HEXSIG` wants aa between x and y bytes
// before the part, `HEXSIG[x-y]aa` between x and y bytes after it. Like
// libclamav, the byte is outside the match: offsets refer to HEXSIG.
type anchored struct {
	ok       bool
	b        mbyte
	min, max int
}

// part is a run of elements between two jumps (`*`, `{n-m}`, `{n}` >= 128).
type part struct {
	elems          []elem
	minLen, maxLen int
	left, right    lookaround
	chL, chR       anchored
	// The anchor, chosen at compile time: alen exact bytes at offset aoff
	// of run elems[arun]; prefMin/prefMax bound the bytes before it.
	arun, aoff, alen int
	prefMin, prefMax int
}

// gap is the jump between two parts: min to max bytes, max < 0 unbounded.
type gap struct{ min, max int }

// hexPattern is a parsed hex signature.
type hexPattern struct {
	parts []part
	gaps  []gap // len(parts)-1
}

// parseHex parses a hex signature. Errors name the construct at fault.
func parseHex(s string) (*hexPattern, error) {
	if s == "" {
		return nil, errors.New("empty hex signature")
	}
	s, err := inlineJumps(s)
	if err != nil {
		return nil, err
	}
	raw, gaps, err := splitParts(s)
	if err != nil {
		return nil, err
	}
	p := &hexPattern{gaps: gaps}
	for i, r := range raw {
		pt, err := parsePart(r)
		if err != nil {
			if len(raw) > 1 {
				return nil, fmt.Errorf("part %d %q: %w", i+1, clip(r), err)
			}
			return nil, err
		}
		p.parts = append(p.parts, pt)
	}
	return p, nil
}

// inlineJumps replaces leading {n} jumps with n ?? wildcards as libclamav
// does: only while the first remaining '{' is such a jump, so that a later
// {n} after a {n-m} stays a jump (and splits the signature). libclamav
// reads that first jump with sscanf("%c%zu%c"), so { 2} and {+2} are {2}
// there, and only there.
func inlineJumps(s string) (string, error) {
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return s, nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", errors.New("'{' without '}'")
		}
		n, rest := cStrtoul(s[i+1:])
		if len(rest) == len(s[i+1:]) || rest[0] != '}' || n == 0 || n >= inlineJumpMax {
			return s, nil
		}
		s = s[:i] + strings.Repeat("??", int(n)) + rest[1:]
	}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitParts cuts s at top-level `*` and `{..}` jumps.
func splitParts(s string) ([]string, []gap, error) {
	var (
		parts []string
		gaps  []gap
		depth int
		start int
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return nil, nil, fmt.Errorf("')' without '(' at column %d", i+1)
			}
		case '*', '{':
			if depth > 0 {
				return nil, nil, fmt.Errorf("%q inside an alternative at column %d", c, i+1)
			}
			parts = append(parts, s[start:i])
			if c == '*' {
				gaps = append(gaps, gap{0, -1})
				start = i + 1
				continue
			}
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return nil, nil, errors.New("'{' without '}'")
			}
			g, err := parseJump(s[i+1 : i+j])
			if err != nil {
				return nil, nil, err
			}
			gaps = append(gaps, g)
			i += j
			start = i + 1
		}
	}
	if depth != 0 {
		return nil, nil, errors.New("'(' without ')'")
	}
	parts = append(parts, s[start:])
	for i, p := range parts {
		if p == "" {
			return nil, nil, fmt.Errorf("empty part %d (a jump at an end, or two in a row)", i+1)
		}
	}
	return parts, gaps, nil
}

// parseJump reads the inside of {n}, {-n}, {n-} or {n-m} as libclamav
// does: each number passes cli_isnumber and goes through atoi (an empty
// one is 0, {} and {-} are `*`), and cli_strtok splits at runs of '-'
// ({3--5} is {3-5}). A maximum of 0 means no maximum, so {0} and {n-0}
// behave like `*` bounded below. A maximum below the minimum is kept:
// libclamav loads such a jump, which never matches (see never).
func parseJump(s string) (gap, error) {
	bad := fmt.Errorf("jump {%s} is not {n}, {-n}, {n-} or {n-m}", clip(s))
	num := func(t string) (int, error) {
		if !cIsNumber(t) {
			return 0, bad
		}
		n := cAtoi(t)
		if n < 0 {
			return 0, fmt.Errorf("jump {%s}: %q is past 2^31-1", clip(s), clip(t))
		}
		return int(n), nil
	}
	var lo, hi int
	if !strings.Contains(s, "-") {
		n, err := num(s)
		if err != nil {
			return gap{}, err
		}
		lo, hi = n, n
	} else {
		// cli_strtok's fields: runs of '-' are one separator, a leading
		// '-' leaves field 0 empty.
		toks := strings.FieldsFunc(s, func(r rune) bool { return r == '-' })
		first := ""
		if s[0] != '-' {
			first, toks = toks[0], toks[1:]
		}
		if len(toks) > 1 {
			return gap{}, bad
		}
		var err error
		if lo, err = num(first); err != nil {
			return gap{}, err
		}
		if len(toks) == 1 {
			if hi, err = num(toks[0]); err != nil {
				return gap{}, err
			}
		}
	}
	if hi == 0 {
		return gap{lo, -1}, nil
	}
	return gap{lo, hi}, nil
}

// parsePart parses one part: [x-y] anchored bytes first (libclamav allows
// one on each side), then classes and alternatives, then hex pairs.
func parsePart(s string) (part, error) {
	var p part
	for side := 0; side < 2; side++ {
		i := strings.IndexByte(s, '[')
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], ']')
		if j < 0 {
			return p, errors.New("'[' without ']'")
		}
		min, max, err := parseAnchorRange(s[i+1 : i+j])
		if err != nil {
			return p, err
		}
		before, after := s[:i], s[i+j+1:]
		switch {
		case len(before) == 2 && side == 0:
			b, err := parseMByte(before)
			if err != nil {
				return p, err
			}
			p.chL = anchored{true, b, min, max}
			s = after
		case len(after) == 2:
			b, err := parseMByte(after)
			if err != nil {
				return p, err
			}
			p.chR = anchored{true, b, min, max}
			s = before
			side = 2 // the right-hand one ends the part
		default:
			return p, fmt.Errorf("[%s] must have exactly one byte on one side: aa[x-y]HEXSIG or HEXSIG[x-y]aa", s[i+1:i+j])
		}
	}
	if strings.ContainsAny(s, "[]") {
		return p, errors.New("misplaced '[' or ']'")
	}

	for i := 0; i < len(s); {
		c := s[i]
		neg := false
		if c == '!' {
			if i+1 >= len(s) || s[i+1] != '(' {
				return p, fmt.Errorf("'!' not before '(' at column %d", i+1)
			}
			neg = true
			i++
			c = '('
		}
		if c == '(' {
			end := closeParen(s, i)
			if end < 0 {
				return p, errors.New("'(' without ')'")
			}
			inner := s[i+1 : end]
			next := end + 1
			if inner == "" {
				return p, errors.New("empty '()'")
			}
			if inner == "B" || inner == "L" || inner == "W" {
				la := lookaround{inner[0], neg}
				// Where libclamav puts them: last in the part is a right
				// check; first (and not negated) a left check; otherwise
				// the class consumes bytes.
				switch {
				case next == len(s):
					p.right = la
				case i == 0 && !neg:
					p.left = la
				default:
					p.elems = append(p.elems, elem{kind: elClass, class: inner[0], neg: neg})
				}
				i = next
				continue
			}
			e, err := parseAlt(inner, neg)
			if err != nil {
				return p, err
			}
			p.elems = append(p.elems, e)
			i = next
			continue
		}
		if i+2 > len(s) {
			return p, fmt.Errorf("odd number of hex digits at column %d", i+1)
		}
		b, err := parseMByte(s[i : i+2])
		if err != nil {
			return p, fmt.Errorf("column %d: %w", i+1, err)
		}
		if n := len(p.elems); n > 0 && p.elems[n-1].kind == elRun {
			p.elems[n-1].run = append(p.elems[n-1].run, b)
		} else {
			p.elems = append(p.elems, elem{kind: elRun, run: []mbyte{b}})
		}
		i += 2
	}
	if len(p.elems) == 0 {
		return p, errors.New("no bytes to match")
	}
	for i := range p.elems {
		e := &p.elems[i]
		if e.kind == elRun {
			e.run = slices.Clip(e.run)
		}
		p.minLen += e.minWidth()
		p.maxLen += e.maxWidth()
	}
	return p, nil
}

func parseAnchorRange(s string) (int, int, error) {
	bad := fmt.Errorf("anchor range [%s] is not [n] or [n-m] with n <= m <= %d", clip(s), anchorDistMax)
	lo, hi, dash := strings.Cut(s, "-")
	if !dash {
		hi = lo
	}
	if !isDigits(lo) || !isDigits(hi) || len(lo) > 3 || len(hi) > 3 {
		return 0, 0, bad
	}
	min, _ := strconv.Atoi(lo)
	max, _ := strconv.Atoi(hi)
	if min > max || max > anchorDistMax {
		return 0, 0, bad
	}
	return min, max, nil
}

// closeParen returns the index of the ')' closing the '(' at i, or -1.
func closeParen(s string, i int) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseMByte reads `hh`, `??`, `h?` or `?h`.
func parseMByte(s string) (mbyte, error) {
	if len(s) != 2 {
		return mbyte{}, fmt.Errorf("%q is not a hex byte", clip(s))
	}
	var m mbyte
	for k, shift := range [2]uint{4, 0} {
		c := s[k]
		if c == '?' {
			continue
		}
		v, ok := hexVal(c)
		if !ok {
			return mbyte{}, fmt.Errorf("%q is not a hex digit or '?'", c)
		}
		m.val |= v << shift
		m.mask |= 0xf << shift
	}
	return m, nil
}

// parseAlt parses the inside of (..) or !(..). As in libclamav's
// ac_special_altstr: plain hex alternatives of one length are a byte set or
// fixed strings and may be negated; anything else (wildcards, nested
// parentheses, mixed lengths) is a generic alternative that may not be.
//
// A branch may be empty, (45|): the alternative is then optional, a
// generic one of width 0 or more. libclamav refuses an empty first branch
// where the others make a fixed alternative, (|45), and takes an empty
// branch only when it matches forwards from its trie prefix: it finds
// 41424344(45|)464748 in ABCDFGH but not 3132(45|)41424344 in 12ABCD,
// which we find.
func parseAlt(inner string, neg bool) (elem, error) {
	if rest, ok := strings.CutPrefix(inner, "|"); ok && !strings.ContainsAny(inner, "()?") && sameLengths(rest) {
		return elem{}, errors.New("empty first alternative")
	}
	if strings.ContainsAny(inner, "()?") || !sameLengths(inner) {
		if neg {
			return elem{}, errors.New("negation applies only to plain alternatives of one length")
		}
		strs, err := expandAlt(inner, 0)
		if err != nil {
			return elem{}, err
		}
		return genericAlt(strs)
	}
	alts := strings.Split(inner, "|")
	n := len(alts[0]) / 2
	if len(alts[0])%2 != 0 || n == 0 {
		return elem{}, fmt.Errorf("alternative %q is not whole hex bytes", clip(alts[0]))
	}
	x := &altData{widths: []int{n}}
	if n == 1 {
		for _, a := range alts {
			m, err := parseMByte(a)
			if err != nil {
				return elem{}, err
			}
			x.set[m.val>>6] |= 1 << (m.val & 63)
		}
		return elem{kind: elSet, neg: neg, x: x}, nil
	}
	e := elem{kind: elAlt, x: x}
	if neg {
		e.kind = elNoAlt
	}
	for _, a := range alts {
		str, err := parseMBytes(a)
		if err != nil {
			return e, err
		}
		x.alts = append(x.alts, str)
	}
	return e, nil
}

func sameLengths(inner string) bool {
	alts := strings.Split(inner, "|")
	for _, a := range alts[1:] {
		if len(a) != len(alts[0]) {
			return false
		}
	}
	return true
}

func parseMBytes(s string) ([]mbyte, error) {
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("%q has an odd number of hex digits", clip(s))
	}
	out := make([]mbyte, 0, len(s)/2)
	for i := 0; i < len(s); i += 2 {
		m, err := parseMByte(s[i : i+2])
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// expandAlt flattens a generic alternative, nested ones included, into
// the strings it matches (libclamav's ac_special_altexpand).
func expandAlt(s string, depth int) ([]string, error) {
	if depth > altNestMax {
		return nil, fmt.Errorf("alternatives nested deeper than %d", altNestMax)
	}
	var out []string
	for _, branch := range splitTop(s) {
		seqs := []string{""}
		for i := 0; i < len(branch); {
			if branch[i] == '!' {
				return nil, errors.New("negation inside a generic alternative")
			}
			if branch[i] != '(' {
				j := strings.IndexByte(branch[i:], '(')
				if j < 0 {
					j = len(branch) - i
				}
				for k := range seqs {
					seqs[k] += branch[i : i+j]
				}
				i += j
				continue
			}
			end := closeParen(branch, i)
			if end < 0 {
				return nil, errors.New("'(' without ')'")
			}
			if end > i+1 && strings.IndexByte(branch[i+1:end], '!') >= 0 {
				return nil, errors.New("negation inside a generic alternative")
			}
			sub, err := expandAlt(branch[i+1:end], depth+1)
			if err != nil {
				return nil, err
			}
			if len(seqs)*len(sub) > altExpandMax {
				return nil, fmt.Errorf("alternatives expand to more than %d strings", altExpandMax)
			}
			next := make([]string, 0, len(seqs)*len(sub))
			for _, a := range seqs {
				for _, b := range sub {
					next = append(next, a+b)
				}
			}
			seqs = next
			i = end + 1
		}
		out = append(out, seqs...)
		if len(out) > altExpandMax {
			return nil, fmt.Errorf("alternatives expand to more than %d strings", altExpandMax)
		}
	}
	return out, nil
}

// splitTop splits s at '|' outside parentheses.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case '|':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func genericAlt(strs []string) (elem, error) {
	x := &altData{}
	seen := map[string]bool{}
	widths := map[int]bool{}
	for _, s := range strs {
		if seen[s] {
			continue
		}
		seen[s] = true
		m, err := parseMBytes(s)
		if err != nil {
			return elem{}, err
		}
		x.alts = append(x.alts, m)
		widths[len(m)] = true
	}
	for w := range widths {
		x.widths = append(x.widths, w)
	}
	slices.Sort(x.widths)
	return elem{kind: elAlt, x: x}, nil
}

// never reports a jump whose maximum is below its minimum.
func (p *hexPattern) never() bool {
	for _, g := range p.gaps {
		if g.max >= 0 && g.max < g.min {
			return true
		}
	}
	return false
}

// checkAnchors reports a part without two fixed bytes in a row: libclamav
// refuses it too ("Can't find a static subpattern"), and it is what the
// multi-pattern search needs.
func (p *hexPattern) checkAnchors() error {
	for i := range p.parts {
		if p.parts[i].longestRun() < 2 {
			if len(p.parts) == 1 {
				return errors.New("no two fixed bytes in a row")
			}
			return fmt.Errorf("part %d has no two fixed bytes in a row", i+1)
		}
	}
	return nil
}

// longestRun is the longest stretch of exact bytes in the part.
func (p *part) longestRun() int {
	best := 0
	for _, e := range p.elems {
		if e.kind != elRun {
			continue
		}
		n := 0
		for _, b := range e.run {
			if b.mask == 0xff {
				n++
				best = max(best, n)
			} else {
				n = 0
			}
		}
	}
	return best
}
