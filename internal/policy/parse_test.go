package policy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	defaults := DefaultSettings()
	tests := []struct {
		name         string
		src          string
		wantEngine   Engine
		wantSettings Settings
		wantWatches  []Watch // compared without Range
		wantExclude  Exclude
	}{
		{
			name:         "defaults",
			src:          `watch "/srv/uploads" {}`,
			wantEngine:   Engine{Kind: EngineBuiltin, VerifySignatures: true},
			wantSettings: defaults,
			wantWatches: []Watch{{
				Path: "/srv/uploads", Action: ActionBlock, Recursive: true, Mode: ModeTree,
				On: EventOpen | EventExec, OnError: OnErrorAllow, MaxFileSize: 100 << 20,
			}},
		},
		{
			name: "everything",
			src: `
engine "builtin" {
  databases = ["/var/lib/vigil/db/", "/var/lib/clamav/main.cvd"]
}
settings {
  workers        = 8
  scan_timeout   = "750ms"
  max_file_size  = "10MB"
  on_error       = "deny"
  control_socket = "/run/v.sock"
  alert_log      = "/var/log/v/a.jsonl"
  quarantine_dir = "/var/lib/v/q/"
}
watch "/srv/uploads/" {
  action    = "alert"
  recursive = false
  mode      = "tree"
  on        = ["access", "exec"]
  exclude   = ["*.part", "cache/**"]
  on_error  = "allow"
  max_file_size = "4096"
}
watch "/srv" {}
exclude {
  uids = [997]
}
exclude {
  uids     = [0]
  programs = ["/usr/sbin//rsync"]
}
`,
			wantEngine: Engine{Kind: EngineBuiltin, VerifySignatures: true, Databases: []string{"/var/lib/vigil/db", "/var/lib/clamav/main.cvd"}},
			wantSettings: Settings{
				Workers: 8, ScanTimeout: 750 * time.Millisecond, MaxFileSize: 10_000_000,
				OnError: OnErrorDeny, ControlSocket: "/run/v.sock", AlertLog: "/var/log/v/a.jsonl",
				QuarantineDir: "/var/lib/v/q",
			},
			wantWatches: []Watch{
				{
					Path: "/srv/uploads", Action: ActionAlert, Recursive: false, Mode: ModeTree,
					On: EventAccess | EventExec, Exclude: []string{"*.part", "cache/**"},
					OnError: OnErrorAllow, MaxFileSize: 4096,
				},
				{
					Path: "/srv", Action: ActionBlock, Recursive: true, Mode: ModeTree,
					On: EventOpen | EventExec, OnError: OnErrorDeny, MaxFileSize: 10_000_000,
				},
			},
			wantExclude: Exclude{UIDs: []uint32{997, 0}, Programs: []string{"/usr/sbin/rsync"}},
		},
		{
			name:         "quarantine, store outside every watch",
			src:          "watch \"/srv/uploads\" {\n  action = \"quarantine\"\n}\nwatch \"/var/lib/vigil\" {\n  recursive = false\n}\n",
			wantEngine:   Engine{Kind: EngineBuiltin, VerifySignatures: true},
			wantSettings: defaults,
			wantWatches: []Watch{
				{Path: "/var/lib/vigil", Action: ActionBlock, Recursive: false, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 100 << 20},
				{Path: "/srv/uploads", Action: ActionQuarantine, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 100 << 20},
			},
		},
		{
			name: "clamd engine",
			src: `
engine "clamd" {
  address = "unix:///run/clamav/clamd.ctl"
  timeout = "10s"
}
watch "/srv" {}
`,
			wantEngine:   Engine{Kind: EngineClamd, VerifySignatures: true, Address: "unix:///run/clamav/clamd.ctl", Timeout: 10 * time.Second},
			wantSettings: defaults,
			wantWatches: []Watch{
				{Path: "/srv", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 100 << 20},
			},
		},
		{
			name:         "clamd engine over tcp, default timeout",
			src:          "engine \"clamd\" {\n  address = \"tcp://127.0.0.1:3310\"\n}\nwatch \"/srv\" {}\n",
			wantEngine:   Engine{Kind: EngineClamd, VerifySignatures: true, Address: "tcp://127.0.0.1:3310"},
			wantSettings: defaults,
			wantWatches: []Watch{
				{Path: "/srv", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 100 << 20},
			},
		},
		{
			name:         "locally built containers",
			src:          "engine \"builtin\" {\n  databases = [\"/db\"]\n  verify_signatures = false\n}\nwatch \"/srv\" {}\n",
			wantEngine:   Engine{Kind: EngineBuiltin, Databases: []string{"/db"}},
			wantSettings: defaults,
			wantWatches: []Watch{
				{Path: "/srv", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 100 << 20},
			},
		},
		{
			name:       "ignore out of scope",
			src:        "settings {\n  ignore_out_of_scope = true\n}\nwatch \"/srv\" {\n  mode = \"filesystem\"\n}\n",
			wantEngine: Engine{Kind: EngineBuiltin, VerifySignatures: true},
			wantSettings: func() Settings {
				s := defaults
				s.IgnoreOutOfScope = true
				return s
			}(),
			wantWatches: []Watch{
				{Path: "/srv", Action: ActionBlock, Recursive: true, Mode: ModeFilesystem, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 100 << 20},
			},
		},
		{
			name:       "sizes in bytes as numbers",
			src:        "settings {\n  max_file_size = 1048576\n}\nwatch \"/srv\" {\n  max_file_size = 4096\n}\nwatch \"/home\" {}\n",
			wantEngine: Engine{Kind: EngineBuiltin, VerifySignatures: true},
			wantSettings: func() Settings {
				s := defaults
				s.MaxFileSize = 1 << 20
				return s
			}(),
			wantWatches: []Watch{
				{Path: "/srv", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 4096},
				{Path: "/home", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 1 << 20},
			},
		},
		{
			name: "sizes and order",
			src: `
settings { max_file_size = "2 GiB" }
watch "/a" { max_file_size = "3KiB" }
watch "/b" { max_file_size = "1B" }
watch "/a/b" {}
`,
			wantEngine: Engine{Kind: EngineBuiltin, VerifySignatures: true},
			wantSettings: func() Settings {
				s := defaults
				s.MaxFileSize = 2 << 30
				return s
			}(),
			wantWatches: []Watch{
				{Path: "/b", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 1},
				{Path: "/a/b", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 2 << 30},
				{Path: "/a", Action: ActionBlock, Recursive: true, Mode: ModeTree, On: DefaultEvents, OnError: OnErrorAllow, MaxFileSize: 3 << 10},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Parse([]byte(tt.src), "test.hcl")
			if len(diags) > 0 {
				t.Fatalf("got diagnostics %v, want none", diags)
			}
			if p.Filename != "test.hcl" {
				t.Errorf("Filename: got %q want %q", p.Filename, "test.hcl")
			}
			p.Engine.Range = hcl.Range{}
			if !reflect.DeepEqual(p.Engine, tt.wantEngine) {
				t.Errorf("Engine: got %+v want %+v", p.Engine, tt.wantEngine)
			}
			if p.Settings != tt.wantSettings {
				t.Errorf("Settings: got %+v want %+v", p.Settings, tt.wantSettings)
			}
			var got []Watch
			for _, w := range p.Watches {
				if w.Range.Filename != "test.hcl" || w.Range.Start.Line == 0 {
					t.Errorf("watch %s: got range %v, want one in test.hcl", w.Path, w.Range)
				}
				c := *w
				c.Range, c.globs = hcl.Range{}, nil
				got = append(got, c)
			}
			if !reflect.DeepEqual(got, tt.wantWatches) {
				t.Errorf("Watches:\ngot  %+v\nwant %+v", got, tt.wantWatches)
			}
			if !reflect.DeepEqual(p.Exclude, tt.wantExclude) {
				t.Errorf("Exclude: got %+v want %+v", p.Exclude, tt.wantExclude)
			}
		})
	}
}

// ignore_out_of_scope without a filesystem-mode watch is valid but
// does nothing: a warning at the attribute says so.
func TestIgnoreOutOfScopeWarning(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		wantWarn string // "" for no diagnostic; else line:col
	}{
		{"tree watch only", "settings {\n  ignore_out_of_scope = true\n}\nwatch \"/srv\" {}\n", "2:25"},
		{"filesystem watch", "settings {\n  ignore_out_of_scope = true\n}\nwatch \"/srv\" {\n  mode = \"filesystem\"\n}\n", ""},
		{"off", "settings {\n  ignore_out_of_scope = false\n}\nwatch \"/srv\" {}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := Parse([]byte(tt.src), "test.hcl")
			if p == nil {
				t.Fatalf("got errors %v, want a policy", diags)
			}
			var got string
			for _, d := range diags {
				got = fmt.Sprintf("%d:%d", d.Subject.Start.Line, d.Subject.Start.Column)
				if d.Severity != hcl.DiagWarning || d.Summary != "ignore_out_of_scope has no effect" {
					t.Errorf("got %v %q, want a warning", d.Severity, d.Summary)
				}
			}
			if len(diags) > 1 || got != tt.wantWarn {
				t.Errorf("got %d diagnostics, last at %q, want at most one at %q", len(diags), got, tt.wantWarn)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "4096", want: 4096},
		{in: "1B", want: 1},
		{in: "1KB", want: 1000},
		{in: "1KiB", want: 1024},
		{in: "100MiB", want: 100 << 20},
		{in: "3 MB", want: 3_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "8GiB", want: 8 << 30},
		{in: "0", wantErr: true},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "1.5MiB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "10mb", wantErr: true},
		{in: "10TB", wantErr: true},
		{in: "99999999999999999999", wantErr: true},
		{in: "9000000000GiB", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseSize(%q): got %d, %v want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// want is one expected error, read from a "# want: L:C Summary | detail"
// line in a testdata/bad file.
type want struct {
	line, col int
	summary   string
	detail    string
}

func (w want) String() string {
	return fmt.Sprintf("%d:%d %s | %s", w.line, w.col, w.summary, w.detail)
}

func readWants(t *testing.T, src []byte) []want {
	t.Helper()
	var wants []want
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "# want: ")
		if !ok {
			continue
		}
		var w want
		if _, err := fmt.Sscanf(rest, "%d:%d", &w.line, &w.col); err != nil {
			t.Fatalf("bad want line %q: %v", sc.Text(), err)
		}
		rest = rest[strings.IndexByte(rest, ' ')+1:]
		w.summary, w.detail, _ = strings.Cut(rest, " | ")
		wants = append(wants, w)
	}
	return wants
}

// TestBad checks that each testdata/bad file yields exactly the errors its
// "# want:" lines list, each at its line and column.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("got %d bad files (%v), want some", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			wants := readWants(t, src)
			if len(wants) == 0 {
				t.Fatalf("%s has no # want: lines", f)
			}
			p, diags := Load(f)
			if p != nil {
				t.Errorf("got a policy, want nil with errors")
			}
			var got []want
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				if d.Subject == nil || d.Subject.Filename != f {
					t.Errorf("%q: got subject %v, want one in %s", d.Summary, d.Subject, f)
					continue
				}
				got = append(got, want{d.Subject.Start.Line, d.Subject.Start.Column, d.Summary, d.Detail})
			}
			sort.Slice(wants, func(i, j int) bool {
				a, b := wants[i], wants[j]
				return a.line < b.line || a.line == b.line && a.col < b.col
			})
			if len(got) != len(wants) {
				t.Fatalf("got %d errors:\n%v\nwant %d:\n%v", len(got), got, len(wants), wants)
			}
			for i, w := range wants {
				g := got[i]
				if g.line != w.line || g.col != w.col || g.summary != w.summary || !strings.Contains(g.detail, w.detail) {
					t.Errorf("error %d: got %v want %v", i, g, w)
				}
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	name := filepath.Join(t.TempDir(), "missing.hcl")
	p, diags := Load(name)
	if p != nil || !diags.HasErrors() {
		t.Fatalf("got %v, %v want nil and an error", p, diags)
	}
	if s := diags[0].Subject; s == nil || s.Filename != name {
		t.Errorf("got subject %v want one in %s", s, name)
	}
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, diags); err != nil {
		t.Fatal(err)
	}
	if want := name + ":1,1: Error: Cannot read policy file"; !strings.Contains(buf.String(), want) {
		t.Errorf("got %q want it to contain %q", buf.String(), want)
	}
}

// A policy path that is not a regular file is refused at once: a FIFO
// without a writer would hold the open, and /dev/zero the read, forever.
// So is a policy too large to be one.
func TestLoadNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.hcl")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.hcl")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), maxPolicySize/2+1), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"fifo", fifo, "Policy " + fifo + ": not a regular file."},
		{"link to a fifo", link, "Policy " + link + ": not a regular file."},
		{"character device", "/dev/zero", "Policy /dev/zero: not a regular file."},
		{"directory", dir, "Policy " + dir + ": not a regular file."},
		{"too large", big, "Policy " + big + ": larger than 1 MiB, the limit."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan hcl.Diagnostics, 1)
			go func() {
				_, diags := Load(tt.path)
				done <- diags
			}()
			var diags hcl.Diagnostics
			select {
			case diags = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("Load(%s) still running after 5s", tt.path)
			}
			if len(diags) != 1 || diags[0].Summary != "Cannot read policy file" || diags[0].Detail != tt.want {
				t.Errorf("got %v\nwant Cannot read policy file: %s", diags, tt.want)
			}
		})
	}
}

// TestShippedPolicies parses every policy we ship: each is a fixture.
// Parse, not Load: whether their paths exist depends on the host, and
// Load warns about those that do not.
func TestShippedPolicies(t *testing.T) {
	files, _ := filepath.Glob("../../policies/*.hcl")
	examples, _ := filepath.Glob("../../policies/examples/*.hcl")
	files = append(files, examples...)
	if len(files) < 2 {
		t.Fatalf("got %d policies, want default.hcl and examples", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, diags := Parse(src, f)
			if len(diags) > 0 {
				var buf bytes.Buffer
				_ = WriteDiagnostics(&buf, diags)
				t.Fatalf("got diagnostics, want none:\n%s", buf.String())
			}
			if len(p.Watches) == 0 {
				t.Fatalf("got no watches")
			}
			for _, w := range p.Watches {
				if w.Path == "/" || filepath.Dir(w.Path) == "/" && isSystem(w.Path) {
					t.Errorf("watch %s: a shipped policy must not watch system trees", w.Path)
				}
			}
		})
	}
}

func isSystem(p string) bool {
	switch p {
	case "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/boot", "/run", "/tmp", "/var":
		return true
	}
	return false
}

func TestDefaultPolicy(t *testing.T) {
	p, diags := Load("../../policies/default.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if p.Settings != DefaultSettings() {
		t.Errorf("settings: got %+v want the defaults %+v", p.Settings, DefaultSettings())
	}
	for _, w := range p.Watches {
		if w.Action != ActionBlock {
			t.Errorf("watch %s: got action %s want block", w.Path, w.Action)
		}
	}
	want := []string{"/var/lib/clamav", "/var/lib/vigil/db"}
	if p.Engine.Kind != EngineBuiltin || !reflect.DeepEqual(p.Engine.Databases, want) {
		t.Errorf("engine: got %s %v want builtin %v", p.Engine.Kind, p.Engine.Databases, want)
	}
}

func TestWriteDiagnostics(t *testing.T) {
	src := "watch \"/srv\" {}\nsettings {\n\tworkers = \"x\"\n}\n"
	_, diags := Parse([]byte(src), "file.hcl")
	if len(diags) != 1 {
		t.Fatalf("got %d diagnostics want 1: %v", len(diags), diags)
	}
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, diags); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"file.hcl:3,12: Error: Invalid workers",
		"   3: \tworkers = \"x\"\n",
		"\n      \t          ^~~\n",
		"number is required",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("got\n%s\nwant it to contain %q", out, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, glob := range []string{"../../policies/*.hcl", "../../policies/examples/*.hcl", "testdata/bad/*.hcl"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			if src, err := os.ReadFile(name); err == nil {
				f.Add(src)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, diags := Parse(src, "fuzz.hcl")
		if diags.HasErrors() != (p == nil) {
			t.Fatalf("got policy %v with errors %v", p != nil, diags.HasErrors())
		}
		for _, d := range diags {
			if d.Severity == hcl.DiagError && (d.Subject == nil || d.Subject.Filename != "fuzz.hcl") {
				t.Fatalf("%q: got subject %v, want one in fuzz.hcl", d.Summary, d.Subject)
			}
		}
		if p == nil {
			return
		}
		for _, w := range p.Watches {
			if !filepath.IsAbs(w.Path) || filepath.Clean(w.Path) != w.Path {
				t.Fatalf("got watch path %q, want absolute and clean", w.Path)
			}
			if got, _ := p.Match(w.Path); got != w {
				t.Fatalf("Match(%q): got %v want its own watch", w.Path, got)
			}
		}
		var buf bytes.Buffer
		if err := WriteDiagnostics(&buf, diags); err != nil {
			t.Fatal(err)
		}
	})
}
