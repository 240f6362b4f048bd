package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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
		state := probeState(p.Err, root)
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, state)
		unknown = unknown || strings.HasPrefix(state, "unknown")
		if p.Err == nil && chosen == dirtrace.HookNone {
			chosen = dirtrace.Hook(strings.TrimPrefix(p.Name, "eBPF directory events, hook "))
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

// probeState says what a probe found. Without root, a probe that needs
// privileges (fanotify groups, eBPF maps) fails with EPERM whatever the
// kernel offers: that tells nothing about the kernel.
func probeState(err error, root bool) string {
	switch {
	case err == nil:
		return "yes"
	case !root && errors.Is(err, unix.EPERM) && !errors.Is(err, features.ErrNotSupported):
		return "unknown, run as root to tell: " + err.Error()
	}
	return "no: " + err.Error()
}
