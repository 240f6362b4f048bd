package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/dirtrace"
	"github.com/vigilsec/vigil/internal/features"
)

func cmdFeatures(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("features", "vigil features", stderr)
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	root := os.Geteuid() == 0
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel\t%s\n", features.Kernel())
	code := 0
	for _, p := range features.All() {
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, probeState(p.Err, root))
	}
	if err := features.FanotifyPermission(); err != nil {
		code = 1 // vigil run cannot work here
	}
	if n, err := features.InotifyWatchLimit(); err == nil {
		fmt.Fprintf(tw, "inotify watch limit (fs.inotify.max_user_watches)\t%d\n", n)
	}
	chosen, unknown := dirtrace.HookNone, false
	for _, p := range dirtrace.Probe() {
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, probeState(p.Err, root))
		unknown = unknown || untold(p.Err, root)
		if p.Err == nil && chosen == dirtrace.HookNone {
			chosen = p.Hook
		}
	}
	if chosen == dirtrace.HookNone && unknown {
		fmt.Fprintf(tw, "directory events\tunknown (run as root to tell the hook), with inotify beside it\n")
	} else {
		fmt.Fprintf(tw, "directory events\thook=%s, with inotify beside it\n", chosen)
	}
	tw.Flush()
	return code
}

// probeState says what a probe found.
func probeState(err error, root bool) string {
	switch {
	case err == nil:
		return "yes"
	case untold(err, root):
		return "unknown, run as root to tell: " + err.Error()
	}
	return "no: " + err.Error()
}

// untold reports whether a probe's failure tells nothing about the
// kernel: without root, a probe that needs privileges (fanotify groups,
// eBPF maps) fails with EPERM whatever the kernel offers.
func untold(err error, root bool) bool {
	return err != nil && !root && errors.Is(err, unix.EPERM) && !errors.Is(err, features.ErrNotSupported)
}
