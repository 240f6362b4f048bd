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
// else is clean. Hashes are computed only when a signature of the file's
// size (or of any size) exists, and then all needed kinds in one pass.
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
	size := fi.Size()
	need := e.block.kinds(size)
	if need == 0 && size > eicarMax {
		return scan.Result{}, nil
	}

	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp

	var (
		hs    [numKinds]hash.Hash
		off   int64
		eicar bool
	)
	// Read at most the size seen by Stat: a file growing under us must not
	// keep the scan going.
	for off < size {
		if off > 0 {
			if err := ctx.Err(); err != nil {
				return scan.Result{}, fmt.Errorf("scan %s: %w", f.Name(), err)
			}
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if off == 0 {
			eicar = isEICAR(buf[:n])
			if !eicar && need == 0 {
				return scan.Result{}, nil
			}
			// An allow list entry can clear any detection, EICAR's too.
			need |= e.allow.kinds(size)
			for k := range numKinds {
				if need.has(k) {
					hs[k] = newHash(k)
				}
			}
		}
		for _, h := range hs {
			if h != nil {
				h.Write(buf[:n])
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			break // the file shrank
		}
		if err != nil {
			return scan.Result{}, fmt.Errorf("scan: %w", err)
		}
	}
	if off == 0 {
		return scan.Result{}, nil
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
		return scan.Result{}, nil
	}
	if eicar {
		return scan.Result{Infected: true, Signature: EICARSignature}, nil
	}
	if name, ok := e.block.lookup(&sums, off); ok {
		return scan.Result{Infected: true, Signature: name}, nil
	}
	return scan.Result{}, nil
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
