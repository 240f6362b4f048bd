package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/quarantine"
)

const quarantineUsage = `Usage:
  vigil quarantine list    [--dir DIR | --policy FILE] [--json]
  vigil quarantine restore [--dir DIR | --policy FILE] [--to PATH] [--force] ID
  vigil quarantine delete  [--dir DIR | --policy FILE] ID

Commands:
  list     show the quarantined files, oldest first, with their state:
           quarantined (original removed), kept (the path no longer named
           the file: nothing removed), pending (interrupted: the original may
           still be in place), orphan (interrupted before the record:
           content only), damaged (unreadable record)
  restore  write a file back, with its owner and mode, to its original path
           or to --to PATH, then drop it from the quarantine; never
           overwrites and never follows a symlink anywhere on the
           destination path, even with --force; a destination outside the
           watch that quarantined the file needs --force; inside a watch,
           the file is scanned again when next opened
  delete   drop a file from the quarantine for good

The quarantine directory is --dir, else the quarantine_dir of --policy FILE,
else that of ` + defaultPolicy + ` when that file exists, else
` + policy.DefaultQuarantineDir + `.

Exit status: 0 done, 1 refused or not found, 2 usage or setup error.
`

func cmdQuarantine(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, quarantineUsage)
		return 2
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, quarantineUsage)
		return 0
	case "list", "restore", "delete":
	default:
		fmt.Fprintf(stderr, "vigil quarantine: unknown command %q\n\n%s", sub, quarantineUsage)
		return 2
	}

	fs := flag.NewFlagSet("quarantine "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(fs, quarantineUsage) }
	dir := fs.String("dir", "", "quarantine `directory`")
	policyFile := fs.String("policy", "", "read quarantine_dir from this policy `file`")
	asJSON, to, force := new(bool), new(string), new(bool)
	switch sub {
	case "list":
		fs.BoolVar(asJSON, "json", false, "print the entries as a JSON array")
	case "restore":
		fs.StringVar(to, "to", "", "restore to this absolute `path` instead of the original one")
		fs.BoolVar(force, "force", false, "allow a destination outside the watch that quarantined the file")
	}
	pos, code, ok := parseArgs(fs, rest, stdout)
	if !ok {
		return code
	}
	prefix := "vigil quarantine " + sub
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "%s: want %d argument(s), got %d\n\n%s", prefix, want, len(pos), quarantineUsage)
		return 2
	}
	if *dir != "" && *policyFile != "" {
		fmt.Fprintf(stderr, "%s: --dir and --policy: give one\n", prefix)
		return 2
	}
	qdir, code := quarantineDir(*dir, *policyFile, stderr)
	if code != 0 {
		return code
	}
	if _, err := os.Lstat(qdir); errors.Is(err, os.ErrNotExist) {
		// Not found, as README's exit status has it; do not create the store.
		if sub == "list" {
			fmt.Fprintf(stderr, "%s: no quarantine at %s\n", prefix, qdir)
			return 1
		}
		fmt.Fprintf(stderr, "%s: %s: no quarantine at %s\n", prefix, pos[0], qdir)
		return 1
	}
	s, err := quarantine.Open(qdir)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
		return 1
	}
	defer s.Close()

	switch sub {
	case "list":
		entries, err := s.List()
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
			return 1
		}
		if *asJSON {
			if entries == nil {
				entries = []quarantine.Entry{}
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(entries)
		} else {
			printEntries(stdout, entries)
		}
	case "restore":
		got, err := s.Restore(pos[0], *to, *force)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
			if errors.Is(err, quarantine.ErrOutsideWatch) {
				fmt.Fprintf(stderr, "%s: use --force to restore there anyway\n", prefix)
			}
			return 1
		}
		fmt.Fprintf(stdout, "%s: restored to %s\n", pos[0], displayPath(got))
	case "delete":
		if err := s.Delete(pos[0]); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prefix, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: deleted\n", pos[0])
	}
	return 0
}

// quarantineDir picks the store directory; code is non-zero on error.
func quarantineDir(dir, policyFile string, stderr io.Writer) (string, int) {
	if dir != "" {
		return dir, 0
	}
	if policyFile == "" {
		if _, err := os.Stat(defaultPolicy); err != nil {
			return policy.DefaultQuarantineDir, 0
		}
		policyFile = defaultPolicy
	}
	pol, diags := policy.Load(policyFile)
	if diags.HasErrors() {
		policy.WriteDiagnostics(stderr, diags)
		fmt.Fprintf(stderr, "vigil quarantine: policy %s is invalid; fix it or give --dir\n", policyFile)
		return "", 2
	}
	return pol.Settings.QuarantineDir, 0
}

func printEntries(w io.Writer, entries []quarantine.Entry) {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no quarantined files")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tTIME\tSIGNATURE\tSIZE\tPATH")
	for _, e := range entries {
		sig, path := e.Signature, displayPath(e.Path)
		if sig == "" {
			sig = "-"
		}
		if path == "" {
			path = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.State,
			e.Time.Local().Format("2006-01-02 15:04:05"), sig, e.Size, path)
	}
	tw.Flush()
}

// displayPath quotes a path that would garble a terminal or a table.
func displayPath(p string) string {
	if !utf8.ValidString(p) || strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) || r == '\t' }) >= 0 {
		return strconv.Quote(p)
	}
	return p
}
