package clamav

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/vigilsec/vigil/internal/scan"
)

// EICAR is the anti-malware test file (without trailing whitespace).
const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

// EICARSignature is the name under which EICAR is reported, as ClamAV does.
const EICARSignature = "Eicar-Test-Signature"

// eicarMax is the longest EICAR file the standard allows: the string, then
// whitespace, 128 bytes in all.
const eicarMax = 128

// chunk is the read size: large enough that syscalls cost little against
// hashing, small enough that a deadline is noticed quickly.
const chunk = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}

var _ scan.Engine = (*Engine)(nil)

// Name implements scan.Engine.
func (e *Engine) Name() string { return "builtin" }

// Version implements scan.Engine: a digest of the loaded signatures and the
// built-in rules.
func (e *Engine) Version() string { return e.version }

// Scan implements scan.Engine. It reads f with ReadAt only, so f's offset
// does not matter and is left alone. Only regular files are read; anything
// else is clean. The file is read once, in chunks: hashes are computed only
// when a signature of the file's size (or of any size) exists, and body
// signatures see a window of a chunk plus the longest part's reach, so a
// scan's memory does not grow with the file. ctx is checked between chunks.
//
// An allow list entry clears any detection. Otherwise the name reported is
// EICAR's, else a file hash's, else a PE section hash's, else the first
// body signature found in file order, else, for a text file, the first
// found in its normalised text (see textScan), else what a member of the
// file finds when it is an archive or a mail (see scanArchive).
func (e *Engine) Scan(ctx context.Context, f *os.File) (scan.Result, error) {
	if err := ctx.Err(); err != nil {
		return scan.Result{}, fmt.Errorf("scan %s: %w", f.Name(), err)
	}
	fi, err := f.Stat()
	if err != nil {
		return scan.Result{}, fmt.Errorf("scan: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return scan.Result{}, nil
	}
	return e.scanFile(ctx, f, fi.Size(), f.Name(), newUnpacking(ctx), 0)
}

// scanFile scans f's first size bytes, then, when they are an archive,
// what it holds; depth is how many archives f is in. name is for errors.
func (e *Engine) scanFile(ctx context.Context, f io.ReaderAt, size int64, name string, u *unpacking, depth int) (scan.Result, error) {
	res, kind, err := e.scan(ctx, f, size, name)
	if err != nil || res.Infected || kind == notArchive || depth == maxArchiveDepth {
		return res, err
	}
	return e.scanArchive(ctx, f, size, name, kind, u, depth+1)
}

// scan reads f's first size bytes, and says which archive they are, if
// one (notArchive when an allow list entry clears the file, members and
// all); name is for errors.
func (e *Engine) scan(ctx context.Context, f io.ReaderAt, size int64, name string) (scan.Result, archiveKind, error) {
	if size <= scan.TooSmall { // no hash, body or archive check, for a file or a member
		return scan.Result{}, notArchive, nil
	}
	need := e.block.kinds(size)
	if need == 0 && e.body == nil && e.sections.empty() && size > eicarMax {
		// Nothing to match but what an archive may hold: its head says.
		bp := bufPool.Get().(*[]byte)
		n, err := f.ReadAt((*bp)[:min(size, archiveHead)], 0)
		kind := archiveOf((*bp)[:n])
		bufPool.Put(bp)
		if err != nil && !errors.Is(err, io.EOF) {
			return scan.Result{}, notArchive, fmt.Errorf("scan: %w", err)
		}
		if kind == notArchive || e.allow.kinds(size) == 0 {
			return scan.Result{}, kind, nil
		}
		// An allow list entry for the archive would clear its members.
	}

	pool, back, fwd := &bufPool, 0, 0
	if e.body != nil {
		pool, back, fwd = e.bufs, e.body.back, e.body.fwd
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp

	var (
		hs      [numKinds]hash.Hash
		eicar   bool
		class   fileClass
		kind    archiveKind
		bs      *bodyScan
		bodyHit = -1
		ts      *textScan // the normalised pass, for a text file
		textHit = -1
		// buf[:n] holds the file's bytes from base; off is base+n.
		base, off int64
		n         int
		from      int64 // the next anchor position for the body scan
	)
	defer func() {
		if bs != nil {
			bs.release()
		}
		if ts != nil {
			ts.release()
		}
	}()
	// Read at most the size seen by Stat: a file growing under us must not
	// keep the scan going.
	for off < size {
		if off > 0 {
			if err := ctx.Err(); err != nil {
				return scan.Result{}, notArchive, fmt.Errorf("scan %s: %w", name, err)
			}
		}
		rn, err := f.ReadAt(buf[n:n+int(min(int64(len(buf)-n), size-off))], off)
		fresh := buf[n : n+rn]
		if off == 0 {
			eicar = isEICAR(fresh)
			class = classOf(fresh)
			kind = archiveOf(fresh)
			bs = e.body.start(class, size, f)
			if class == classOther {
				ts = e.body.startText(size, fresh)
			}
			// An allow list entry can clear any detection, EICAR's and an
			// archive's members' too.
			allow := e.allow.kinds(size)
			if !eicar && need == 0 && bs == nil && ts == nil && (class != classPE || e.sections.empty()) &&
				(kind == notArchive || allow == 0) {
				return scan.Result{}, kind, nil
			}
			need |= allow
			for k := range numKinds {
				if need.has(k) {
					hs[k] = newHash(k)
				}
			}
		}
		for _, h := range hs {
			if h != nil {
				h.Write(fresh)
			}
		}
		n += rn
		off += int64(rn)
		if err != nil && !errors.Is(err, io.EOF) {
			return scan.Result{}, notArchive, fmt.Errorf("scan: %w", err)
		}
		eof := off >= size || err != nil || rn == 0 // EOF or rn == 0: the file shrank

		if ts != nil {
			ts.feed(fresh)
			if ts.dropped() {
				ts.release()
				ts = nil
			} else if ts.settled() && bs == nil && need == 0 {
				break
			}
		}

		if bs != nil {
			to := off
			if !eof {
				to = off - int64(fwd) + 1 // every part's reach must be in the window
			}
			if to > from {
				if sig := bs.scan(buf[:n], base, from, to); sig >= 0 {
					bodyHit = sig
					bs.release()
					bs = nil
					if ts != nil { // the raw scan's name is the one reported
						ts.release()
						ts = nil
					}
					if need == 0 {
						break
					}
				}
				from = to
			}
		}
		if bs != nil {
			keep := max(base, from-int64(back))
			n = copy(buf, buf[keep-base:n])
			base = keep
		} else {
			base, n = off, 0
		}
		if eof {
			break
		}
	}
	if off == 0 {
		return scan.Result{}, notArchive, nil
	}
	if ts != nil {
		sig, err := ts.finish(ctx.Err)
		if err != nil {
			return scan.Result{}, notArchive, fmt.Errorf("scan %s: %w", name, err)
		}
		textHit = sig
	}

	var (
		sums    [numKinds][]byte
		storage [numKinds][sha256.Size]byte
	)
	for k, h := range hs {
		if h != nil {
			sums[k] = h.Sum(storage[k][:0])
		}
	}
	if _, ok := e.allow.lookup(&sums, off); ok {
		return scan.Result{}, notArchive, nil
	}
	if eicar {
		return scan.Result{Infected: true, Signature: EICARSignature}, kind, nil
	}
	if name, ok := e.block.lookup(&sums, off); ok {
		return scan.Result{Infected: true, Signature: name}, kind, nil
	}
	if class == classPE && !e.sections.empty() {
		sig, err := e.scanSections(ctx, f, off, name)
		if err != nil {
			return scan.Result{}, notArchive, err
		}
		if sig != "" {
			return scan.Result{Infected: true, Signature: sig}, kind, nil
		}
	}
	if bodyHit >= 0 {
		return scan.Result{Infected: true, Signature: e.body.sigs[bodyHit].name}, kind, nil
	}
	if textHit >= 0 {
		return scan.Result{Infected: true, Signature: e.body.sigs[textHit].name}, kind, nil
	}
	return scan.Result{}, kind, nil
}

// scanSections checks a PE file's sections against the .mdb/.msb hashes,
// hashing only sections of a size some signature has.
func (e *Engine) scanSections(ctx context.Context, f io.ReaderAt, size int64, name string) (string, error) {
	x, err := parsePE(f, size)
	if err != nil {
		return "", nil // not a PE we can read: no section to match
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for _, sec := range x.sections {
		need := e.sections.kinds(sec.rsz)
		if sec.rsz == 0 || need == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("scan %s: %w", name, err)
		}
		var hs [numKinds]hash.Hash
		ws := make([]io.Writer, 0, numKinds)
		for k := range numKinds {
			if need.has(k) {
				hs[k] = newHash(k)
				ws = append(ws, hs[k])
			}
		}
		if _, err := io.CopyBuffer(io.MultiWriter(ws...), io.NewSectionReader(f, sec.raw, sec.rsz), *bp); err != nil {
			return "", fmt.Errorf("scan: %w", err)
		}
		var (
			sums    [numKinds][]byte
			storage [numKinds][sha256.Size]byte
		)
		for k, h := range hs {
			if h != nil {
				sums[k] = h.Sum(storage[k][:0])
			}
		}
		if name, ok := e.sections.lookup(&sums, sec.rsz); ok {
			return name, nil
		}
	}
	return "", nil
}

func newHash(k kind) hash.Hash {
	switch k {
	case kindMD5:
		return md5.New()
	case kindSHA1:
		return sha1.New()
	default:
		return sha256.New()
	}
}

// isEICAR reports whether b is a whole EICAR test file: the string, then
// only the whitespace the EICAR standard allows, 128 bytes at most.
func isEICAR(b []byte) bool {
	if len(b) < len(EICAR) || len(b) > eicarMax || string(b[:len(EICAR)]) != EICAR {
		return false
	}
	for _, c := range b[len(EICAR):] {
		switch c {
		case ' ', '\t', '\r', '\n', 0x1a:
		default:
			return false
		}
	}
	return true
}
