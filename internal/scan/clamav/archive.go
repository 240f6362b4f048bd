package clamav

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan"
)

// libclamav scans what an archive holds as files of their own (clamd's
// and clamscan's ScanArchive, on by default): EICAR in a zip is found, as
// is a signature's match in a member of a tarball. The builtin engine
// does the same for the archives Go's standard library reads: zip, gzip,
// bzip2 and tar, nested. Bounds like libclamav's keep a hostile archive
// (a zip bomb) from costing more than a file of its size would; what lies
// beyond them is not scanned, as there.
const (
	// maxArchiveDepth bounds archives in archives (clamd's MaxRecursion: 17).
	maxArchiveDepth = 8
	// maxArchiveMembers bounds the members scanned for one file (MaxFiles: 10000).
	maxArchiveMembers = 10000
	// maxUnpacked bounds the bytes unpacked for one file, members of
	// members included (MaxScanSize: 400 MB); a member unpacked past it is
	// scanned as far as it was unpacked.
	maxUnpacked = 128 << 20
	// maxZipDirectory bounds the bytes of a zip's central directory that
	// are read: archive/zip holds every entry it lists in memory. A
	// directory of 10,000 entries with long names takes about 1.5 MiB.
	maxZipDirectory = 4 << 20
	// inMemory is the size up to which a member is unpacked to memory;
	// a larger one goes to an anonymous file (memfd), kept off the heap.
	inMemory = 1 << 20
)

// archiveKind is what archive a file is, by its first bytes.
type archiveKind uint8

const (
	notArchive archiveKind = iota
	archiveZip
	archiveGzip
	archiveBzip2
	archiveTar
	archiveFat  // a universal Mach-O: its slices are scanned as files
	archiveMail // a mail: its parts are scanned as files
)

// archiveHead is how much of a file archiveOf needs: tar's magic ends at
// byte 263, a mail's signatures reach further (see isMail).
const archiveHead = mailHead

func archiveOf(head []byte) archiveKind {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return archiveZip
	case bytes.HasPrefix(head, []byte("\x1f\x8b\x08")):
		return archiveGzip
	case len(head) >= 10 && string(head[:3]) == "BZh" && '1' <= head[3] && head[3] <= '9' &&
		string(head[4:10]) == "1AY&SY":
		return archiveBzip2
	case len(head) >= 263 && string(head[257:262]) == "ustar":
		return archiveTar
	case isFat(head):
		return archiveFat
	case isMail(head):
		return archiveMail
	}
	return notArchive
}

// unpacking is what one file's scan may still unpack, and until when.
type unpacking struct {
	bytes   int64
	members int
	until   time.Time // zero: no bound but the context's
}

// spent reports whether u allows no more members.
func (u *unpacking) spent() bool { return u.members == 0 || u.bytes <= 0 }

// newUnpacking bounds the unpacking of a file scanned under ctx. With a
// deadline, unpacking stops halfway to it: what was unpacked by then is
// scanned, and the file has its verdict in time rather than on_error's at
// the deadline. bzip2 unpacks at about 15 MB/s here, so 128 MiB of it
// would outlast the default scan_timeout.
func newUnpacking(ctx context.Context) *unpacking {
	u := &unpacking{bytes: maxUnpacked, members: maxArchiveMembers}
	if d, ok := ctx.Deadline(); ok {
		u.until = time.Now().Add(time.Until(d) / 2)
	}
	return u
}

// scanArchive scans the members of f, an archive of kind, each with
// scanFile at depth. An archive that does not read as its kind (corrupt,
// truncated, encrypted, a method Go lacks) is scanned as far as it reads:
// it is a file, not a failure of the engine. Only the context and the
// engine's own failures are errors.
func (e *Engine) scanArchive(ctx context.Context, f io.ReaderAt, size int64, name string,
	kind archiveKind, u *unpacking, depth int) (scan.Result, error) {
	member := func(r io.Reader, inner string) (scan.Result, error) {
		inner = path.Join(name, inner)
		return scanUnpacked(ctx, r, inner, u, func(data io.ReaderAt, n int64) (scan.Result, error) {
			return e.scanFile(ctx, data, n, inner, u, depth)
		})
	}
	whole := io.NewSectionReader(f, 0, size)
	switch kind {
	case archiveZip:
		dir := &boundedReaderAt{r: f, left: maxZipDirectory}
		zr, err := zip.NewReader(dir, size)
		if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // names like ../x are scanned too
			return scan.Result{}, nil
		}
		dir.left = -1
		for _, zf := range zr.File {
			if zf.Mode().IsDir() || zf.Flags&0x1 != 0 { // encrypted
				continue
			}
			rc, err := zf.Open()
			if err != nil {
				continue
			}
			res, err := member(rc, zf.Name)
			rc.Close()
			if err != nil || res.Infected {
				return res, err
			}
		}
	case archiveGzip:
		zr, err := gzip.NewReader(whole)
		if err != nil {
			return scan.Result{}, nil
		}
		defer zr.Close()
		return member(zr, "gunzip")
	case archiveBzip2:
		return member(bzip2.NewReader(whole), "bunzip2")
	case archiveTar:
		tr := tar.NewReader(whole)
		for {
			hdr, err := tr.Next()
			if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
				break
			}
			if !hdr.FileInfo().Mode().IsRegular() {
				continue
			}
			res, err := member(tr, hdr.Name)
			if err != nil || res.Infected {
				return res, err
			}
		}
	case archiveFat:
		return e.scanSlices(ctx, f, size, name, u, depth)
	case archiveMail:
		return e.scanMail(ctx, f, size, name, u, depth)
	}
	return scan.Result{}, nil
}

// scanSlices scans each architecture's slice of a universal (fat) Mach-O
// file as a file of its own, as libclamav's cli_scanmacho_unibin does:
// its hashes, and target 9 signatures with offsets (EP, sections, EOF)
// relative to the slice. As there, a slice of size 0 runs to the end of
// the file, one running past the end is cut there, one starting past it
// is skipped, and a table of architectures cut short ends the scan.
// Slices are read in place, not unpacked, but count against what u may
// still unpack: 31 slices each the whole file would scan it 31 times.
func (e *Engine) scanSlices(ctx context.Context, f io.ReaderAt, size int64, name string,
	u *unpacking, depth int) (scan.Result, error) {
	var hdr [8]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return scan.Result{}, nil
	}
	n := min(binary.BigEndian.Uint32(hdr[4:]), maxFatArchs)
	for i := range n {
		var arch [20]byte // cputype, cpusubtype, offset, size, align
		if _, err := f.ReadAt(arch[:], 8+int64(i)*20); err != nil {
			break
		}
		off, sz := int64(binary.BigEndian.Uint32(arch[8:])), int64(binary.BigEndian.Uint32(arch[12:]))
		if off >= size {
			continue
		}
		if sz == 0 || sz > size-off {
			sz = size - off
		}
		if u.spent() {
			break
		}
		res, err := e.scanInPlace(ctx, f, off, sz, path.Join(name, fmt.Sprintf("slice%d", i)), u, depth)
		if err != nil || res.Infected {
			return res, err
		}
	}
	return scan.Result{}, nil
}

// scanInPlace scans f's size bytes from off, a member named name, with
// scanFile at depth: read in place, not unpacked, but counted against u
// as if unpacked.
func (e *Engine) scanInPlace(ctx context.Context, f io.ReaderAt, off, size int64, name string,
	u *unpacking, depth int) (scan.Result, error) {
	if u.spent() {
		return scan.Result{}, nil
	}
	if err := ctx.Err(); err != nil {
		return scan.Result{}, fmt.Errorf("scan %s: %w", name, err)
	}
	u.members--
	size = min(size, u.bytes)
	u.bytes -= size
	return e.scanFile(ctx, io.NewSectionReader(f, off, size), size, name, u, depth)
}

// scanUnpacked unpacks r, a member named name, and scans it with scanIt;
// nothing, once u is spent.
func scanUnpacked(ctx context.Context, r io.Reader, name string, u *unpacking,
	scanIt func(data io.ReaderAt, n int64) (scan.Result, error)) (scan.Result, error) {
	if u.spent() {
		return scan.Result{}, nil
	}
	u.members--
	data, n, done, err := unpack(ctx, r, u)
	if err != nil {
		return scan.Result{}, fmt.Errorf("scan %s: %w", name, err)
	}
	defer done()
	return scanIt(data, n)
}

// unpack reads r, up to what u may still unpack, into memory or, past
// inMemory, an anonymous file, and returns it with its size and what
// releases it. A read error other than the context's ends the member
// where it occurs: a corrupt member is scanned as far as it unpacked.
func unpack(ctx context.Context, r io.Reader, u *unpacking) (io.ReaderAt, int64, func(), error) {
	r = io.LimitReader(unpackReader{ctx, u, r}, u.bytes)
	b, err := io.ReadAll(io.LimitReader(r, inMemory))
	if ctx.Err() != nil {
		return nil, 0, nil, ctx.Err()
	}
	if err != nil || len(b) < inMemory {
		u.bytes -= int64(len(b))
		return bytes.NewReader(b), int64(len(b)), func() {}, nil
	}
	fd, err := unix.MemfdCreate("vigil-member", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("unpack: %w", err)
	}
	mf := os.NewFile(uintptr(fd), "vigil-member")
	n, err := spill(mf, b, r)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		mf.Close()
		return nil, 0, nil, err
	}
	u.bytes -= n
	return mf, n, func() { mf.Close() }, nil
}

// spill writes head, then what r gives until it ends or fails, to f, and
// returns how much it wrote; only f's errors are errors.
func spill(f *os.File, head []byte, r io.Reader) (int64, error) {
	if _, err := f.Write(head); err != nil {
		return 0, fmt.Errorf("unpack: %w", err)
	}
	n := int64(len(head))
	buf := head[:cap(head)]
	for {
		rn, rerr := r.Read(buf)
		if rn > 0 {
			if _, err := f.Write(buf[:rn]); err != nil {
				return 0, fmt.Errorf("unpack: %w", err)
			}
			n += int64(rn)
		}
		if rerr != nil {
			return n, nil
		}
	}
}

// unpackReader is r, failing once ctx is done, and ending, with nothing
// more to unpack for the file, once u's time is up.
type unpackReader struct {
	ctx context.Context
	u   *unpacking
	r   io.Reader
}

var errUnpackTime = errors.New("unpacking time is up")

func (c unpackReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if !c.u.until.IsZero() && time.Now().After(c.u.until) {
		c.u.members = 0
		return 0, errUnpackTime
	}
	return c.r.Read(p)
}

// boundedReaderAt is r that fails once left bytes were read, unless left
// is negative.
type boundedReaderAt struct {
	r    io.ReaderAt
	left int64
}

var errBound = errors.New("read bound reached")

func (b *boundedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if b.left >= 0 {
		if int64(len(p)) > b.left {
			return 0, errBound
		}
		b.left -= int64(len(p))
	}
	return b.r.ReadAt(p, off)
}
