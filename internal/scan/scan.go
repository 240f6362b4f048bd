package scan

import (
	"context"
	"os"
)

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
