package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/vigilsec/vigil/internal/dirtrace"
	"github.com/vigilsec/vigil/internal/features"
)

func cmdFeatures(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("features", "vigil features", stderr)
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "kernel\t%s\n", features.Kernel())
	code := 0
	for _, p := range features.All() {
		state := "yes"
		if p.Err != nil {
			state = "no: " + p.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, state)
	}
	if err := features.FanotifyPermission(); err != nil {
		code = 1 // vigil run cannot work here
	}
	if n, err := features.InotifyWatchLimit(); err == nil {
		fmt.Fprintf(tw, "inotify watch limit (fs.inotify.max_user_watches)\t%d\n", n)
	}
	chosen := dirtrace.HookNone
	for _, p := range dirtrace.Probe() {
		state := "yes"
		if p.Err != nil {
			state = "no: " + p.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\n", p.Name, state)
		if p.Err == nil && chosen == dirtrace.HookNone {
			chosen = dirtrace.Hook(strings.TrimPrefix(p.Name, "eBPF directory events, hook "))
		}
	}
	fmt.Fprintf(tw, "directory events\thook=%s, with inotify beside it\n", chosen)
	tw.Flush()
	return code
}
