package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilsec/vigil/internal/quarantine"
)

// quarantined puts a file of the watch tree into the store at qdir and
// returns its id and original path.
func quarantined(t *testing.T, qdir, watch, name string) (string, string) {
	t.Helper()
	path := filepath.Join(watch, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := quarantine.Open(qdir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Add(f, path, quarantine.Info{Signature: "Eicar-Test-Signature", Watch: watch})
	if err != nil {
		t.Fatal(err)
	}
	return e.ID, path
}

func TestQuarantineCLI(t *testing.T) {
	base := t.TempDir()
	watch := filepath.Join(base, "srv")
	outside := filepath.Join(base, "elsewhere")
	os.Mkdir(outside, 0o755)
	qdir := filepath.Join(base, "q")
	id1, path1 := quarantined(t, qdir, watch, "a/evil1")
	id2, _ := quarantined(t, qdir, watch, "evil2")
	id3, path3 := quarantined(t, qdir, watch, "evil3")

	pdir := filepath.Join(base, "pq")
	idp, _ := quarantined(t, pdir, watch, "evilp")
	pol := filepath.Join(base, "policy.hcl")
	os.WriteFile(pol, []byte("settings {\n  quarantine_dir = \""+pdir+"\"\n}\nwatch \"/srv/none\" {\n  action = \"quarantine\"\n}\n"), 0o644)
	badPol := filepath.Join(base, "bad.hcl")
	os.WriteFile(badPol, []byte("settings {\n  quarantine_dir = \"rel\"\n}\nwatch \"/srv\" {}\n"), 0o644)
	// d/ swapped for a symlink out of the tree after d/evil4 was quarantined.
	id4, path4 := quarantined(t, qdir, watch, "d/evil4")
	os.Rename(filepath.Dir(path4), filepath.Dir(path4)+".old")
	if err := os.Symlink(outside, filepath.Dir(path4)); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(base, "empty")
	if s, err := quarantine.Open(empty); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	loose := filepath.Join(base, "loose")
	os.Mkdir(loose, 0o755)
	os.Chmod(loose, 0o755)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr []string
		check      func(t *testing.T)
	}{
		{name: "help", args: []string{"--help"}, wantStdout: []string{"vigil quarantine restore", "--force", "Exit status"}},
		{name: "subcommand help", args: []string{"restore", "--help"}, wantStdout: []string{"-to path", "-force"}},
		{name: "no subcommand", args: nil, wantCode: 2},
		{name: "unknown subcommand", args: []string{"purge"}, wantCode: 2, wantStderr: []string{`unknown command "purge"`}},
		{name: "unknown flag", args: []string{"list", "--dir", qdir, "--colour"}, wantCode: 2},
		{name: "restore without id", args: []string{"restore", "--dir", qdir}, wantCode: 2},
		{name: "delete two ids", args: []string{"delete", "--dir", qdir, id1, id2}, wantCode: 2},
		{name: "dir and policy", args: []string{"list", "--dir", qdir, "--policy", pol}, wantCode: 2},
		{name: "list", args: []string{"list", "--dir", qdir},
			wantStdout: []string{"ID", "STATE", id1, id2, id3, id4, path1, "quarantined", "Eicar-Test-Signature"}},
		{name: "list from the policy's quarantine_dir", args: []string{"list", "--policy", pol}, wantStdout: []string{idp}},
		{name: "invalid policy", args: []string{"list", "--policy", badPol}, wantCode: 2, wantStderr: []string{"quarantine_dir", "--dir"}},
		{name: "no store", args: []string{"list", "--json", "--dir", filepath.Join(base, "none")}, wantCode: 1,
			wantStderr: []string{"no quarantine at " + filepath.Join(base, "none")},
			check: func(t *testing.T) {
				if _, err := os.Lstat(filepath.Join(base, "none")); err == nil {
					t.Errorf("list created the store")
				}
			}},
		{name: "empty store", args: []string{"list", "--json", "--dir", empty}, wantStdout: []string{"[]"}},
		{name: "empty store, table", args: []string{"list", "--dir", empty}, wantStdout: []string{"no quarantined files"}},
		{name: "store open to others", args: []string{"list", "--dir", loose}, wantCode: 1, wantStderr: []string{"want 0700"}},
		{name: "restore a traversal id", args: []string{"restore", "--dir", qdir, "../q/" + id1}, wantCode: 1, wantStderr: []string{"not a quarantine id"}},
		{name: "restore an absolute id", args: []string{"restore", "--dir", qdir, "/etc/passwd"}, wantCode: 1, wantStderr: []string{"not a quarantine id"}},
		{name: "restore outside the tree", args: []string{"restore", "--dir", qdir, "--to", filepath.Join(outside, "x"), id2},
			wantCode: 1, wantStderr: []string{"outside the watch", "--force"},
			check: func(t *testing.T) {
				if _, err := os.Lstat(filepath.Join(outside, "x")); err == nil {
					t.Errorf("refused restore created the file")
				}
			}},
		{name: "restore outside the tree, forced, flags after the id", args: []string{"restore", "--dir", qdir, id2, "--to", filepath.Join(outside, "x"), "--force"},
			wantStdout: []string{"restored to " + filepath.Join(outside, "x")}},
		{name: "restore through a symlinked directory, forced", args: []string{"restore", "--dir", qdir, "--force", id4},
			wantCode: 1, wantStderr: []string{"symbolic link"},
			check: func(t *testing.T) {
				if _, err := os.Lstat(filepath.Join(outside, "evil4")); err == nil {
					t.Errorf("restore wrote through the symlink")
				}
			}},
		{name: "restore to the original path", args: []string{"restore", "--dir", qdir, id1}, wantStdout: []string{"restored to " + path1},
			check: func(t *testing.T) {
				if fi, err := os.Stat(path1); err != nil || fi.Mode().Perm() != 0o640 {
					t.Errorf("got %v, %v want the file back with mode 0640", fi, err)
				}
			}},
		{name: "restore again", args: []string{"restore", "--dir", qdir, id1}, wantCode: 1, wantStderr: []string{"no such quarantine entry"}},
		{name: "delete", args: []string{"delete", "--dir", qdir, id3}, wantStdout: []string{id3 + ": deleted"},
			check: func(t *testing.T) {
				if _, err := os.Lstat(path3); err == nil {
					t.Errorf("delete restored %s", path3)
				}
			}},
		{name: "delete again", args: []string{"delete", "--dir", qdir, id3}, wantCode: 1},
		{name: "delete the one kept by the symlink", args: []string{"delete", "--dir", qdir, id4}, wantStdout: []string{id4 + ": deleted"}},
		{name: "list what is left", args: []string{"list", "--dir", qdir}, wantStdout: []string{"no quarantined files"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append([]string{"quarantine"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit: got %d want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestQuarantineListJSON(t *testing.T) {
	base := t.TempDir()
	qdir := filepath.Join(base, "q")
	id, path := quarantined(t, qdir, filepath.Join(base, "srv"), "evil")
	code, stdout, stderr := runCLI("quarantine", "list", "--json", "--dir", qdir)
	if code != 0 {
		t.Fatalf("exit: got %d want 0\n%s", code, stderr)
	}
	var got []quarantine.Entry
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("got %q: %v", stdout, err)
	}
	if len(got) != 1 || got[0].ID != id || got[0].Path != path || got[0].State != quarantine.StateQuarantined || got[0].Mode != 0o640 {
		t.Errorf("got %+v want one quarantined entry %s for %s, mode 0640", got, id, path)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPos   []string
		wantForce bool
		wantTo    string
	}{
		{"flags first", []string{"--force", "--to", "/x", "id"}, []string{"id"}, true, "/x"},
		{"flags last", []string{"id", "--to=/x", "--force"}, []string{"id"}, true, "/x"},
		{"double dash", []string{"--", "--force"}, []string{"--force"}, false, ""},
		{"none", nil, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlags("t", "t", os.Stderr)
			force := fs.Bool("force", false, "")
			to := fs.String("to", "", "")
			pos, err := parseInterspersed(fs, tt.args)
			if err != nil || strings.Join(pos, " ") != strings.Join(tt.wantPos, " ") || *force != tt.wantForce || *to != tt.wantTo {
				t.Errorf("got %q force=%v to=%q, %v want %q force=%v to=%q", pos, *force, *to, err, tt.wantPos, tt.wantForce, tt.wantTo)
			}
		})
	}
}
