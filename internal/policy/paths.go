package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/vigilsec/vigil/internal/answers"
)

// pathKind says what a path named in a policy is for.
type pathKind int

const (
	watchPath pathKind = iota
	databasePath
)

// pathRef is a path named in a policy, with where it is named.
type pathRef struct {
	kind  pathKind
	path  string
	rng   hcl.Range
	watch *Watch // the watch, for a watch path
}

// statTimeout bounds the looks at a policy's paths. The daemon loads the
// policy on its main loop at reload, and a path on a filesystem that does
// not answer (a hung NFS server) would hold it there: such a path gets
// no warning instead, and its stat is left to end on its own, as the
// daemon's own looks at watch paths are.
var statTimeout = time.Second

// stat follows links, as the watches and the database loader do.
// Tests replace it.
var stat = os.Stat

// checkPaths warns about the watch paths and databases that are not
// there. They are warnings, not errors: a watch is placed when its
// directory appears, and a missing database is skipped, so one policy
// serves hosts that differ. Only a path known not to exist, or a watch
// path known not to be a directory, is reported: any other error (no
// permission, say, when a user checks a policy that root runs) says
// nothing about what vigil will find.
func checkPaths(refs []pathRef) hcl.Diagnostics {
	infos := statAll(refs)
	var diags hcl.Diagnostics
	warn := func(r pathRef, summary, format string) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  summary,
			Detail:   fmt.Sprintf(format, r.path),
			Subject:  r.rng.Ptr(),
		})
	}
	var ws []*Watch
	for _, r := range refs {
		if r.watch != nil {
			ws = append(ws, r.watch)
		}
	}
	// The daemon keeps the first of two watches that differ but for a
	// symbolic link; Resolved decides which, here as there.
	_, dups := resolveWatches(ws, func(p string) (string, error) {
		if res, ok := infos[p]; ok && res.real != "" {
			return res.real, nil
		}
		return "", errUnresolved
	})
	dropped := make(map[*Watch]Duplicate, len(dups))
	for _, d := range dups {
		dropped[d.Dropped] = d
	}
	for _, r := range refs {
		if d, ok := dropped[r.watch]; ok {
			diags = append(diags, d.diagnostic())
			continue
		}
		res, ok := infos[r.path]
		switch {
		case !ok: // no answer in time
		case notExist(res.err) && r.kind == watchPath:
			warn(r, "Watch path does not exist",
				"%q does not exist; the watch is placed when the directory appears.")
		case notExist(res.err):
			warn(r, "Database path does not exist",
				"%q does not exist; it is skipped and the other databases are loaded (EICAR is detected either way).")
		case res.err == nil && r.kind == watchPath && !res.info.IsDir():
			warn(r, "Watch path is not a directory",
				"%q is not a directory; the watch protects nothing until a directory is there.")
		}
	}
	return diags
}

func notExist(err error) bool {
	// ENOTDIR: a component of the path is a file, so the path is not there.
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

type statResult struct {
	info fs.FileInfo
	err  error
	real string // a watch path without links, as the daemon resolves it; "" if unknown
}

// errUnresolved is a path whose real path is unknown: it is kept as written.
var errUnresolved = errors.New("not resolved")

// statAll stats each path at once, and resolves each watch path that
// exists, and returns the answers that came within statTimeout.
func statAll(refs []pathRef) map[string]statResult {
	paths := make([]string, len(refs))
	watched := make(map[string]bool, len(refs))
	for i, r := range refs {
		paths[i] = r.path
		watched[r.path] = watched[r.path] || r.watch != nil
	}
	st := stat // read here: a late call outlives this Load
	return answers.Within(paths, statTimeout, func(p string) statResult {
		fi, err := st(p)
		r := statResult{info: fi, err: err}
		if err == nil && watched[p] {
			r.real, _ = filepath.EvalSymlinks(p)
		}
		return r
	}, nil)
}
