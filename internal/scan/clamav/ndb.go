package clamav

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Target types we match (ClamAV's TargetType field, appendix FileTypes).
const (
	targetAny   = 0
	targetPE    = 1
	targetELF   = 6
	targetASCII = 7
	targetMachO = 9
	targetMax   = 14 // CLI_MTARGETS-1: higher types are ignored by ClamAV
)

// targetNames names every ClamAV target type for the load report.
var targetNames = [targetMax + 1]string{
	"any", "PE", "OLE2", "HTML", "mail", "graphics", "ELF", "ASCII",
	"unused", "Mach-O", "PDF", "Flash", "Java", "internal", "other",
}

// Why signatures of a target type are not used.
const (
	reasonNormalise = "needs HTML or mail parsing we do not do"
	reasonFileType  = "needs file type detection we do not do"
	reasonTarget    = "unknown target type, ClamAV ignores it too"
)

func targetSkipReason(t int) string {
	switch t {
	case targetAny, targetPE, targetELF, targetASCII, targetMachO:
		return ""
	case 3, 4: // HTML, mail
		return reasonNormalise
	}
	if t < 0 || t > targetMax {
		return reasonTarget
	}
	return reasonFileType
}

type offKind uint8

const (
	offAny     offKind = iota // *
	offAbs                    // n
	offEOF                    // EOF-n
	offEPPlus                 // EP+n
	offEPMinus                // EP-n
	offSx                     // Sx+n
	offSE                     // SEx
	offSL                     // SL+n
)

// offset is a parsed Offset field; n, shift and sect are uint32 as in
// libclamav's cli_caloff.
type offset struct {
	kind  offKind
	n     int64
	shift int64
	sect  int
}

// exeRelative reports offsets that need an executable's headers.
func (o offset) exeRelative() bool { return o.kind >= offEPPlus }

// Why signatures with these offsets are not used.
const (
	reasonMacro   = "macro offset: needs logical signatures"
	reasonVersion = "version information offset: not supported"
	reasonNever   = "a jump's maximum is below its minimum: never matches"
)

// parseOffset reads an Offset field as libclamav's cli_caloff does; skip
// says why a valid offset is one we do not use: a macro group ($n$, which
// only .ldb macro subsignatures fill: an .ndb signature with one never
// matches) or VI (PE version information strings).
//
// Numbers go through atoi into 32 bits, as there: 4294967296 is offset 0,
// and 4294967295, the value of libclamav's CLI_OFF_ANY, is `*`. We follow
// that rather than refuse the line: it is what ClamAV does with it.
func parseOffset(s string, target int) (o offset, skip string, err error) {
	if s == "*" {
		return offset{kind: offAny}, "", nil
	}
	bad := fmt.Errorf("offset %q is not *, n, EOF-n, EP+n, EP-n, Sx+n, SEx, SL+n, VI or $n$ (each with an optional ,maxshift)", clip(s))
	if len(s) > 64 {
		return o, "", bad
	}
	u32 := func(t string) (int64, bool) { return int64(uint32(cAtoi(t))), cIsNumber(t) }
	if base, shift, ok := strings.Cut(s, ","); ok {
		if o.shift, ok = u32(shift); !ok {
			return o, "", bad
		}
		s = base
	}
	ok := true
	switch {
	case strings.HasPrefix(s, "EP+"):
		o.kind = offEPPlus
		o.n, ok = u32(s[3:])
	case strings.HasPrefix(s, "EP-"):
		o.kind = offEPMinus
		o.n, ok = u32(s[3:])
	case strings.HasPrefix(s, "SE"):
		o.kind = offSE
		var n int64
		n, ok = u32(s[2:])
		o.sect = int(n)
	case strings.HasPrefix(s, "SL+"):
		o.kind = offSL
		o.n, ok = u32(s[3:])
	case strings.HasPrefix(s, "S"): // sscanf("S%u+%u"): what follows is ignored
		o.kind = offSx
		var sect, n uint32
		var rest string
		if sect, rest, ok = cScanU(s[1:]); ok && strings.HasPrefix(rest, "+") {
			n, _, ok = cScanU(rest[1:])
		} else {
			ok = false
		}
		o.sect, o.n = int(sect), int64(n)
	case strings.HasPrefix(s, "EOF-"):
		o.kind = offEOF
		o.n, ok = u32(s[4:])
	case strings.HasPrefix(s, "VI"):
		skip = reasonVersion
	case strings.Contains(s, "$"): // sscanf("$%u$")
		var n uint32
		if !strings.HasPrefix(s, "$") {
			return o, "", bad
		}
		if n, _, ok = cScanU(s[1:]); ok && n >= 32 {
			return o, "", fmt.Errorf("offset %q: macro groups go up to $31$", clip(s))
		}
		skip = reasonMacro
	default:
		o.kind = offAbs
		o.n, ok = u32(s)
		if o.n == math.MaxUint32 {
			o = offset{kind: offAny}
		}
	}
	if !ok {
		return o, "", bad
	}
	if (o.exeRelative() || skip == reasonVersion) && target != targetPE && target != targetELF && target != targetMachO {
		return o, "", fmt.Errorf("offset %q needs target type 1 (PE), 6 (ELF) or 9 (Mach-O), not %d", clip(s), target)
	}
	return o, skip, nil
}

// bodySig is one parsed .ndb line.
type bodySig struct {
	name   string
	target int
	off    offset
	pat    *hexPattern
	// textable: normalised text may match pat (see hexPattern.textable).
	textable bool
	// text is the line, for the version digest; dropped after load.
	text string
}

// ndbResult is what parseNDB hands back per line.
type ndbResult struct {
	sig    *bodySig // nil when skipped or excluded
	target int      // set for skipped lines
	skip   string   // reason the line is not used, "" when used
	level  bool     // excluded by functionality level
	never  *bodySig // a signature that never matches, skipped
}

// parseNDB reads an extended signature database (.ndb),
// Name:TargetType:Offset:HexSignature[:MinFL[:MaxFL]], calling add for each
// line that is not blank or a comment. Like libclamav it checks the
// functionality level before the rest, so that signatures written for a
// newer engine never fail the load. Every error names file:line.
func parseNDB(file string, r io.Reader, add func(ndbResult)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || text[0] == '#' || strings.TrimSpace(text) == "" {
			continue
		}
		res, err := parseNDBLine(text)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, line, err)
		}
		add(res)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than %d bytes", file, line+1, maxLine)
		}
		return fmt.Errorf("%s:%d: read: %w", file, line+1, err)
	}
	return nil
}

func parseNDBLine(text string) (ndbResult, error) {
	f := strings.Split(text, ":")
	if len(f) < 4 || len(f) > 6 {
		return ndbResult{}, fmt.Errorf("%d fields, want 4 to 6 (name:target:offset:hexsig[:minfl[:maxfl]])", len(f))
	}
	if f[0] == "" {
		return ndbResult{}, errors.New("empty malware name")
	}
	// Numeric fields are cli_isnumber then atoi: an empty one is 0, so an
	// empty target is 0 (any), and an empty maximum level excludes the line.
	if len(f) > 4 {
		if !cIsNumber(f[4]) {
			return ndbResult{}, fmt.Errorf("minimum functionality level %q is not a number", clip(f[4]))
		}
		if uint32(cAtoi(f[4])) > FunctionalityLevel {
			return ndbResult{level: true}, nil
		}
		if len(f) > 5 {
			if !cIsNumber(f[5]) {
				return ndbResult{}, fmt.Errorf("maximum functionality level %q is not a number", clip(f[5]))
			}
			if uint32(cAtoi(f[5])) < FunctionalityLevel {
				return ndbResult{level: true}, nil
			}
		}
	}
	target := 0
	if f[1] != "*" {
		if !cIsNumber(f[1]) {
			return ndbResult{}, fmt.Errorf("target type %q is not a number", clip(f[1]))
		}
		target = int(cAtoi(f[1]))
	}
	if reason := targetSkipReason(target); reason != "" {
		return ndbResult{target: target, skip: reason}, nil
	}
	off, skip, err := parseOffset(f[2], target)
	if err != nil {
		return ndbResult{}, err
	}
	pat, err := parseHex(f[3])
	if err != nil {
		return ndbResult{}, fmt.Errorf("hex signature: %w", err)
	}
	if err := pat.checkAnchors(); err != nil {
		return ndbResult{}, fmt.Errorf("hex signature: %w", err)
	}
	if pat.never() {
		// Loaded by libclamav all the same: it shapes the normalised pass
		// (matcher.noteASCII).
		return ndbResult{target: target, skip: reasonNever, never: &bodySig{name: f[0], target: target, off: off, pat: pat}}, nil
	}
	if skip != "" {
		return ndbResult{target: target, skip: skip}, nil
	}
	return ndbResult{sig: &bodySig{name: f[0], target: target, off: off, pat: pat, text: text}, target: target}, nil
}
