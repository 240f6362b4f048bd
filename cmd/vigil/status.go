package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"text/tabwriter"

	"github.com/vigilsec/vigil/internal/daemon"
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "vigil status [--json] [--socket PATH]", stderr)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	socket := fs.String("socket", defaultSocket, "control socket `path`")
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	st, err := daemon.QueryStatus(*socket)
	if err != nil {
		if *asJSON {
			json.NewEncoder(stdout).Encode(map[string]any{"ready": false, "error": err.Error()})
		}
		fmt.Fprintf(stderr, "vigil status: %v\n", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	} else {
		printStatus(stdout, st)
	}
	if !st.Ready {
		return 1
	}
	return 0
}

func printStatus(w io.Writer, st *daemon.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	state := "starting (placing watches)"
	if st.Ready {
		state = "ready"
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "pid\t%d\n", st.PID)
	fmt.Fprintf(tw, "started\t%s\n", st.Started.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(tw, "policy\t%s\n", st.Policy)
	fmt.Fprintf(tw, "engine\t%s (databases %.12s)\n", st.Engine, st.DBVersion)
	if st.EngineError != "" {
		fmt.Fprintf(tw, "engine error\t%s\n", st.EngineError)
	}
	if st.DBReport != "" {
		fmt.Fprintf(tw, "databases\t%s\n", st.DBReport)
	}
	fmt.Fprintf(tw, "hook\t%s\n", st.Hook)
	if len(st.FilesystemWatches) == 0 {
		fmt.Fprintf(tw, "watched dirs\t%d\n", st.WatchedDirs)
	} else {
		fmt.Fprintf(tw, "watched dirs\t%d (tree mode; filesystem mode marks whole filesystems)\n", st.WatchedDirs)
	}
	for _, w := range st.Watches {
		if slices.Contains(st.FilesystemWatches, w) {
			fmt.Fprintf(tw, "watch\t%s (filesystem mode)\n", w)
		} else {
			fmt.Fprintf(tw, "watch\t%s\n", w)
		}
	}
	names := make([]string, 0, len(st.Counters))
	for n := range st.Counters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t%d\n", n, st.Counters[n])
	}
	tw.Flush()
}

func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", "vigil reload [--socket PATH]", stderr)
	socket := fs.String("socket", defaultSocket, "control socket `path`")
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	// 1 only when the daemon refused: then the previous policy is in force
	// for sure. Without an answer, that is unknown.
	var refused *daemon.RefusedError
	switch err := daemon.Reload(*socket); {
	case errors.As(err, &refused) && refused.Diagnostics != "":
		io.WriteString(stderr, refused.Diagnostics)
		fmt.Fprintf(stderr, "vigil reload: %v (the previous policy stays in force)\n", err)
		return 1
	case errors.As(err, &refused):
		fmt.Fprintf(stderr, "vigil reload: %v (the previous policy stays in force; the daemon's log has the details)\n", err)
		return 1
	case errors.Is(err, daemon.ErrUnreachable):
		fmt.Fprintf(stderr, "vigil reload: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "vigil reload: %v (whether the new policy took is unknown; the daemon's log tells)\n", err)
		return 2
	}
	fmt.Fprintln(stdout, "reloaded")
	return 0
}

func cmdMetrics(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("metrics", "vigil metrics [--socket PATH]", stderr)
	socket := fs.String("socket", defaultSocket, "control socket `path`")
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	if err := daemon.Metrics(*socket, stdout); err != nil {
		fmt.Fprintf(stderr, "vigil metrics: %v\n", err)
		return 2
	}
	return 0
}
