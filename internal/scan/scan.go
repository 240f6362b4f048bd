package scan

import (
	"context"
	"io"
	"os"
)

// TooSmall is the size up to which a file holds nothing an engine finds:
// libclamav, clamd's engine and the one the built-in engine follows, scans
// nothing in a file of 5 bytes or fewer (cli_magic_scan: "File is too
// small"), hashes included. The on-access loop allows such files without
// asking the engine, which keeps empty files usable while clamd is down.
const TooSmall = 5

// Health is implemented by engines that can tell whether they scan now;
// clamd's fails while clamd does not answer PING.
type Health interface {
	Health() error
}

// HealthOf returns e's Health, nil when e cannot tell.
func HealthOf(e Engine) error {
	if h, ok := e.(Health); ok {
		return h.Health()
	}
	return nil
}

// Close releases what e holds, if it holds anything (an io.Closer):
// clamd's pooled sessions and its health check. Called once nothing scans
// with e any more.
func Close(e Engine) error {
	if c, ok := e.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Result is an engine's finding for one file.
type Result struct {
	Infected  bool
	Signature string // set when Infected
}

// Engine scans an open file. Scan reads through f (never by re-opening its
// path), honours ctx's deadline, and is safe for concurrent use.
type Engine interface {
	Scan(ctx context.Context, f *os.File) (Result, error)
	// Name is the engine's name in logs and alerts ("builtin", "clamd").
	Name() string
	// Version identifies the signature set; a change invalidates cached
	// clean verdicts.
	Version() string
}
