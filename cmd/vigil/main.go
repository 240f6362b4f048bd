// Command vigil is an on-access malware scanner: it answers fanotify
// permission events for the trees a policy watches and denies infected
// files.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/daemon"
	"github.com/vigilsec/vigil/internal/dirtrace"
	"github.com/vigilsec/vigil/internal/policy"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// started is when the process started, near enough: package variables are
// set after the runtime's and the libraries' initialisation, a few
// milliseconds in.
var started = time.Now()

const (
	defaultPolicy = "/etc/vigil/policy.hcl"
	defaultSocket = "/run/vigil/vigil.sock"
)

const usage = `vigil: on-access malware scanning for Linux

Usage:
  vigil run    [--policy FILE] [--log-format text|json] [--log-level LEVEL] [--hook HOOK]
  vigil scan   [--policy FILE | --db PATH ...] [--json] [--exclude GLOB ...] [--follow] [--report] PATH ...
  vigil policy check FILE ...
  vigil status [--json] [--socket PATH]
  vigil reload [--socket PATH]
  vigil metrics [--socket PATH]
  vigil quarantine list|restore|delete [--dir DIR | --policy FILE] ...
  vigil features
  vigil version

Commands:
  run      watch the policy's trees and deny infected files (needs root)
  scan     scan files and directories once; exit 0 clean, 1 infected, 2 error
  policy   check policy files; exit 0 valid, 1 invalid
  status   ask the running daemon; exit 0 when it is up and ready
  reload   have the daemon load its policy and databases again; exit 0 done,
           1 refused (the previous policy stays in force), 2 no daemon or no answer
  metrics  print the daemon's Prometheus metrics
  quarantine  list, restore or delete quarantined files
  features what this kernel offers vigil, and the hooks it would choose
  version  print the version

Run 'vigil COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "scan":
		return cmdScan(rest, stdout, stderr)
	case "policy":
		return cmdPolicy(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "quarantine":
		return cmdQuarantine(rest, stdout, stderr)
	case "reload":
		return cmdReload(rest, stdout, stderr)
	case "metrics":
		return cmdMetrics(rest, stdout, stderr)
	case "features":
		return cmdFeatures(rest, stdout, stderr)
	case "version":
		return cmdVersion(rest, stdout, stderr)
	case "--version":
		printVersion(stdout)
		return 0
	case "help", "-h", "-help", "--help":
		if cmd == "help" && len(rest) > 0 && rest[0] != "help" {
			// vigil help COMMAND is COMMAND --help.
			return run(append(slices.Clone(rest), "--help"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "vigil: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// newFlags returns a flag set whose usage is the command's synopsis and
// its flags; parse it with parseArgs or parseFlags.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs, "Usage: "+synopsis+"\n") }
	return fs
}

// printUsage writes head to fs's output, then the flags, if the command
// has any.
func printUsage(fs *flag.FlagSet, head string) {
	io.WriteString(fs.Output(), head)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
}

// parseArgs parses a command's arguments with fs, flags wherever they
// stand, and returns the positional ones: see parseInterspersed and
// parseFlags.
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (pos []string, code int, ok bool) {
	code, ok = parseFlags(fs, stdout, func() (err error) {
		pos, err = parseInterspersed(fs, args)
		return err
	})
	return pos, code, ok
}

// parseInterspersed parses flags wherever they stand, so that
// "scan /srv --json" works as "scan --json /srv", as clamscan takes it;
// "--" ends flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil // Parse consumed the "--"
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseNoArgs is parseArgs for a command that takes no positional
// arguments: one is a usage error.
func parseNoArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, ok bool) {
	pos, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		fmt.Fprintf(fs.Output(), "vigil %s: unexpected argument %q\n\n", fs.Name(), pos[0])
		fs.Usage()
		return 2, false
	}
	return 0, true
}

// parseFlags runs parse (fs.Parse, or a wrapper of it) holding back what
// fs prints meanwhile, then sends it where it belongs. Asking for help is
// not an error: after -h or --help the usage goes to stdout, exit 0; after
// a bad flag the error and the usage go to stderr, exit 2. ok is false
// in both cases: the command stops there with code.
func parseFlags(fs *flag.FlagSet, stdout io.Writer, parse func() error) (code int, ok bool) {
	stderr := fs.Output()
	var held bytes.Buffer
	fs.SetOutput(&held)
	err := parse()
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		stdout.Write(held.Bytes())
		return 0, false
	case err != nil:
		stderr.Write(held.Bytes())
		return 2, false
	}
	return 0, true
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "vigil run [--policy FILE] [--log-format text|json] [--log-level LEVEL] [--hook HOOK]", stderr)
	policyFile := fs.String("policy", defaultPolicy, "policy `file`")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn or error")
	hook := fs.String("hook", "", "force a rung of the eBPF hook ladder for directory events ("+ladderNames()+"); default: the best that works")
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	if *hook != "" && !slices.Contains(dirtrace.Ladder, dirtrace.Hook(*hook)) {
		fmt.Fprintf(stderr, "vigil run: --hook %q: want one of %s\n", *hook, ladderNames())
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vigil run: %v\n", err)
		return 2
	}
	// JSON logs are for machines: diagnostics are records there, and no
	// plain text goes between them.
	asJSON := *logFormat == "json"
	var diagnostics io.Writer = stderr
	if asJSON {
		diagnostics = nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ran := make(chan error, 1)
	go func() {
		ran <- daemon.Run(ctx, daemon.Options{
			PolicyFile:  *policyFile,
			Version:     version,
			Hook:        dirtrace.Hook(*hook),
			Log:         log,
			Diagnostics: diagnostics,
			Reload:      notifySignal(syscall.SIGHUP),
			Reopen:      notifySignal(syscall.SIGUSR1),
			Started:     started,
		})
	}()
	select {
	case err = <-ran:
	case <-ctx.Done():
		select {
		case err = <-ran:
		case <-time.After(stopTimeout):
			// The exit closes the group once that read ends, which a kill
			// interrupts (on FUSE, if the server answers the interrupt).
			log.Error("vigil did not stop in time: a read of fanotify events waits on a filesystem that does not answer; exiting without closing the group",
				"waited", stopTimeout)
			return 0
		}
	}
	if err != nil {
		if asJSON || !errors.Is(err, daemon.ErrPolicy) {
			log.Error("vigil stopped", "error", err)
		} else {
			fmt.Fprintf(stderr, "vigil run: %v\n", err)
		}
		return 1
	}
	return 0
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "vigil version", stderr)
	if code, ok := parseNoArgs(fs, args, stdout); !ok {
		return code
	}
	printVersion(stdout)
	return 0
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "vigil %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// stopTimeout is how long vigil run waits for the daemon to stop after
// SIGTERM or SIGINT. Stopping closes the fanotify group, which waits for a
// read of events that the kernel holds on a hung filesystem.
const stopTimeout = 10 * time.Second

// notifySignal turns a signal into requests; signals that arrive while a
// request is pending are merged into it.
func notifySignal(sig os.Signal) <-chan struct{} {
	c := make(chan os.Signal, 1)
	signal.Notify(c, sig)
	req := make(chan struct{}, 1)
	go func() {
		for range c {
			select {
			case req <- struct{}{}:
			default:
			}
		}
	}()
	return req
}

func ladderNames() string {
	names := make([]string, len(dirtrace.Ladder))
	for i, h := range dirtrace.Ladder {
		names[i] = string(h)
	}
	return strings.Join(names, ", ")
}

func newLogger(format, level string, w io.Writer) (hclog.Logger, error) {
	if format != "text" && format != "json" {
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "vigil",
		Level:      lvl,
		Output:     w,
		JSONFormat: format == "json",
	}), nil
}

const policyUsage = "Usage: vigil policy check FILE ...\n"

func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	var sub string
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "check":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, policyUsage)
		return 0
	case "":
		fmt.Fprint(stderr, policyUsage)
		return 2
	default:
		fmt.Fprintf(stderr, "vigil policy: unknown command %q\n\n%s", sub, policyUsage)
		return 2
	}
	fs := newFlags("policy check", "vigil policy check FILE ...", stderr)
	files, code, ok := parseArgs(fs, args[1:], stdout)
	if !ok {
		return code
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	for _, f := range files {
		_, diags := policy.Load(f)
		if len(diags) > 0 {
			policy.WriteDiagnostics(stderr, diags)
		}
		if diags.HasErrors() {
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: valid\n", f)
	}
	return code
}
