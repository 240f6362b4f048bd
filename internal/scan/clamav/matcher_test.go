package clamav

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vigilsec/vigil/internal/scan"
)

// naiveMatch is the reference: every start position, every way through
// the pattern, no anchors, no windows, no chains.
func naiveMatch(s *bodySig, data []byte, st *bodyScan) bool {
	lo, hi, ok := st.offsetRange(s)
	if !ok || len(data) <= scan.TooSmall {
		return false
	}
	for start := 0; start <= len(data); start++ {
		if int64(start) >= lo && int64(start) <= hi && naiveFrom(s.pat, 0, start, data) {
			return true
		}
	}
	return false
}

func naiveFrom(p *hexPattern, j, start int, data []byte) bool {
	pt := &p.parts[j]
	if !pt.leftOK(data, start) {
		return false
	}
	for _, end := range naiveEnds(pt, 0, start, data) {
		if !pt.rightOK(data, end) {
			continue
		}
		if j == len(p.parts)-1 {
			return true
		}
		g := p.gaps[j]
		max := len(data)
		if g.max >= 0 {
			max = min(max, end+g.max)
		}
		for next := end + g.min; next <= max; next++ {
			if naiveFrom(p, j+1, next, data) {
				return true
			}
		}
	}
	return false
}

func naiveEnds(pt *part, k, at int, data []byte) []int {
	if k == len(pt.elems) {
		return []int{at}
	}
	e := &pt.elems[k]
	var out []int
	if e.kind == elRun {
		if e.matchAt(data, at, len(e.run)) {
			out = naiveEnds(pt, k+1, at+len(e.run), data)
		}
		return out
	}
	for _, w := range e.widths() {
		if e.matchAt(data, at, w) {
			out = append(out, naiveEnds(pt, k+1, at+w, data)...)
		}
	}
	return out
}

// randSig writes a random signature over the bytes of alphabet, with
// every construct the grammar has.
func randSig(r *rand.Rand, alphabet []byte) string {
	hexb := func() string { return fmt.Sprintf("%02x", alphabet[r.IntN(len(alphabet))]) }
	var b strings.Builder
	nparts := 1 + r.IntN(3)
	for p := 0; p < nparts; p++ {
		if p > 0 {
			switch r.IntN(5) {
			case 0:
				b.WriteString("*")
			case 1:
				fmt.Fprintf(&b, "{%d}", 128+r.IntN(3)) // a real jump, not inlined
			case 2:
				fmt.Fprintf(&b, "{-%d}", 1+r.IntN(4))
			case 3:
				fmt.Fprintf(&b, "{%d-}", r.IntN(4))
			default:
				lo := r.IntN(3)
				fmt.Fprintf(&b, "{%d-%d}", lo, lo+1+r.IntN(4))
			}
		}
		if r.IntN(6) == 0 {
			fmt.Fprintf(&b, "%s[%d-%d]", hexb(), r.IntN(2), 2+r.IntN(2))
		} else if r.IntN(8) == 0 {
			b.WriteString("(B)")
		}
		anchorAt := r.IntN(3)
		n := 2 + r.IntN(4)
		for i := 0; i < n; i++ {
			if i == anchorAt {
				b.WriteString(hexb() + hexb())
				if r.IntN(2) == 0 {
					b.WriteString(hexb() + hexb())
				}
				continue
			}
			switch r.IntN(12) {
			case 0:
				b.WriteString("??")
			case 1:
				b.WriteString(hexb()[:1] + "?")
			case 2:
				b.WriteString("?" + hexb()[1:])
			case 3:
				fmt.Fprintf(&b, "(%s|%s)", hexb(), hexb())
			case 4:
				fmt.Fprintf(&b, "!(%s|%s)", hexb(), hexb())
			case 5:
				fmt.Fprintf(&b, "(%s|%s%s)", hexb(), hexb(), hexb())
			case 6:
				fmt.Fprintf(&b, "(%s%s|%s%s)", hexb(), hexb(), hexb(), hexb())
			case 7:
				b.WriteString("(L)")
			case 8:
				b.WriteString("{3}")
			case 9:
				fmt.Fprintf(&b, "(%s|)", hexb())
			default:
				b.WriteString(hexb())
			}
		}
		if r.IntN(6) == 0 {
			fmt.Fprintf(&b, "[%d-%d]%s", r.IntN(2), 2+r.IntN(2), hexb())
		} else if r.IntN(8) == 0 {
			b.WriteString("(W)")
		}
	}
	return b.String()
}

func randOffset(r *rand.Rand, size int) string {
	switch r.IntN(6) {
	case 0:
		return fmt.Sprint(r.IntN(size + 1))
	case 1:
		return fmt.Sprintf("%d,%d", r.IntN(size+1), r.IntN(size))
	case 2:
		return fmt.Sprintf("EOF-%d", r.IntN(size+1))
	case 3:
		return fmt.Sprintf("EOF-%d,%d", r.IntN(size+1), r.IntN(8))
	}
	return "*"
}

// TestMatcherAgainstNaive compares the anchored, windowed, chained matcher
// with the naive reference on random signatures and inputs drawn from a
// small alphabet (so that partial matches abound), through windows of a
// few bytes so that parts straddle window boundaries.
func TestMatcherAgainstNaive(t *testing.T) {
	defer func(c int) { windowChunk = c }(windowChunk)
	alphabet := []byte("ABC\n \r")
	r := rand.New(rand.NewPCG(1, 2))
	iters := 400
	if testing.Short() {
		iters = 100
	}
	for it := 0; it < iters; it++ {
		windowChunk = 1 + r.IntN(40)
		size := 6 + r.IntN(400)
		var lines []string
		for i := 0; i < 1+r.IntN(8); i++ {
			line := fmt.Sprintf("S%d:0:%s:%s", i, randOffset(r, size), randSig(r, alphabet))
			if _, err := parseNDBLine(line); err != nil {
				continue // e.g. an anchored byte next to a jump
			}
			lines = append(lines, line)
		}
		if len(lines) == 0 {
			continue
		}
		e, _ := loadNDB(t, lines...)
		for k := 0; k < 5; k++ {
			data := make([]byte, size)
			for i := range data {
				data[i] = alphabet[r.IntN(len(alphabet))]
			}
			st := e.body.start(classOf(data), int64(len(data)), bytes.NewReader(data))
			want := map[string]bool{}
			for _, s := range e.body.sigs {
				want[s.name] = naiveMatch(s, data, st)
			}
			st.release()
			res := scanData(t, e, data)
			anyWant := false
			for _, v := range want {
				anyWant = anyWant || v
			}
			if res.Infected != anyWant || (res.Infected && !want[res.Signature]) {
				t.Fatalf("window %d: got %+v want %v\nsignatures:\n%s\ndata %q", windowChunk, res, want, strings.Join(lines, "\n"), data)
			}
			// Each signature alone, so that an early match cannot hide a miss.
			for _, line := range lines {
				one, _ := loadNDB(t, line)
				name, _, _ := strings.Cut(line, ":")
				if got := scanData(t, one, data).Infected; got != want[name] {
					t.Fatalf("window %d: %s: got %v want %v\ndata %q", windowChunk, line, got, want[name], data)
				}
			}
		}
	}
}

func TestSharedPrefixes(t *testing.T) {
	// 2,000 signatures sharing an 8-byte prefix, each ending differently,
	// and as many sharing their anchor bytes with another part.
	var lines []string
	for i := 0; i < 2000; i++ {
		lines = append(lines, fmt.Sprintf("P%d:0:*:5045202020202020%08x", i, i))
		lines = append(lines, fmt.Sprintf("Q%d:0:*:%08x*51515151%08x", i, i, i))
	}
	e, _ := loadNDB(t, lines...)
	tests := []struct {
		data string
		want string
	}{
		{"..PE      \x00\x00\x07\xcf..", "P1999"},
		{"..PE      \x00\x00\x07\xd0..", ""},
		{"..\x00\x00\x00\x2a..QQQQ\x00\x00\x00\x2a..", "Q42"},
		{"..QQQQ\x00\x00\x00\x2a..\x00\x00\x00\x2a..", ""},
	}
	for _, tt := range tests {
		if got := scanData(t, e, []byte(tt.data)).Signature; got != tt.want {
			t.Errorf("got %q for %q want %q", got, tt.data, tt.want)
		}
	}
}

func TestOverlappingPatterns(t *testing.T) {
	e, _ := loadNDB(t,
		"Long:0:*:414243444546",
		"Mid:0:2:43444546",
		"Inner:0:EOF-2:4546",
	)
	tests := []struct {
		data string
		want string
	}{
		{"ABCDEF", "Long"}, // both match; Long's anchor comes first in the file
		{"xxCDEFx", "Mid"},
		{"xxxCDEFx", ""},
		{"xABCDEFx", "Long"},
		{"xxxxEF", "Inner"},
		{"xxxxEFx", ""},
		{"ABABCDEFx", "Long"},
	}
	for _, tt := range tests {
		if got := scanData(t, e, []byte(tt.data)).Signature; got != tt.want {
			t.Errorf("got %q for %q want %q", got, tt.data, tt.want)
		}
	}
}

// TestLongSignature crosses window boundaries with a part longer than a
// whole window's fresh data, and a chain whose parts sit chunks apart.
func TestLongSignature(t *testing.T) {
	defer func(c int) { windowChunk = c }(windowChunk)
	windowChunk = 64
	long := make([]byte, 1000)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range long {
		long[i] = byte(r.IntN(256))
	}
	hexLong := fmt.Sprintf("%x", long)
	hexLong = hexLong[:400] + "??" + hexLong[402:] // a wildcard inside
	e, _ := loadNDB(t,
		"Long:0:*:"+hexLong,
		"Far:0:*:46415231*46415232{5000-6000}46415233",
	)
	pad := func(n int) []byte { return bytes.Repeat([]byte{'.'}, n) }
	for _, at := range []int{0, 1, 63, 64, 65, 1000, 4097} {
		data := append(append(pad(at), long...), pad(77)...)
		data[at+200] ^= 0xff // the wildcard
		if got := scanData(t, e, data).Signature; got != "Long" {
			t.Errorf("at %d: got %q want Long", at, got)
		}
		data[at+999] ^= 1
		if got := scanData(t, e, data).Signature; got != "" {
			t.Errorf("at %d, last byte changed: got %q want nothing", at, got)
		}
	}
	far := func(gap1, gap2 int) []byte {
		return bytes.Join([][]byte{pad(10), []byte("FAR1"), pad(gap1), []byte("FAR2"), pad(gap2), []byte("FAR3"), pad(10)}, nil)
	}
	if got := scanData(t, e, far(10000, 5500)).Signature; got != "Far" {
		t.Errorf("got %q want Far", got)
	}
	if got := scanData(t, e, far(10000, 6001)).Signature; got != "" {
		t.Errorf("got %q want nothing: the last jump is too long", got)
	}
}

// TestSpans checks spans against the set of ends it stands for, with ends
// nearly in order as parts of varying length give them.
func TestSpans(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for it := 0; it < 200; it++ {
		g := gap{r.IntN(20), 0}
		g.max = g.min + r.IntN(6)
		var (
			q    spans
			ends []int64
			at   int64
		)
		for k := 0; k < 300; k++ {
			at += int64(r.IntN(4))
			e := at + int64(r.IntN(5)) // up to 4 before a later end
			ends = append(ends, e)
			q.add(e+int64(g.min), e+int64(g.max))
			horizon := at - 3
			q.expire(horizon)
			for pos := horizon; pos < at+30; pos++ {
				want := false
				for _, x := range ends {
					if d := pos - x; d >= int64(g.min) && d <= int64(g.max) {
						want = true
					}
				}
				if got := q.contains(pos); got != want {
					t.Fatalf("gap %v, ends %v: contains(%d) = %v want %v", g, ends, pos, got, want)
				}
			}
			live := q.s[q.head:]
			for i := 1; i < len(live); i++ {
				if live[i].lo <= live[i-1].hi+1 {
					t.Fatalf("spans %v overlap or touch", live)
				}
			}
		}
	}
}

// TestSpansBounded: ends on every byte of a long stretch are one span;
// ends every other byte before an exact 1 MB jump fill maxSpans and no
// more, and still allow every start they should.
func TestSpansBounded(t *testing.T) {
	var q spans
	for e := int64(0); e < 1<<20; e++ {
		q.add(e+100, e+200)
	}
	if n := len(q.s) - q.head; n != 1 {
		t.Errorf("got %d spans for ends on every byte want 1", n)
	}
	q.reset()
	const jump = 1 << 20
	for e := int64(0); e < 1<<16; e += 2 {
		q.add(e+jump, e+jump)
		if n := len(q.s) - q.head; n > maxSpans {
			t.Fatalf("got %d spans want at most %d", n, maxSpans)
		}
	}
	for e := int64(0); e < 1<<16; e += 2 {
		if !q.contains(e + jump) {
			t.Fatalf("lost the start at %d", e+jump)
		}
	}
}

// TestMatcherManyEnds compares the matcher with the naive reference on
// inputs where a part ends hundreds of times within a jump's reach.
func TestMatcherManyEnds(t *testing.T) {
	defer func(c int) { windowChunk = c }(windowChunk)
	r := rand.New(rand.NewPCG(9, 10))
	sigs := []string{
		"0:*:4142{300-302}4241",
		"0:*:4142{300}4241",
		"0:*:4142(41|4242){200-210}4242{150}4241",
		"0:*:4142{-250}4241",
		"0:*:4141{130}4242",
	}
	for it := 0; it < 40; it++ {
		windowChunk = 64 + r.IntN(512)
		// "AB" every 3 or 4 bytes: 64 ends (libclamav keeps its last 64)
		// span less than the jumps.
		var data []byte
		for n := 1500 + r.IntN(1500); len(data) < n; {
			data = append(data, []string{"AB", "AB", "AB", "A", "B", "."}[r.IntN(6)]...)
		}
		for _, sig := range sigs {
			e, _ := loadNDB(t, "M:"+sig)
			st := e.body.start(classOf(data), int64(len(data)), bytes.NewReader(data))
			want := naiveMatch(e.body.sigs[0], data, st)
			st.release()
			if got := scanData(t, e, data).Infected; got != want {
				t.Fatalf("window %d: %s: got %v want %v\ndata %q", windowChunk, sig, got, want, data)
			}
		}
	}
}
