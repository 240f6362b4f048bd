package main

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/features"
	"github.com/vigilsec/vigil/internal/scan/clamav"
)

func md5sum(b []byte) []byte {
	h := md5.Sum(b)
	return h[:]
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// cliCase is one command line and what it must produce: the exit code,
// strings stdout and stderr must contain, strings stdout must not.
type cliCase struct {
	name       string
	args       []string
	wantCode   int
	wantStdout []string
	notStdout  []string
	wantStderr []string
	notStderr  []string
}

// runCLICases runs each case as a subtest.
func runCLICases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit: got %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.notStdout {
				if strings.Contains(stdout, w) {
					t.Errorf("stdout has %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tt.notStderr {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr has %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.hcl")
	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(good, []byte("watch \"/srv\" {}\n"), 0o644)
	os.WriteFile(bad, []byte("watch \"/srv\" {\n  action = \"block\"\n  colour = \"red\"\n}\nwatch \"relative\" {}\n"), 0o644)
	missing := filepath.Join(dir, "missing.hcl")
	os.WriteFile(missing, []byte("watch \""+filepath.Join(dir, "nope")+"\" {}\n"), 0o644)
	noPort := filepath.Join(dir, "noport.hcl")
	os.WriteFile(noPort, []byte("engine \"clamd\" {\n  address = \"tcp://127.0.0.1\"\n}\nwatch \"/srv\" {}\n"), 0o644)

	runCLICases(t, []cliCase{
		{name: "valid", args: []string{"policy", "check", good}},
		{name: "unknown attribute and relative path", args: []string{"policy", "check", bad}, wantCode: 1,
			wantStderr: []string{bad + ":3,3", "colour", bad + ":5,7", "^"}},
		{name: "watch path missing is a warning", args: []string{"policy", "check", missing},
			wantStdout: []string{missing + ": valid"},
			wantStderr: []string{missing + ":1,7: Warning: Watch path does not exist", "placed when the directory appears"}},
		{name: "clamd address without a port", args: []string{"policy", "check", noPort}, wantCode: 1,
			wantStderr: []string{noPort + ":2,13: Error: Invalid address", "missing port"}},
		{name: "one bad of two", args: []string{"policy", "check", good, bad}, wantCode: 1, wantStderr: []string{bad + ":3,3"}},
		{name: "missing file", args: []string{"policy", "check", filepath.Join(dir, "nope.hcl")}, wantCode: 1, wantStderr: []string{"nope.hcl"}},
		{name: "no file", args: []string{"policy", "check"}, wantCode: 2},
		{name: "help after a file", args: []string{"policy", "check", good, "--help"},
			wantStdout: []string{"Usage: vigil policy check"}, notStdout: []string{"valid"}, notStderr: []string{"--help"}},
		{name: "file named like a flag after --", args: []string{"policy", "check", "--", "-x.hcl"}, wantCode: 1,
			wantStderr: []string{"-x.hcl:1,1"}},
		{name: "shipped default", args: []string{"policy", "check", "../../policies/default.hcl"}},
	})
}

func TestScanCommand(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	db := filepath.Join(dir, "db")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.MkdirAll(db, 0o755)
	os.WriteFile(filepath.Join(tree, "clean.txt"), []byte("hello\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "sub", "eicar.com"), []byte(clamav.EICAR), 0o644)
	evil := []byte("pretend malware body\n")
	os.WriteFile(filepath.Join(tree, "evil.bin"), evil, 0o644)
	os.WriteFile(filepath.Join(db, "t.hdb"), []byte(fmt.Sprintf("%x:%d:Test.Evil\n", md5sum(evil), len(evil))), 0o644)
	os.Symlink("/etc/passwd", filepath.Join(tree, "link"))
	spool := filepath.Join(dir, "Maildir", "new")
	os.MkdirAll(spool, 0o755)
	os.WriteFile(filepath.Join(spool, "1.eml"), []byte("Return-Path: <a@example.org>\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"+
		"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n"+base64.StdEncoding.EncodeToString([]byte(clamav.EICAR))+"\r\n--b--\r\n"), 0o644)

	runCLICases(t, []cliCase{
		{name: "clean file", args: []string{"scan", filepath.Join(tree, "clean.txt")}, notStdout: []string{"FOUND"}},
		{name: "eicar found recursively", args: []string{"scan", tree}, wantCode: 1,
			wantStdout: []string{filepath.Join(tree, "sub", "eicar.com") + ": " + clamav.EICARSignature + " FOUND"},
			notStdout:  []string{"Test.Evil"}},
		{name: "hash signature from --db", args: []string{"scan", "--db", db, tree}, wantCode: 1,
			wantStdout: []string{filepath.Join(tree, "evil.bin") + ": Test.Evil FOUND", "eicar.com: " + clamav.EICARSignature + " FOUND"}},
		{name: "EICAR in a mail's base64 attachment", args: []string{"scan", filepath.Dir(spool)}, wantCode: 1,
			wantStdout: []string{filepath.Join(spool, "1.eml") + ": " + clamav.EICARSignature + " FOUND"}},
		{name: "missing path is an error", args: []string{"scan", filepath.Join(dir, "nope")}, wantCode: 2},
		{name: "missing db is an error", args: []string{"scan", "--db", filepath.Join(dir, "nodb"), tree}, wantCode: 2},
		{name: "no path", args: []string{"scan"}, wantCode: 2},
		// As clamscan takes them, and vigil quarantine: flags after the
		// paths are flags, not paths to scan.
		{name: "flags after the path", args: []string{"scan", tree, "--db", db, "--json"}, wantCode: 1,
			wantStdout: []string{`"signature":"Test.Evil"`, `"result":"summary"`}, notStderr: []string{"--json", "ERROR"}},
		{name: "bad flag after the path", args: []string{"scan", tree, "--bogus"}, wantCode: 2,
			wantStderr: []string{"-bogus", "Usage: vigil scan"}, notStdout: []string{"FOUND"}},
		{name: "path named like a flag after --", args: []string{"scan", "--", "--json"}, wantCode: 2,
			wantStderr: []string{"--json: ERROR"}},
	})
}

func TestUsage(t *testing.T) {
	cases := []cliCase{
		{name: "version", args: []string{"version"}, wantStdout: []string{"vigil "}},
		{name: "help", args: []string{"--help"}, wantStdout: []string{"vigil policy check FILE"}, notStderr: []string{"Usage"}},
		{name: "unknown command", args: []string{"bogus"}, wantCode: 2, wantStderr: []string{"unknown command"}},
		{name: "help unknown command", args: []string{"help", "bogus"}, wantCode: 2, wantStderr: []string{`unknown command "bogus"`}},
		{name: "help help", args: []string{"help", "help"}, wantStdout: []string{"vigil policy check FILE"}},
		{name: "no command", args: []string{}, wantCode: 2, wantStderr: []string{"Usage:"}},
		{name: "bad log format", args: []string{"run", "--log-format", "xml"}, wantCode: 2, wantStderr: []string{"--log-format"}},
		{name: "policy without check", args: []string{"policy"}, wantCode: 2, wantStderr: []string{"Usage: vigil policy check"}},
		{name: "policy unknown command", args: []string{"policy", "lint"}, wantCode: 2,
			wantStderr: []string{`vigil policy: unknown command "lint"`, "Usage: vigil policy check"}},
		{name: "version bad flag", args: []string{"version", "--bogus"}, wantCode: 2,
			wantStderr: []string{"-bogus", "Usage: vigil version"}, notStdout: []string{"vigil "}},
		{name: "version help", args: []string{"version", "--help"}, wantStdout: []string{"Usage: vigil version"}},
		// Each flag's value is named as the synopsis names it, not "value".
		{name: "scan help names values", args: []string{"scan", "--help"},
			wantStdout: []string{"-db path\n", "-exclude glob\n", "-policy file\n"}, notStdout: []string{" value\n"}},
	}
	// A command that takes no arguments rejects one rather than ignore it.
	for _, cmd := range []string{"run", "status", "reload", "metrics", "features", "version"} {
		cases = append(cases, cliCase{name: cmd + " extra", args: []string{cmd, "extra"}, wantCode: 2,
			wantStderr: []string{"vigil " + cmd + `: unexpected argument "extra"`, "Usage: vigil " + cmd}, notStdout: []string{"vigil"}})
	}
	// Asking for help is not an error: the usage goes to stdout, exit 0.
	// A wrong flag is: the usage goes to stderr, exit 2.
	for _, cmd := range [][]string{
		{"run"}, {"scan"}, {"status"}, {"reload"}, {"metrics"}, {"features"},
		{"policy"}, {"policy", "check"}, {"quarantine"}, {"quarantine", "list"},
	} {
		name := strings.Join(cmd, " ")
		for _, h := range []string{"--help", "-h"} {
			cases = append(cases, cliCase{name: name + " " + h, args: append(slices.Clone(cmd), h),
				wantStdout: []string{"Usage:", "vigil " + name}, notStderr: []string{"Usage"}})
		}
		cases = append(cases, cliCase{name: "help " + name, args: append([]string{"help"}, cmd...),
			wantStdout: []string{"Usage:", "vigil " + name}, notStdout: []string{"on-access malware scanning"}, notStderr: []string{"Usage"}})
		if cmd[0] != "policy" && len(cmd) == 1 && cmd[0] != "quarantine" {
			cases = append(cases, cliCase{name: name + " bad flag", args: append(slices.Clone(cmd), "--bogus"), wantCode: 2,
				wantStderr: []string{"-bogus", "Usage: vigil " + name}, notStdout: []string{"Usage"}})
		}
	}
	// A command without flags shows no empty Flags section.
	for _, cmd := range [][]string{{"features"}, {"policy", "check"}} {
		cases = append(cases, cliCase{name: strings.Join(cmd, " ") + " no flags", args: append(slices.Clone(cmd), "--help"),
			notStdout: []string{"Flags:"}})
	}
	runCLICases(t, cases)
}

// The usage the binary prints is the command line README documents: the
// summary of vigil --help and each command's own.
func TestUsageMatchesREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "## Command line\n\n```\n")
	if !ok {
		t.Fatal("README has no Command line block")
	}
	block, _, _ = strings.Cut(block, "```")
	// The synopsis ends where the description column starts.
	desc := regexp.MustCompile(`\s{3,}[A-Za-z].*$`)
	var synopses []string
	for line := range strings.Lines(block) {
		if strings.HasPrefix(line, "vigil ") {
			synopses = append(synopses, strings.Join(strings.Fields(desc.ReplaceAllString(strings.TrimSpace(line), "")), " "))
		}
	}
	if len(synopses) < 9 {
		t.Fatalf("README's Command line block: got %d synopses, want 9:\n%s", len(synopses), block)
	}
	_, help, _ := runCLI("--help")
	var summary []string
	for line := range strings.Lines(help) {
		summary = append(summary, strings.Join(strings.Fields(line), " "))
	}
	for _, syn := range synopses {
		if !slices.Contains(summary, syn) {
			t.Errorf("vigil --help lacks README's %q:\n%s", syn, help)
		}
		words := strings.Fields(syn)
		cmd := words[1:2]
		switch words[1] {
		case "quarantine":
			continue // three lines of its own, with the flags of each
		case "policy":
			cmd = words[1:3]
		}
		_, out, _ := runCLI(append(cmd, "--help")...)
		if first, _, _ := strings.Cut(out, "\n"); strings.Join(strings.Fields(first), " ") != "Usage: "+syn {
			t.Errorf("vigil %s --help: got %q, want %q", strings.Join(cmd, " "), first, "Usage: "+syn)
		}
	}
}

// Without a daemon, the commands that ask it say so once and exit 2.
func TestDaemonUnreachable(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "none.sock")
	want := "cannot reach the daemon at " + socket + ": no such file or directory\n"
	runCLICases(t, []cliCase{
		{name: "status", args: []string{"status", "--socket", socket}, wantCode: 2,
			wantStderr: []string{"vigil status: " + want}},
		{name: "status json", args: []string{"status", "--json", "--socket", socket}, wantCode: 2,
			wantStdout: []string{`"ready":false`}, wantStderr: []string{"vigil status: " + want}},
		{name: "metrics", args: []string{"metrics", "--socket", socket}, wantCode: 2,
			wantStderr: []string{"vigil metrics: " + want}},
		// No daemon has refused anything: not 1, which says the previous
		// policy stays in force.
		{name: "reload", args: []string{"reload", "--socket", socket}, wantCode: 2,
			wantStderr: []string{"vigil reload: " + want}, notStderr: []string{"policy"}},
	})
}

// A probe that fails for want of privileges tells nothing about the
// kernel: without root it is unknown, not a "no".
func TestProbeState(t *testing.T) {
	eperm := fmt.Errorf("probe fanotify permission events: %w", unix.EPERM)
	tests := []struct {
		name string
		err  error
		root bool
		want string
	}{
		{"available", nil, false, "yes"},
		{"not permitted, not root", eperm, false, "unknown, run as root to tell: probe fanotify permission events: operation not permitted"},
		{"not permitted as root", eperm, true, "no: probe fanotify permission events: operation not permitted"},
		{"not supported", fmt.Errorf("FAN_MARK_IGNORE: %w (%v)", features.ErrNotSupported, unix.EINVAL), false,
			"no: FAN_MARK_IGNORE: not supported (invalid argument)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := probeState(tt.err, tt.root); got != tt.want {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}
