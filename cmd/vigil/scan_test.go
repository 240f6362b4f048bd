package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/scan/clamav"
)

// scanTree builds a tree with hits in every place the walk must or must
// not look.
func scanTree(t *testing.T) (dir, tree, db string) {
	t.Helper()
	dir = t.TempDir()
	tree = filepath.Join(dir, "tree")
	db = filepath.Join(dir, "db")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{tree + "/sub/deep", tree + "/skipdir", tree + "/cache/x", db, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		tree + "/clean.txt":             "hello\n",
		tree + "/sub/deep/eicar.com":    clamav.EICAR,
		tree + "/skipdir/eicar.com":     clamav.EICAR,
		tree + "/cache/x/eicar.com":     clamav.EICAR,
		tree + "/image.skip":            clamav.EICAR,
		outside + "/eicar.com":          clamav.EICAR,
		tree + "/sub/evil.bin":          "pretend malware body\n",
		filepath.Join(db, "t.hdb"):      fmt.Sprintf("%x:%d:Test.Evil\n", md5sum([]byte("pretend malware body\n")), len("pretend malware body\n")),
		tree + "/sub/deep/readme.md":    "# nothing\n",
		tree + "/sub/deep/empty":        "",
		tree + "/sub/deep/more-text.md": strings.Repeat("text ", 1000),
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		tree + "/out-link":  outside + "/eicar.com",
		tree + "/out-dir":   outside,
		tree + "/loop":      tree, // a cycle when followed
		tree + "/dangling":  filepath.Join(dir, "nope"),
		tree + "/self-link": tree + "/sub/deep/eicar.com",
	}
	for l, target := range links {
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(tree+"/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, tree, db
}

func TestScanWalk(t *testing.T) {
	dir, tree, db := scanTree(t)
	eicarLine := func(p string) string { return p + ": " + clamav.EICARSignature + " FOUND\n" }
	runCLICases(t, []cliCase{
		{
			name:     "recursive, links and special files skipped",
			args:     []string{"scan", "--db", db, tree},
			wantCode: 1,
			wantStdout: []string{eicarLine(tree + "/sub/deep/eicar.com"), eicarLine(tree + "/skipdir/eicar.com"),
				eicarLine(tree + "/cache/x/eicar.com"), eicarLine(tree + "/image.skip"), tree + "/sub/evil.bin: Test.Evil FOUND\n",
				"Scanned files: 9\n", "Infected files: 5\n", "Errors: 0\n", "Data scanned: 0.01 MB\n", "----------- SCAN SUMMARY -----------"},
			notStdout: []string{"out-link", "out-dir", "self-link", "loop", "fifo", dir + "/outside"},
		},
		{
			name:     "follow",
			args:     []string{"scan", "--db", db, "--follow", tree},
			wantCode: 1,
			wantStdout: []string{eicarLine(tree + "/out-link"), eicarLine(tree + "/out-dir/eicar.com"),
				eicarLine(tree + "/self-link"), "Errors: 1\n"},
			notStdout:  []string{tree + "/loop/"},
			wantStderr: []string{tree + "/dangling: ERROR: no such file or directory"},
		},
		{
			name:       "excludes by name, by relative path, with **",
			args:       []string{"scan", "--db", db, "--exclude", "skipdir", "--exclude", "*.skip", "--exclude", "cache/**", "--exclude", "**/evil.bin", tree},
			wantCode:   1,
			wantStdout: []string{eicarLine(tree + "/sub/deep/eicar.com"), "Scanned files: 5\n", "Infected files: 1\n"},
			notStdout:  []string{"skipdir", "image.skip", "cache", "evil.bin"},
		},
		{
			name:       "exclude everything infected",
			args:       []string{"scan", "--db", db, "--exclude", "eicar.com", "--exclude", "*.skip", "--exclude", "sub/evil.bin", tree},
			wantCode:   0,
			wantStdout: []string{"Infected files: 0\n"},
			notStdout:  []string{"FOUND"},
		},
		{
			name:       "link named on the command line is followed",
			args:       []string{"scan", tree + "/out-link"},
			wantCode:   1,
			wantStdout: []string{eicarLine(tree + "/out-link"), "Scanned files: 1\n"},
		},
		{
			name:       "error does not stop the scan",
			args:       []string{"scan", filepath.Join(dir, "nope"), tree + "/sub"},
			wantCode:   1,
			wantStdout: []string{eicarLine(tree + "/sub/deep/eicar.com"), "Errors: 1\n"},
			wantStderr: []string{filepath.Join(dir, "nope") + ": ERROR: no such file or directory"},
		},
		{
			name:       "errors only: exit 2",
			args:       []string{"scan", filepath.Join(dir, "nope"), tree + "/clean.txt"},
			wantCode:   2,
			wantStdout: []string{"Scanned files: 1\n", "Errors: 1\n"},
		},
		{
			name:       "bad exclude glob",
			args:       []string{"scan", "--exclude", "[", tree},
			wantCode:   2,
			wantStderr: []string{`--exclude "["`},
		},
		{
			name:       "report alone",
			args:       []string{"scan", "--db", db, "--report"},
			wantCode:   0,
			wantStdout: []string{"builtin db ", "1 files, 1 signatures (md5=1 "},
			notStdout:  []string{"SUMMARY"},
		},
		{
			name:       "report then scan",
			args:       []string{"scan", "--db", db, "--report", tree + "/clean.txt"},
			wantCode:   0,
			wantStdout: []string{"builtin db ", "Scanned files: 1\n"},
		},
	})
}

func TestScanJSON(t *testing.T) {
	dir, tree, db := scanTree(t)
	code, stdout, stderr := runCLI("scan", "--json", "--report", "--db", db, tree+"/sub", filepath.Join(dir, "nope"))
	if code != 1 {
		t.Fatalf("exit: got %d want 1\n%s", code, stderr)
	}
	var results []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		results = append(results, m)
	}
	byResult := map[string][]map[string]any{}
	for _, m := range results {
		byResult[m["result"].(string)] = append(byResult[m["result"].(string)], m)
	}
	if r := byResult["report"]; len(r) != 1 || results[0]["result"] != "report" {
		t.Fatalf("got report objects %v want one, first", r)
	}
	found := map[string]string{}
	for _, m := range byResult["found"] {
		found[m["path"].(string)] = m["signature"].(string)
	}
	want := map[string]string{tree + "/sub/deep/eicar.com": clamav.EICARSignature, tree + "/sub/evil.bin": "Test.Evil"}
	if fmt.Sprint(found) != fmt.Sprint(want) {
		t.Fatalf("got found %v want %v", found, want)
	}
	if e := byResult["error"]; len(e) != 1 || e[0]["path"] != filepath.Join(dir, "nope") {
		t.Fatalf("got errors %v want one for nope", e)
	}
	s := byResult["summary"]
	if len(s) != 1 || results[len(results)-1]["result"] != "summary" {
		t.Fatalf("got summaries %v want one, last", s)
	}
	if s[0]["files"] != 5.0 || s[0]["infected"] != 2.0 || s[0]["errors"] != 1.0 || s[0]["engine"] != "builtin" {
		t.Fatalf("got summary %v want 5 files, 2 infected, 1 error, builtin", s[0])
	}
}

// slowEngine takes a while per file so that the progress line shows.
type slowEngine struct{ d time.Duration }

func (e slowEngine) Scan(ctx context.Context, f *os.File) (scan.Result, error) {
	time.Sleep(e.d)
	return scan.Result{}, nil
}
func (slowEngine) Name() string    { return "slow" }
func (slowEngine) Version() string { return "1" }

func TestScanProgress(t *testing.T) {
	oldAfter, oldEvery := progressAfter, progressEvery
	progressAfter, progressEvery = 50*time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { progressAfter, progressEvery = oldAfter, oldEvery })

	_, tree, _ := scanTree(t)
	for _, tty := range []bool{true, false} {
		t.Run(fmt.Sprintf("terminal=%v", tty), func(t *testing.T) {
			var out, errb, term bytes.Buffer
			s := &scanner{engine: slowEngine{60 * time.Millisecond}, stdout: &out, stderr: &errb}
			if tty {
				s.progress = &term
			}
			if code := s.run(context.Background(), []string{tree}); code != 0 {
				t.Fatalf("exit: got %d want 0\n%s%s", code, out.String(), errb.String())
			}
			got := term.String()
			if tty && (!strings.Contains(got, "\r\x1b[Kscanned ") || !strings.HasSuffix(got, "\r\x1b[K")) {
				t.Fatalf("got terminal output %q want progress lines, erased at the end", got)
			}
			if !tty && got != "" {
				t.Fatalf("got terminal output %q without a terminal", got)
			}
			if strings.Contains(out.String(), "\r") {
				t.Fatalf("got progress on stdout: %q", out.String())
			}
		})
	}
}

// --exclude has a watch's exclude semantics (gitignore's), relative to
// each scanned directory, or to "/" for an absolute glob.
func TestScanExcluded(t *testing.T) {
	tests := []struct {
		globs []string
		path  string
		dir   bool
		want  bool
	}{
		{[]string{"cache/**"}, "/r/cache/x/y", false, true},
		{[]string{"cache/**"}, "/r/cache", true, false}, // what is in cache, not cache
		{[]string{"cache/**"}, "/r/other/cache/x", false, false},
		{[]string{"**/evil.bin"}, "/r/evil.bin", false, true},
		{[]string{"**/evil.bin"}, "/r/a/b/evil.bin", false, true},
		{[]string{"a/*/c"}, "/r/a/b/c", false, true},
		{[]string{"a/*/c"}, "/r/a/b/b/c", false, false},
		{[]string{"a/**/c"}, "/r/a/b/b/c", false, true},
		{[]string{"sub/deep"}, "/r/sub/deep", true, true},
		{[]string{"sub/deep"}, "/r/sub/deeper", true, false},
		{[]string{"sub/deep"}, "/r/sub/deep/f", false, true}, // below an excluded directory
		{[]string{"/srv/*.iso"}, "/srv/x.iso", false, true},
		{[]string{"/srv/*.iso"}, "/r/srv/x.iso", false, false},
		{[]string{"*.iso"}, "/r/a/x.iso", false, true},
		// gitignore's: the last match decides, "!" re-includes.
		{[]string{"*.log", "!keep.log"}, "/r/a/keep.log", false, false},
		{[]string{"*.log", "!keep.log"}, "/r/a/other.log", false, true},
		{[]string{"!keep.log", "*.log"}, "/r/a/keep.log", false, true},
		{[]string{"logs", "!logs/keep.log"}, "/r/logs/keep.log", false, true}, // not out of an excluded directory
		{[]string{"/srv/*", "!/srv/keep"}, "/srv/keep", false, false},
		// "[!x]" is a negated class, not '!' or 'x'.
		{[]string{"[!a]b"}, "/r/cb", false, true},
		{[]string{"[!a]b"}, "/r/ab", false, false},
		// A trailing "/" is for directories only.
		{[]string{"build/"}, "/r/build", true, true},
		{[]string{"build/"}, "/r/build", false, false},
		{[]string{"build/"}, "/r/build/out", false, true},
	}
	for _, tt := range tests {
		rel, abs, err := compileExcludes(tt.globs)
		if err != nil {
			t.Fatalf("%q: %v", tt.globs, err)
		}
		s := &scanner{excludes: rel, absolute: abs}
		if got := s.excluded("/r", tt.path, tt.dir); got != tt.want {
			t.Errorf("%q excludes %s (dir %v): got %v want %v", tt.globs, tt.path, tt.dir, got, tt.want)
		}
	}
	// vigil scan . in /srv: an absolute glob meets the whole path.
	_, abs, err := compileExcludes([]string{"/srv/*.iso"})
	if err != nil {
		t.Fatal(err)
	}
	s := &scanner{absolute: abs, cwd: "/srv"}
	if !s.excluded(".", "x.iso", false) || s.excluded(".", "a/x.iso", false) {
		t.Errorf("/srv/*.iso below . in /srv: want x.iso excluded, a/x.iso not")
	}
}

// Unreadable files are reported and the scan goes on; root reads
// everything, so this needs another user.
func TestScanUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can read a mode 000 file; the error path is covered by TestScanWalk's missing and dangling paths")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0)
	os.WriteFile(filepath.Join(dir, "eicar.com"), []byte(clamav.EICAR), 0o644)
	code, stdout, stderr := runCLI("scan", dir)
	if code != 1 || !strings.Contains(stderr, "secret: ERROR: permission denied") || !strings.Contains(stdout, "eicar.com: ") {
		t.Fatalf("got exit %d\n%s\n%s want 1, the error and the hit", code, stdout, stderr)
	}
}
