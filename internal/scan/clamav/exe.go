package clamav

import (
	"encoding/binary"
	"errors"
	"io"
)

// fileClass is what we know of a file's type: enough to pick the target
// types whose signatures apply.
type fileClass uint8

const (
	classOther fileClass = iota
	classPE
	classELF
	classMachO
	// classText is a text file's normalised bytes (textScan), never what
	// classOf says of a file.
	classText
	numClasses
)

var classTargets = [numClasses]int{targetAny, targetPE, targetELF, targetMachO, targetASCII}

// classOf looks at a file's first bytes the way ClamAV's magic does for
// these types: MZ, \x7fELF, the four thin Mach-O magics and a universal
// (fat) Mach-O header. Target 9 applies to a fat file as a whole too, with
// no executable offsets (its headers are not a thin Mach-O's); its slices
// are scanned as files of their own (scanSlices).
func classOf(head []byte) fileClass {
	switch {
	case len(head) >= 2 && head[0] == 'M' && head[1] == 'Z':
		return classPE
	case len(head) >= 4 && string(head[:4]) == "\x7fELF":
		return classELF
	case isFat(head):
		return classMachO
	case len(head) >= 4:
		switch binary.BigEndian.Uint32(head) {
		case 0xfeedface, 0xcefaedfe, 0xfeedfacf, 0xcffaedfe:
			return classMachO
		}
	}
	return classOther
}

// maxFatArchs bounds a fat file's architectures: libclamav's magic takes
// cafebabe0000000? and cafebabe0000001? for one.
const maxFatArchs = 32

// isFat reports a universal (fat) Mach-O header: cafebabe, then the
// number of architectures, big-endian, below 32. A Java class file has the
// same magic, then its minor and major versions, which make that number
// 45 (Java 1.0's 45.0) or more: libclamav tells them apart by it too.
func isFat(head []byte) bool {
	return len(head) >= 8 && binary.BigEndian.Uint32(head) == 0xcafebabe &&
		binary.BigEndian.Uint32(head[4:]) < maxFatArchs
}

// exeSection is a section's place in the file.
type exeSection struct{ raw, rsz int64 }

// exeInfo is what EP and section offsets refer to: file offsets, as
// libclamav's cli_exe_info holds them.
type exeInfo struct {
	ep       int64
	sections []exeSection
}

var errExe = errors.New("malformed executable header")

// parseExe reads the headers of a file of class c.
func parseExe(c fileClass, r io.ReaderAt, size int64) (*exeInfo, error) {
	switch c {
	case classPE:
		return parsePE(r, size)
	case classELF:
		return parseELF(r, size)
	case classMachO:
		return parseMachO(r, size)
	}
	return nil, errExe
}

func readAt(r io.ReaderAt, n int, off int64) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, errExe
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil, errExe
	}
	return b, nil
}

// Limits keep a hostile header from costing much.
const (
	maxPESections   = 96 // the PE format's own limit
	maxELFHeaders   = 128
	maxMachOCmds    = 1024
	maxMachOSects   = 255
	peSectionHeader = 40
)

// parsePE follows libclamav's cli_peheader for what offsets need: section
// offsets and sizes aligned to FileAlignment (falling back to 0x200 as it
// does), sizes clipped to the file, and the entry point RVA mapped to a file
// offset the way cli_rawaddr maps it.
func parsePE(r io.ReaderAt, size int64) (*exeInfo, error) {
	dos, err := readAt(r, 64, 0)
	if err != nil || dos[0] != 'M' || dos[1] != 'Z' {
		return nil, errExe
	}
	lfanew := int64(binary.LittleEndian.Uint32(dos[0x3c:]))
	hdr, err := readAt(r, 24, lfanew)
	if err != nil || string(hdr[:4]) != "PE\x00\x00" {
		return nil, errExe
	}
	nsect := int(binary.LittleEndian.Uint16(hdr[6:]))
	optSize := int(binary.LittleEndian.Uint16(hdr[20:]))
	if nsect == 0 || nsect > maxPESections || optSize < 64 {
		return nil, errExe
	}
	opt, err := readAt(r, 64, lfanew+24)
	if err != nil {
		return nil, errExe
	}
	switch binary.LittleEndian.Uint16(opt) {
	case 0x10b, 0x20b: // PE32, PE32+: the fields we read sit alike
	default:
		return nil, errExe
	}
	vep := int64(binary.LittleEndian.Uint32(opt[16:]))
	salign := int64(binary.LittleEndian.Uint32(opt[32:]))
	falign := int64(binary.LittleEndian.Uint32(opt[36:]))
	hdrSize := alignUp(int64(binary.LittleEndian.Uint32(opt[60:])), salign)

	sh, err := readAt(r, nsect*peSectionHeader, lfanew+24+int64(optSize))
	if err != nil {
		return nil, errExe
	}
	type rawSect struct{ va, vsz, rsz, ptr int64 }
	secs := make([]rawSect, nsect)
	for i := range secs {
		h := sh[i*peSectionHeader:]
		secs[i] = rawSect{
			vsz: int64(binary.LittleEndian.Uint32(h[8:])),
			va:  int64(binary.LittleEndian.Uint32(h[12:])),
			rsz: int64(binary.LittleEndian.Uint32(h[16:])),
			ptr: int64(binary.LittleEndian.Uint32(h[20:])),
		}
	}
	if falign != 0x200 {
		for _, s := range secs {
			if falign != 0 && s.rsz != 0 && s.ptr%falign != 0 && s.ptr%0x200 == 0 {
				falign = 0x200 // libclamav's "file alignment fallback mode"
				break
			}
		}
	}
	info := &exeInfo{sections: make([]exeSection, nsect)}
	rvas := make([]int64, nsect)
	for i, s := range secs {
		raw, rsz := alignDown(s.ptr, falign), alignUp(s.rsz, falign)
		if rsz != 0 {
			if raw >= size || s.ptr >= size {
				rsz = 0
			} else if raw+rsz > size {
				rsz = size - raw
			}
		}
		info.sections[i] = exeSection{raw: raw, rsz: rsz}
		rvas[i] = alignDown(s.va, salign)
	}
	// cli_rawaddr: an EP inside the headers is its own offset; otherwise
	// the last section holding it maps it.
	switch {
	case vep < hdrSize:
		if vep >= size {
			return nil, errExe
		}
		info.ep = vep
	default:
		found := false
		for i := nsect - 1; i >= 0; i-- {
			s := info.sections[i]
			if s.rsz != 0 && rvas[i] <= vep && s.rsz > vep-rvas[i] {
				info.ep = vep - rvas[i] + s.raw
				found = true
				break
			}
		}
		if !found {
			return nil, errExe
		}
	}
	return info, nil
}

func alignDown(o, a int64) int64 {
	if a == 0 {
		return o
	}
	return o / a * a
}

func alignUp(o, a int64) int64 {
	if a == 0 {
		return o
	}
	return (o + a - 1) / a * a
}

// parseELF follows libclamav's cli_elfheader: the entry point mapped to a
// file offset through the first program header covering it (0 when e_entry
// is 0), and the section headers' sh_offset and sh_size.
func parseELF(r io.ReaderAt, size int64) (*exeInfo, error) {
	id, err := readAt(r, 16, 0)
	if err != nil || string(id[:4]) != "\x7fELF" {
		return nil, errExe
	}
	var bo binary.ByteOrder
	switch id[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return nil, errExe
	}
	is64 := id[4] == 2
	if id[4] != 1 && !is64 {
		return nil, errExe
	}
	var (
		entry, phoff, shoff        uint64
		phentsize, phnum, shentsz  int
		shnum                      int
		hdrLen, wantPh, wantSh     = 52, 32, 40
		word                       = func(b []byte) uint64 { return uint64(bo.Uint32(b)) }
		half                       = func(b []byte) int { return int(bo.Uint16(b)) }
		phVaddr, phMemsz, phOffset int
		shOffset, shSize           int
	)
	if is64 {
		hdrLen, wantPh, wantSh = 64, 56, 64
		word = bo.Uint64
	}
	h, err := readAt(r, hdrLen, 0)
	if err != nil {
		return nil, errExe
	}
	if is64 {
		entry, phoff, shoff = word(h[24:]), word(h[32:]), word(h[40:])
		phentsize, phnum, shentsz, shnum = half(h[54:]), half(h[56:]), half(h[58:]), half(h[60:])
		phOffset, phVaddr, phMemsz = 8, 16, 40
		shOffset, shSize = 24, 32
	} else {
		entry, phoff, shoff = word(h[24:]), word(h[28:]), word(h[32:])
		phentsize, phnum, shentsz, shnum = half(h[42:]), half(h[44:]), half(h[46:]), half(h[48:])
		phOffset, phVaddr, phMemsz = 4, 8, 20
		shOffset, shSize = 16, 20
	}
	if phnum > maxELFHeaders || shnum > 256 {
		return nil, errExe
	}
	info := &exeInfo{}
	if phnum > 0 && entry != 0 {
		if phentsize != wantPh || phoff > uint64(size) {
			return nil, errExe
		}
		ph, err := readAt(r, phnum*wantPh, int64(phoff))
		if err != nil {
			return nil, errExe
		}
		found := false
		for i := 0; i < phnum; i++ {
			p := ph[i*wantPh:]
			va, msz, off := word(p[phVaddr:]), word(p[phMemsz:]), word(p[phOffset:])
			if va <= entry && va+msz > entry {
				info.ep = int64(entry - va + off)
				found = true
				break
			}
		}
		if !found {
			return nil, errExe
		}
	}
	if shnum > 0 {
		if shentsz != wantSh || shoff > uint64(size) {
			return nil, errExe
		}
		sh, err := readAt(r, shnum*wantSh, int64(shoff))
		if err != nil {
			return nil, errExe
		}
		for i := 0; i < shnum; i++ {
			s := sh[i*wantSh:]
			info.sections = append(info.sections, exeSection{raw: int64(word(s[shOffset:])), rsz: int64(word(s[shSize:]))})
		}
	}
	return info, nil
}

// parseMachO follows libclamav's cli_scanmacho: sections from LC_SEGMENT
// and LC_SEGMENT_64, sizes rounded up to their alignment. Like libclamav it
// takes an entry point only from a PowerPC thread state (srr0): for x86,
// x86-64 and ARM Mach-O files ClamAV's EP is 0, and so is ours, so that
// EP signatures match where ClamAV's do.
func parseMachO(r io.ReaderAt, size int64) (*exeInfo, error) {
	h, err := readAt(r, 28, 0)
	if err != nil {
		return nil, errExe
	}
	var (
		bo   binary.ByteOrder
		is64 bool
	)
	switch binary.BigEndian.Uint32(h) {
	case 0xfeedface:
		bo = binary.BigEndian
	case 0xcefaedfe:
		bo = binary.LittleEndian
	case 0xfeedfacf:
		bo, is64 = binary.BigEndian, true
	case 0xcffaedfe:
		bo, is64 = binary.LittleEndian, true
	default:
		return nil, errExe
	}
	cpu := bo.Uint32(h[4:])
	ncmds := int(bo.Uint32(h[16:]))
	if ncmds == 0 || ncmds > maxMachOCmds {
		return nil, errExe
	}
	at := int64(28)
	if is64 {
		at += 4
	}
	type sect struct{ rva, vsz, raw, rsz int64 }
	var (
		secs []sect
		ep   int64
	)
	for range ncmds {
		lc, err := readAt(r, 8, at)
		if err != nil {
			return nil, errExe
		}
		cmd, cmdsize := bo.Uint32(lc), int64(bo.Uint32(lc[4:]))
		switch {
		case (is64 && cmd == 0x19) || (!is64 && cmd == 0x1):
			// After cmd and cmdsize: 48 or 64 bytes of segment, nsects 8 from its end.
			segLen, sectLen := int64(48), int64(68)
			if is64 {
				segLen, sectLen = 64, 80
			}
			seg, err := readAt(r, int(segLen), at+8)
			if err != nil {
				return nil, errExe
			}
			nsects := int64(bo.Uint32(seg[segLen-8:]))
			if nsects > maxMachOSects {
				return nil, errExe
			}
			for j := range nsects {
				s, err := readAt(r, int(sectLen), at+8+segLen+j*sectLen)
				if err != nil {
					return nil, errExe
				}
				var x sect
				var align uint32
				if is64 {
					x = sect{rva: int64(bo.Uint64(s[32:])), vsz: int64(bo.Uint64(s[40:])), raw: int64(bo.Uint32(s[48:]))}
					align = bo.Uint32(s[52:])
				} else {
					x = sect{rva: int64(bo.Uint32(s[32:])), vsz: int64(bo.Uint32(s[36:])), raw: int64(bo.Uint32(s[40:]))}
					align = bo.Uint32(s[44:])
				}
				if align >= 32 {
					return nil, errExe
				}
				x.rsz = alignUp(x.vsz, 1<<align)
				secs = append(secs, x)
			}
		case cmd == 0x4 || cmd == 0x5: // LC_THREAD, LC_UNIXTHREAD
			switch cpu {
			case 18: // PowerPC: srr0 first in the thread state
				b, err := readAt(r, 4, at+16)
				if err != nil {
					return nil, errExe
				}
				ep = int64(bo.Uint32(b))
			case 18 | 0x01000000: // PowerPC 64
				b, err := readAt(r, 8, at+16)
				if err != nil {
					return nil, errExe
				}
				ep = int64(bo.Uint64(b))
			}
		}
		if cmdsize < 8 {
			return nil, errExe
		}
		at += cmdsize
	}
	info := &exeInfo{}
	for _, s := range secs {
		info.sections = append(info.sections, exeSection{raw: s.raw, rsz: s.rsz})
	}
	if ep != 0 && len(secs) > 0 {
		found := false
		for _, s := range secs {
			if s.rva <= ep && s.rva+s.vsz > ep {
				info.ep = ep - s.rva + s.raw
				found = true
				break
			}
		}
		if !found {
			return nil, errExe
		}
	}
	return info, nil
}
