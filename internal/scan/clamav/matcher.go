package clamav

import (
	"encoding/binary"
	"io"
	"math"
	"math/bits"
	"slices"
	"sync"
)

// The body matcher finds every signature part through one fixed anchor of
// 4 exact bytes (2 where a part has no 4 in a row, as libclamav allows),
// then verifies the part around the anchor and chains parts across jumps.
//
// The multi-pattern search is a hashed q-gram filter, equivalent to an
// Aho-Corasick automaton over the anchors and faster on large sets: each
// file position's 4 bytes index a bitmap sized for a low false-positive
// rate; on a hit an open-addressing table gives the parts whose anchor those
// 4 bytes are. 2-byte anchors use a direct 65,536-entry table. One bitmap
// per file class holds only the signatures whose target type applies, so a
// text file never pays for PE signatures.
//
// Parts are found in file order of their anchors, and a part's anchor
// always comes after the previous part's, so chaining needs no look-back
// beyond a part's own reach: a scan keeps one window of a chunk plus that
// reach, whatever the file size.

const (
	longAnchor  = 4
	shortAnchor = 2
	// maxSpans bounds the spans a part followed by a bounded jump keeps,
	// 16 bytes each; see spans.
	maxSpans = 4096
	// Filter bits per anchor: ~1.5% false positives at 64.
	bitsPerAnchor = 64
	hashMul       = 0x9E3779B1
	slotMul       = 0x85EBCA77
)

// anchorRef names one signature part.
type anchorRef struct {
	sig  uint32
	part uint32
}

// longTable maps 4-byte anchors to the parts they stand for.
type longTable struct {
	keys      []uint32
	first     []uint32 // refs[first[k]:first[k+1]] for keys[k]
	refs      []anchorRef
	slots     []uint32 // key index + 1, 0 empty
	slotShift uint
	bits      [numClasses][]uint64
	bitShift  uint
}

// shortTable maps 2-byte anchors to parts directly.
type shortTable struct {
	first []uint32 // 65,537 entries, nil when no short anchors
	refs  []anchorRef
	bits  [numClasses][]uint64
}

// matcher is the compiled body signature set. It is immutable; scans keep
// their state in a bodyScan.
type matcher struct {
	sigs  []*bodySig
	long  longTable
	short shortTable
	// any[c]: some signature applies to files of class c.
	any [numClasses]bool
	// back and fwd are the bytes a part may need before and from its
	// anchor's first byte, lookarounds included.
	back, fwd int
	// textPat is the longest target 7 part, libclamav's maxpatlen for
	// them; textRel says a target 7 signature has an EOF-n offset. Both
	// shape the normalised pass (textScan).
	textPat  int
	textRel  bool
	states   sync.Pool
	textBufs sync.Pool
}

// compile builds the matcher; sigs must have passed checkAnchors.
func compile(sigs []*bodySig) *matcher {
	m := &matcher{sigs: sigs}
	m.states.New = func() any { return &bodyScan{m: m, chains: map[uint32]*chain{}} }
	m.textBufs.New = func() any { b := make([]byte, scanBuff+m.textPat); return &b }
	usage := map[uint32]int{}
	type pair struct {
		key uint32
		ref anchorRef
	}
	var longs, shorts []pair
	for si, s := range sigs {
		for pi := range s.pat.parts {
			p := &s.pat.parts[pi]
			p.pickAnchor(usage)
			key := p.anchorKey()
			ref := anchorRef{uint32(si), uint32(pi)}
			if p.alen == longAnchor {
				longs = append(longs, pair{key, ref})
			} else {
				shorts = append(shorts, pair{key, ref})
			}
			back, fwd := p.reach()
			m.back, m.fwd = max(m.back, back), max(m.fwd, fwd)
		}
		m.noteASCII(s)
		s.textable = s.pat.textable()
		for c := range numClasses {
			if sigApplies(s, fileClass(c)) {
				m.any[c] = true
			}
		}
	}

	// Long anchors: sorted runs of refs per key, a probe table, bitmaps.
	slices.SortStableFunc(longs, func(a, b pair) int { return cmpU32(a.key, b.key) })
	lt := &m.long
	for i, p := range longs {
		if i == 0 || p.key != longs[i-1].key {
			lt.keys = append(lt.keys, p.key)
			lt.first = append(lt.first, uint32(i))
		}
		lt.refs = append(lt.refs, p.ref)
	}
	lt.first = append(lt.first, uint32(len(lt.refs)))
	slotBits := max(4, bits.Len(uint(len(lt.keys)*2)))
	lt.slots = make([]uint32, 1<<slotBits)
	lt.slotShift = uint(32 - slotBits)
	mask := uint32(len(lt.slots) - 1)
	for k, key := range lt.keys {
		h := (key * slotMul) >> lt.slotShift
		for lt.slots[h] != 0 {
			h = (h + 1) & mask
		}
		lt.slots[h] = uint32(k + 1)
	}
	filterBits := min(max(16, bits.Len(uint(len(lt.keys)*bitsPerAnchor))), 27)
	lt.bitShift = uint(32 - filterBits)
	for c := range numClasses {
		lt.bits[c] = make([]uint64, 1<<filterBits/64)
	}
	for _, p := range longs {
		h := (p.key * hashMul) >> lt.bitShift
		for c := range numClasses {
			if m.applies(p.ref, fileClass(c)) {
				lt.bits[c][h>>6] |= 1 << (h & 63)
			}
		}
	}

	if len(shorts) > 0 {
		slices.SortStableFunc(shorts, func(a, b pair) int { return cmpU32(a.key, b.key) })
		st := &m.short
		st.first = make([]uint32, 1<<16+1)
		for _, p := range shorts {
			st.first[p.key+1]++
			st.refs = append(st.refs, p.ref)
		}
		for k := 1; k < len(st.first); k++ {
			st.first[k] += st.first[k-1]
		}
		for c := range numClasses {
			for _, p := range shorts {
				if m.applies(p.ref, fileClass(c)) {
					if st.bits[c] == nil {
						st.bits[c] = make([]uint64, 1<<16/64)
					}
					st.bits[c][p.key>>6] |= 1 << (p.key & 63)
				}
			}
		}
	}
	return m
}

// noteASCII counts a target 7 signature into what shapes the normalised
// pass, as libclamav counts every one its matcher holds, those that never
// match included.
func (m *matcher) noteASCII(s *bodySig) {
	if s.target != targetASCII {
		return
	}
	for _, p := range s.pat.parts {
		m.textPat = max(m.textPat, p.maxLen)
	}
	if s.off.kind == offEOF {
		m.textRel = true
	}
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (m *matcher) applies(r anchorRef, c fileClass) bool {
	return sigApplies(m.sigs[r.sig], c)
}

// sigApplies reports whether s is matched on files of class c: its
// target is any or c's, and normalised text holds every byte it needs.
func sigApplies(s *bodySig, c fileClass) bool {
	if c == classText && !s.textable {
		return false
	}
	return s.target == targetAny || s.target == classTargets[c]
}

// byteCost estimates how common a byte is in files: an anchor of common
// bytes sends the scan to verification more often.
var byteCost = func() (c [256]float64) {
	for i := range c {
		c[i] = 1
		switch {
		case i == 0:
			c[i] = 8
		case i == 0xff:
			c[i] = 5
		case i == ' ' || i == '\n' || i == '\r' || i == '\t' || i == 0x90 || i == 0xcc:
			c[i] = 3
		case 'a' <= i && i <= 'z', '0' <= i && i <= '9':
			c[i] = 2
		case 'A' <= i && i <= 'Z', i < 0x20:
			c[i] = 1.5
		}
	}
	return c
}()

// pickAnchor chooses the part's most selective window of exact bytes: 4
// long where it can, else 2, scoring common bytes, repeats and windows
// other parts already use (a shared anchor verifies each of them per hit).
func (p *part) pickAnchor(usage map[uint32]int) {
	want := longAnchor
	if p.longestRun() < longAnchor {
		want = shortAnchor
	}
	best := math.Inf(1)
	for ei := range p.elems {
		e := &p.elems[ei]
		if e.kind != elRun {
			continue
		}
		for o := 0; o+want <= len(e.run); o++ {
			score, ok := 0.0, true
			for k := 0; k < want; k++ {
				b := e.run[o+k]
				if b.mask != 0xff {
					ok = false
					break
				}
				score += byteCost[b.val]
				if k > 0 && b.val == e.run[o+k-1].val {
					score += 2
				}
			}
			if !ok {
				continue
			}
			key := runKey(e.run[o : o+want])
			score += math.Log2(1 + float64(usage[key]))
			if score < best {
				best = score
				p.arun, p.aoff, p.alen = ei, o, want
			}
		}
	}
	usage[p.anchorKey()]++
	p.prefMin, p.prefMax = p.aoff, p.aoff
	for _, e := range p.elems[:p.arun] {
		p.prefMin += e.minWidth()
		p.prefMax += e.maxWidth()
	}
}

func runKey(r []mbyte) uint32 {
	var k uint32
	for i, b := range r {
		k |= uint32(b.val) << (8 * i)
	}
	return k
}

func (p *part) anchorKey() uint32 {
	return runKey(p.elems[p.arun].run[p.aoff : p.aoff+p.alen])
}

// reach returns the bytes the part may need before its anchor and from
// its anchor on, lookarounds included (one more for !(L)'s look-ahead).
func (p *part) reach() (back, fwd int) {
	left := 0
	if p.left.class != 0 {
		left = 1
	}
	if p.chL.ok {
		left = max(left, p.chL.max+1)
	}
	right := 0
	if p.right.class != 0 {
		right = 2
	}
	if p.chR.ok {
		right = max(right, p.chR.max+1)
	}
	return p.prefMax + left, p.maxLen - p.prefMin + right + 1
}

// chain is a scan's memory of the parts of one signature found so far.
type chain struct {
	minEnd []int64 // per part: the smallest end with a valid chain, -1 none
	next   []spans // per part followed by a bounded jump: where the next may start
}

// span is a range of file positions, both ends included.
type span struct{ lo, hi int64 }

// spans is where the part after a bounded jump {n-m} may start. That part
// may start at p iff the part before it ended at some e with
// p-m <= e <= p-n, that is iff p lies in [e+n, e+m] for some end e: the
// union of those ranges is kept, merged, so that ends every byte over a
// long stretch are one span, and a range is dropped only once every later
// start of the part is past it (expire). Keeping only some ends, even the
// earliest and the latest, is not enough: with {n} each end may be the one
// a later start needs, and padding would push it out.
//
// Each span is m-n+1 long and apart from the next, so at most about
// (m+reach)/(m-n+2) are live: past maxSpans (64 KiB) only for a jump of
// over 8 KiB with a narrow range, as {10000}. There the two oldest spans
// are merged: the gap between them is taken as allowed, which may report
// a match that is not there in a file built for it, but never misses one.
type spans struct {
	s    []span // s[head:] is sorted, disjoint and not adjacent
	head int
}

func (q *spans) reset() {
	if cap(q.s) > 256 {
		q.s = nil // a hostile file's worth is not kept in the pool
	}
	q.s, q.head = q.s[:0], 0
}

// expire drops the spans that end before horizon.
func (q *spans) expire(horizon int64) {
	for q.head < len(q.s) && q.s[q.head].hi < horizon {
		q.head++
	}
}

// contains reports whether pos lies in a span.
func (q *spans) contains(pos int64) bool {
	live := q.s[q.head:]
	_, ok := slices.BinarySearchFunc(live, pos, func(s span, p int64) int {
		switch {
		case s.hi < p:
			return -1
		case s.lo > p:
			return 1
		}
		return 0
	})
	return ok
}

// add inserts [lo, hi], merging it with the spans it overlaps or touches.
// Ends come nearly in order, so the search from the back is short: a new
// end is at most a part's length before the latest.
func (q *spans) add(lo, hi int64) {
	if q.head > 0 && q.head >= len(q.s)/2 {
		q.s = q.s[:copy(q.s, q.s[q.head:])]
		q.head = 0
	}
	j := len(q.s)
	for j > q.head && q.s[j-1].lo > hi+1 {
		j--
	}
	i := j
	for i > q.head && q.s[i-1].hi+1 >= lo {
		i--
	}
	if i < j {
		lo, hi = min(lo, q.s[i].lo), max(hi, q.s[j-1].hi)
	}
	q.s = slices.Replace(q.s, i, j, span{lo, hi})
	if len(q.s)-q.head > maxSpans {
		q.s[q.head+1].lo = q.s[q.head].lo
		q.head++
	}
}

// bodyScan is the state of one scan.
type bodyScan struct {
	m      *matcher
	class  fileClass
	size   int64
	r      io.ReaderAt
	exe    *exeInfo
	exeSet bool
	noEOF  bool // EOF-n never matches: a streamed normalised pass
	chains map[uint32]*chain
	spare  []*chain
	a, b   []int // scratch position sets
	starts []int
}

// start returns the state for scanning one file of class c, or nil when no
// signature applies to it.
func (m *matcher) start(c fileClass, size int64, r io.ReaderAt) *bodyScan {
	if m == nil || !m.any[c] {
		return nil
	}
	st := m.states.Get().(*bodyScan)
	st.class, st.size, st.r = c, size, r
	st.exe, st.exeSet, st.noEOF = nil, false, false
	return st
}

func (st *bodyScan) release() {
	for k, c := range st.chains {
		st.spare = append(st.spare, c)
		delete(st.chains, k)
	}
	st.r, st.exe = nil, nil
	st.m.states.Put(st)
}

// exeInfo parses the executable headers on first need.
func (st *bodyScan) exeInfo() *exeInfo {
	if !st.exeSet {
		st.exeSet = true
		st.exe, _ = parseExe(st.class, st.r, st.size)
	}
	return st.exe
}

// offsetRange resolves a signature's offset for this file as libclamav's
// cli_caloff does; ok is false when it cannot apply (no such section, an
// executable whose headers do not parse, a negative offset).
func (st *bodyScan) offsetRange(s *bodySig) (lo, hi int64, ok bool) {
	o := s.off
	if o.kind == offAny {
		return 0, math.MaxInt64, true
	}
	if o.kind == offAbs {
		return o.n, o.n + o.shift, true
	}
	var x *exeInfo
	if s.target != targetAny && s.target != targetASCII {
		// libclamav computes no relative offset, EOF-n included, for a
		// typed signature whose file's headers are broken.
		if x = st.exeInfo(); x == nil {
			return 0, 0, false
		}
	}
	switch o.kind {
	case offEOF:
		if st.noEOF {
			return 0, 0, false
		}
		lo = st.size - o.n
	case offEPPlus:
		lo = x.ep + o.n
	case offEPMinus:
		lo = x.ep - o.n
	case offSx:
		if o.sect >= len(x.sections) {
			return 0, 0, false
		}
		lo = x.sections[o.sect].raw + o.n
	case offSL:
		if len(x.sections) == 0 {
			return 0, 0, false
		}
		lo = x.sections[len(x.sections)-1].raw + o.n
	case offSE:
		if o.sect >= len(x.sections) {
			return 0, 0, false
		}
		sec := x.sections[o.sect]
		return sec.raw, sec.raw + sec.rsz + o.shift, true
	}
	if lo < 0 {
		return 0, 0, false
	}
	return lo, lo + o.shift, true
}

// scan examines the anchors starting in [from, to) of a window holding
// the file's bytes [base, base+len(buf)). The window must hold m.back
// bytes before from (or start the file) and m.fwd bytes after to-1 (or end
// the file). It returns the index of a matching signature or -1.
func (st *bodyScan) scan(buf []byte, base, from, to int64) int {
	m := st.m
	i0, i1 := int(from-base), int(to-base)
	lbits := m.long.bits[st.class]
	shift := m.long.bitShift
	if sbits := m.short.bits[st.class]; sbits != nil {
		for i := i0; i < i1; i++ {
			if i+longAnchor <= len(buf) {
				k := binary.LittleEndian.Uint32(buf[i:])
				if h := (k * hashMul) >> shift; lbits[h>>6]&(1<<(h&63)) != 0 {
					if sig := st.longHit(k, buf, base, i); sig >= 0 {
						return sig
					}
				}
			}
			if i+shortAnchor <= len(buf) {
				k := binary.LittleEndian.Uint16(buf[i:])
				if sbits[k>>6]&(1<<(k&63)) != 0 {
					refs := m.short.refs[m.short.first[k]:m.short.first[k+1]]
					if sig := st.verify(refs, buf, base, i); sig >= 0 {
						return sig
					}
				}
			}
		}
		return -1
	}
	end := min(i1, len(buf)-longAnchor+1)
	for i := i0; i < end; i++ {
		k := binary.LittleEndian.Uint32(buf[i:])
		if h := (k * hashMul) >> shift; lbits[h>>6]&(1<<(h&63)) != 0 {
			if sig := st.longHit(k, buf, base, i); sig >= 0 {
				return sig
			}
		}
	}
	return -1
}

func (st *bodyScan) longHit(k uint32, buf []byte, base int64, i int) int {
	lt := &st.m.long
	mask := uint32(len(lt.slots) - 1)
	for h := (k * slotMul) >> lt.slotShift; ; h = (h + 1) & mask {
		s := lt.slots[h]
		if s == 0 {
			return -1
		}
		if lt.keys[s-1] == k {
			return st.verify(lt.refs[lt.first[s-1]:lt.first[s]], buf, base, i)
		}
	}
}

// verify checks the parts whose anchor is at buf[i:].
func (st *bodyScan) verify(refs []anchorRef, buf []byte, base int64, i int) int {
	for _, r := range refs {
		s := st.m.sigs[r.sig]
		if s.target != targetAny && s.target != classTargets[st.class] {
			continue
		}
		p := &s.pat.parts[r.part]
		first, last := r.part == 0, int(r.part) == len(s.pat.parts)-1
		var lo, hi int64
		if first {
			var ok bool
			if lo, hi, ok = st.offsetRange(s); !ok {
				continue
			}
			if base+int64(i-p.prefMin) < lo || base+int64(i-p.prefMax) > hi {
				continue
			}
		}
		var c *chain
		if !first {
			if c = st.chains[r.sig]; c == nil || (c.minEnd[r.part-1] < 0) {
				continue
			}
		}
		starts := p.starts(buf, i, &st.a, &st.b)
		if len(starts) == 0 {
			continue
		}
		// Keep only the starts the offset or the previous part allows.
		st.starts = st.starts[:0]
		for _, x := range starts {
			pos := base + int64(x)
			if first && (pos < lo || pos > hi) {
				continue
			}
			if !first && !c.allows(int(r.part)-1, s.pat.gaps[r.part-1], pos, base+int64(i-p.prefMax)) {
				continue
			}
			st.starts = append(st.starts, x)
		}
		if len(st.starts) == 0 {
			continue
		}
		ends := p.ends(buf, i, &st.a, &st.b)
		if len(ends) == 0 {
			continue
		}
		if last {
			return int(r.sig)
		}
		if c == nil {
			c = st.chain(r.sig, len(s.pat.parts))
		}
		// Parts are met in the order of their anchors: the next part's
		// anchor is past this one, and so its starts past the horizon.
		c.record(int(r.part), s.pat.gaps[r.part], base, ends, base+int64(i-s.pat.parts[r.part+1].prefMax))
	}
	return -1
}

func (st *bodyScan) chain(sig uint32, parts int) *chain {
	if c := st.chains[sig]; c != nil {
		return c
	}
	var c *chain
	if n := len(st.spare); n > 0 {
		c, st.spare = st.spare[n-1], st.spare[:n-1]
	} else {
		c = &chain{}
	}
	c.minEnd = c.minEnd[:0]
	for len(c.next) < parts-1 {
		c.next = append(c.next, spans{})
	}
	c.next = c.next[:parts-1]
	for j := 0; j < parts-1; j++ {
		c.minEnd = append(c.minEnd, -1)
		c.next[j].reset()
	}
	st.chains[sig] = c
	return c
}

// allows reports whether a part may start at pos after part j's ends;
// horizon is where the part's earliest start can be from now on.
func (c *chain) allows(j int, g gap, pos, horizon int64) bool {
	if c.minEnd[j] < 0 {
		return false
	}
	if g.max < 0 {
		return pos-c.minEnd[j] >= int64(g.min)
	}
	c.next[j].expire(horizon)
	return c.next[j].contains(pos)
}

// record notes part j's ends; horizon is where the next part's earliest
// start can be from now on.
func (c *chain) record(j int, g gap, base int64, ends []int, horizon int64) {
	for _, x := range ends {
		e := base + int64(x)
		if c.minEnd[j] < 0 || e < c.minEnd[j] {
			c.minEnd[j] = e
		}
		if g.max >= 0 {
			c.next[j].add(e+int64(g.min), e+int64(g.max))
		}
	}
	if g.max >= 0 {
		c.next[j].expire(horizon)
	}
}

// starts returns the window positions where the part can start, given its
// anchor at buf[i:], left checks included. a and b are scratch.
func (p *part) starts(buf []byte, i int, a, b *[]int) []int {
	run := p.elems[p.arun].run
	x := i - p.aoff
	if x < 0 || !matchRun(run[:p.aoff], buf[x:]) {
		return nil
	}
	cur := append((*a)[:0], x)
	next := (*b)[:0]
	for k := p.arun - 1; k >= 0 && len(cur) > 0; k-- {
		e := &p.elems[k]
		next = next[:0]
		for _, y := range cur {
			if e.kind == elRun {
				if z := y - len(e.run); z >= 0 && matchRun(e.run, buf[z:]) {
					next = appendSet(next, z)
				}
				continue
			}
			for _, w := range e.widths() {
				if z := y - w; z >= 0 && e.matchAt(buf, z, w) {
					next = appendSet(next, z)
				}
			}
		}
		cur, next = next, cur
	}
	out := cur[:0]
	for _, y := range cur {
		if p.leftOK(buf, y) {
			out = append(out, y)
		}
	}
	*a, *b = cur, next
	return out
}

// ends returns the window positions where the part can end, given its
// anchor at buf[i:], right checks included.
func (p *part) ends(buf []byte, i int, a, b *[]int) []int {
	run := p.elems[p.arun].run
	x := i + p.alen
	rest := run[p.aoff+p.alen:]
	if x+len(rest) > len(buf) || !matchRun(rest, buf[x:]) {
		return nil
	}
	cur := append((*a)[:0], x+len(rest))
	next := (*b)[:0]
	for k := p.arun + 1; k < len(p.elems) && len(cur) > 0; k++ {
		e := &p.elems[k]
		next = next[:0]
		for _, y := range cur {
			if e.kind == elRun {
				if y+len(e.run) <= len(buf) && matchRun(e.run, buf[y:]) {
					next = appendSet(next, y+len(e.run))
				}
				continue
			}
			for _, w := range e.widths() {
				if e.matchAt(buf, y, w) {
					next = appendSet(next, y+w)
				}
			}
		}
		cur, next = next, cur
	}
	out := cur[:0]
	for _, y := range cur {
		if p.rightOK(buf, y) {
			out = append(out, y)
		}
	}
	*a, *b = cur, next
	return out
}

func appendSet(s []int, v int) []int {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// matchRun reports whether b starts with bytes matching r; b may be longer.
func matchRun(r []mbyte, b []byte) bool {
	if len(b) < len(r) {
		return false
	}
	b = b[:len(r)]
	for k, m := range r {
		if b[k]&m.mask != m.val {
			return false
		}
	}
	return true
}

// boundary is libclamav's (B) table: 1 may precede a word, 2 may follow
// one, 3 both.
var boundary = [256]byte{
	'\n': 2, '\r': 2, ' ': 3, '"': 2, '\'': 2, '-': 3, '.': 1, '/': 3,
	'<': 1, '=': 2, '>': 2, '@': 1, '_': 3,
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// matchAt reports whether e, taking w bytes, matches at buf[i:].
func (e *elem) matchAt(buf []byte, i, w int) bool {
	if i < 0 || i+w > len(buf) {
		return false
	}
	switch e.kind {
	case elRun:
		return w == len(e.run) && matchRun(e.run, buf[i:])
	case elSet:
		c := buf[i]
		return (e.x.set[c>>6]>>(c&63)&1 == 1) != e.neg
	case elAlt:
		for _, a := range e.x.alts {
			if len(a) == w && matchRun(a, buf[i:]) {
				return true
			}
		}
		return false
	case elNoAlt:
		for _, a := range e.x.alts {
			if matchRun(a, buf[i:]) {
				return false
			}
		}
		return true
	case elClass:
		c := buf[i]
		switch e.class {
		case classB:
			return (boundary[c] != 0) != e.neg
		case classW:
			return !isAlnum(c) != e.neg
		}
		crlf := c == '\r' && i+1 < len(buf) && buf[i+1] == '\n'
		if e.neg {
			return c != '\n' && !crlf
		}
		if w == 1 {
			return c == '\n'
		}
		return crlf
	}
	return false
}

// leftOK checks the zero-width class and the [x-y] byte before a part
// starting at buf[i]; the window's start is the file's here.
func (p *part) leftOK(buf []byte, i int) bool {
	if p.left.class != 0 {
		hit := i == 0
		if !hit {
			c := buf[i-1]
			switch p.left.class {
			case classB:
				hit = boundary[c] == 1 || boundary[c] == 3
			case classL:
				hit = c == '\n'
			case classW:
				hit = !isAlnum(c)
			}
		}
		if hit == p.left.neg {
			return false
		}
	}
	if p.chL.ok {
		for d := p.chL.min; d <= p.chL.max; d++ {
			q := i - 1 - d
			if q < 0 {
				return false
			}
			if p.chL.b.match(buf[q]) {
				return true
			}
		}
		return false
	}
	return true
}

// rightOK checks the zero-width class and the [x-y] byte after a part
// ending at buf[i]; the window's end is the file's here.
func (p *part) rightOK(buf []byte, i int) bool {
	if p.right.class != 0 {
		hit := i >= len(buf)
		if !hit {
			c := buf[i]
			switch p.right.class {
			case classB:
				hit = boundary[c] >= 2
			case classL:
				hit = c == '\n' || c == '\r' && i+1 < len(buf) && buf[i+1] == '\n'
			case classW:
				hit = !isAlnum(c)
			}
		}
		if hit == p.right.neg {
			return false
		}
	}
	if p.chR.ok {
		for d := p.chR.min; d <= p.chR.max; d++ {
			q := i + d
			if q >= len(buf) {
				return false
			}
			if p.chR.b.match(buf[q]) {
				return true
			}
		}
		return false
	}
	return true
}
