package policy

import (
	"fmt"
	"strings"
	"testing"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, diags := Parse([]byte(src), "test.hcl")
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	return p
}

const matchPolicy = `
watch "/srv/up" {}
watch "/srv/uploads" {
  exclude = ["*.part", "cache", "tmp/", "/anchored/*.log", "deep/**/x", "**/.git", "build/**", "[0-9]?.bak"]
}
watch "/srv/uploads/logs" {
  action = "alert"
}
watch "/srv/uploads/logs/flat" {
  recursive = false
  exclude   = ["*"]
}
watch "/home" {
  recursive = false
}
watch "/srv/neg" {
  exclude = ["*.log", "!keep.log", "logs", "!logs/keep.log", "[!x]y.z", "sub/", "out/**", "!out/keep",
             "[]a]b", "[!]]c", "\\!bang"]
}
`

func TestMatch(t *testing.T) {
	p := mustParse(t, matchPolicy)
	tests := []struct {
		path         string
		want         string // watch path, "" for none
		wantExcluded bool
	}{
		{path: "/srv/up", want: "/srv/up"},
		{path: "/srv/up/x", want: "/srv/up"},
		{path: "/srv/upx", want: ""},
		{path: "/srv", want: ""},
		{path: "/", want: ""},
		{path: "/srv/uploads", want: "/srv/uploads"},
		{path: "/srv/uploads/a/b/c.exe", want: "/srv/uploads"},
		{path: "/srv/uploadsx/a", want: ""},
		// Longest watch decides.
		{path: "/srv/uploads/logs", want: "/srv/uploads/logs"},
		{path: "/srv/uploads/logs/a/b.log", want: "/srv/uploads/logs"},
		{path: "/srv/uploads/logsx", want: "/srv/uploads"},
		// A non-recursive watch covers itself and its direct children;
		// deeper paths fall to the next covering watch.
		{path: "/srv/uploads/logs/flat", want: "/srv/uploads/logs/flat"},
		{path: "/srv/uploads/logs/flat/f", want: "/srv/uploads/logs/flat", wantExcluded: true},
		{path: "/srv/uploads/logs/flat/d/f", want: "/srv/uploads/logs"},
		{path: "/home", want: "/home"},
		{path: "/home/alice", want: "/home"},
		{path: "/home/alice/x", want: ""},
		// Globs without "/" match a component at any depth, and a
		// matching directory excludes its contents.
		{path: "/srv/uploads/x.part", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/a/b/x.part", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/x.part.exe", want: "/srv/uploads"},
		{path: "/srv/uploads/cache", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/a/cache/b/c", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/a/cached", want: "/srv/uploads"},
		{path: "/srv/uploads/tmp/f", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/tmp", want: "/srv/uploads"}, // "tmp/": a file named tmp is not a directory
		{path: "/srv/uploads/a/tmp", want: "/srv/uploads"},
		{path: "/srv/uploads/a/tmp/f", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/12.bak", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/a2.bak", want: "/srv/uploads"},
		// Globs with "/" are anchored at the watch root.
		{path: "/srv/uploads/anchored/a.log", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/x/anchored/a.log", want: "/srv/uploads"},
		{path: "/srv/uploads/anchored/d/a.txt", want: "/srv/uploads"},
		{path: "/srv/uploads/anchored/a.log/inside", want: "/srv/uploads", wantExcluded: true},
		// "**" spans zero or more components.
		{path: "/srv/uploads/deep/x", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/deep/a/b/x", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/deep/a/b/x/y", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/deep/a/b/y", want: "/srv/uploads"},
		{path: "/srv/uploads/a/deep/x", want: "/srv/uploads"},
		{path: "/srv/uploads/a/b/.git/config", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/build/out/f", want: "/srv/uploads", wantExcluded: true},
		{path: "/srv/uploads/a/build/f", want: "/srv/uploads"},
		// "!" re-includes what an earlier glob excluded, but not below an
		// excluded directory.
		{path: "/srv/neg/a.log", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/keep.log", want: "/srv/neg"},
		{path: "/srv/neg/d/keep.log", want: "/srv/neg"},
		{path: "/srv/neg/logs/a", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/logs/keep.log", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/keep.log/a.txt", want: "/srv/neg"},
		{path: "/srv/neg/keep.log/a.log", want: "/srv/neg", wantExcluded: true},
		// "[!x]" is a negated class, as in gitignore.
		{path: "/srv/neg/xy.z", want: "/srv/neg"},
		{path: "/srv/neg/!y.z", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/ay.z", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/]b", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/ab", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/cb", want: "/srv/neg"},
		{path: "/srv/neg/]c", want: "/srv/neg"},
		{path: "/srv/neg/ac", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/!bang", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/bang", want: "/srv/neg"},
		// A trailing "/" matches directories only.
		{path: "/srv/neg/sub", want: "/srv/neg"},
		{path: "/srv/neg/a/sub", want: "/srv/neg"},
		{path: "/srv/neg/sub/f", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/a/sub/b/f", want: "/srv/neg", wantExcluded: true},
		// "out/**" is what is in out, not out, so "!out/keep" re-includes.
		{path: "/srv/neg/out", want: "/srv/neg"},
		{path: "/srv/neg/out/f", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/out/d/keep", want: "/srv/neg", wantExcluded: true},
		{path: "/srv/neg/out/keep", want: "/srv/neg"},
		// The watch root itself is never excluded by a component glob.
		{path: "/srv/uploads/logs/flat", want: "/srv/uploads/logs/flat"},
	}
	for _, tt := range tests {
		w, excluded := p.Match(tt.path)
		got := ""
		if w != nil {
			got = w.Path
		}
		if got != tt.want || excluded != tt.wantExcluded {
			t.Errorf("Match(%q): got %q, %v want %q, %v", tt.path, got, excluded, tt.want, tt.wantExcluded)
		}
	}
}

func TestMatchRoot(t *testing.T) {
	p := mustParse(t, `
watch "/" {
  recursive = false
}
watch "/data" {
  exclude = ["**"]
}
`)
	tests := []struct {
		path         string
		want         string
		wantExcluded bool
	}{
		{path: "/", want: "/"},
		{path: "/etc", want: "/"},
		{path: "/etc/passwd", want: ""},
		{path: "/data", want: "/data"}, // a component glob never excludes the root
		{path: "/data/x", want: "/data", wantExcluded: true},
		{path: "relative", want: ""},
		{path: "", want: ""},
	}
	for _, tt := range tests {
		w, excluded := p.Match(tt.path)
		got := ""
		if w != nil {
			got = w.Path
		}
		if got != tt.want || excluded != tt.wantExcluded {
			t.Errorf("Match(%q): got %q, %v want %q, %v", tt.path, got, excluded, tt.want, tt.wantExcluded)
		}
	}
}

// TestMatchStrategies checks that the slice scan, the map walk and the
// fallback for policies not built by Parse agree.
func TestMatchStrategies(t *testing.T) {
	var src strings.Builder
	src.WriteString(matchPolicy)
	for i := range 40 {
		fmt.Fprintf(&src, "watch \"/srv/uploads/u%d\" {\n recursive = %v\n}\n", i, i%3 != 0)
	}
	big := mustParse(t, src.String())
	if big.ix.byPath == nil {
		t.Fatalf("got no map index for %d watches", len(big.Watches))
	}
	small := mustParse(t, matchPolicy)
	if small.ix.byPath != nil {
		t.Fatalf("got a map index for %d watches", len(small.Watches))
	}
	literal := &Policy{}
	for _, w := range big.Watches {
		c := *w
		c.globs = nil
		literal.Watches = append([]*Watch{&c}, literal.Watches...) // reversed: unsorted
	}

	paths := []string{"/", "/srv", "/srv/up/x", "/srv/uploads", "/srv/uploads/logs/flat/d/f",
		"/srv/uploads/u1", "/srv/uploads/u1/a/b", "/srv/uploads/u3/a", "/srv/uploads/u3/a/b",
		"/srv/uploads/u30x/a", "/srv/uploads/u7/x.part", "/srv/uploads/u3/a/x.part", "/home/a/b",
		"/srv/uploads/tmp", "/srv/uploads/tmp/f", "/srv/neg/keep.log", "/srv/neg/logs/keep.log",
		"/srv/neg/xy.z", "/srv/neg/ay.z", "/srv/neg/sub", "/srv/neg/sub/f", "/srv/neg/out/keep"}
	for _, path := range paths {
		wb, eb := big.Match(path)
		wl, el := literal.Match(path)
		if name(wb) != name(wl) || eb != el {
			t.Errorf("Match(%q): map walk got %s, %v; literal got %s, %v", path, name(wb), eb, name(wl), el)
		}
		if strings.HasPrefix(path, "/srv/uploads/u") {
			continue
		}
		ws, es := small.Match(path)
		if name(wb) != name(ws) || eb != es {
			t.Errorf("Match(%q): map walk got %s, %v; slice got %s, %v", path, name(wb), eb, name(ws), es)
		}
	}
	if w, _ := big.Match("/srv/uploads/u3/a/b"); name(w) != "/srv/uploads" {
		t.Errorf("non-recursive u3: got %s want /srv/uploads", name(w))
	}
}

func name(w *Watch) string {
	if w == nil {
		return "<nil>"
	}
	return w.Path
}

func TestMatchAllocs(t *testing.T) {
	p := mustParse(t, matchPolicy)
	allocs := testing.AllocsPerRun(100, func() {
		p.Match("/srv/uploads/a/deep/b/c/x.part")
		p.Match("/srv/uploads/deep/a/b/x")
		p.Match("/srv/uploads/logs/flat/d/f")
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per Match, want 0", allocs)
	}
}

func TestWatched(t *testing.T) {
	p := mustParse(t, `
watch "/srv" {
  on = ["open"]
}
watch "/srv/bin" {
  on = ["exec"]
}
watch "/srv/flat" {
  on        = ["access"]
  recursive = false
}
`)
	tests := []struct {
		dir  string
		want Events
	}{
		{dir: "/", want: 0},
		{dir: "/sr", want: 0},
		{dir: "/srv", want: EventOpen},
		{dir: "/srv/a", want: EventOpen},
		{dir: "/srv/bin", want: EventOpen | EventExec},
		{dir: "/srv/bin/x", want: EventOpen | EventExec},
		{dir: "/srv/flat", want: EventOpen | EventAccess},
		{dir: "/srv/flat/sub", want: EventOpen},
		{dir: "/srvx", want: 0},
	}
	for _, tt := range tests {
		if got := p.Watched(tt.dir); got != tt.want {
			t.Errorf("Watched(%q): got %s want %s", tt.dir, got, tt.want)
		}
	}
}

func TestExcludedProcess(t *testing.T) {
	parsed := mustParse(t, `
watch "/srv" {}
exclude {
  uids = [997]
}
exclude {
  programs = ["/usr/bin/rsync"]
}
`)
	literal := &Policy{Exclude: parsed.Exclude}
	tests := []struct {
		uid  uint32
		exe  string
		want bool
	}{
		{uid: 997, exe: "/bin/cat", want: true},
		{uid: 0, exe: "/usr/bin/rsync", want: true},
		{uid: 1000, exe: "/usr/bin/rsync2", want: false},
		{uid: 0, exe: "", want: false},
	}
	for _, p := range []*Policy{parsed, literal} {
		if !p.HasProcessExcludes() {
			t.Errorf("HasProcessExcludes: got false want true")
		}
		for _, tt := range tests {
			if got := p.ExcludedProcess(tt.uid, tt.exe); got != tt.want {
				t.Errorf("ExcludedProcess(%d, %q): got %v want %v", tt.uid, tt.exe, got, tt.want)
			}
		}
	}
	if p := mustParse(t, `watch "/srv" {}`); p.HasProcessExcludes() || p.ExcludedProcess(0, "/bin/sh") {
		t.Errorf("policy without excludes: got process excludes")
	}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		ev   Events
		want string
	}{
		{ev: 0, want: "none"},
		{ev: EventOpen, want: "open"},
		{ev: EventExec | EventOpen, want: "open,exec"},
		{ev: EventOpen | EventExec | EventAccess, want: "open,exec,access"},
		{ev: EventAccess | 1<<7, want: "access,unknown"},
	}
	for _, tt := range tests {
		if got := tt.ev.String(); got != tt.want {
			t.Errorf("Events(%d).String(): got %q want %q", tt.ev, got, tt.want)
		}
	}
	ev := EventOpen | EventExec
	if !ev.Has(EventOpen) || !ev.Has(EventOpen|EventExec) || ev.Has(EventAccess) || ev.Has(EventOpen|EventAccess) {
		t.Errorf("Has: got wrong answers for %s", ev)
	}
}

func TestCompileGlob(t *testing.T) {
	tests := []struct {
		glob    string
		wantErr bool
	}{
		{glob: "*.part"},
		{glob: "cache/"},
		{glob: "/a/b"},
		{glob: "a/**/b"},
		{glob: "[a-z]?"},
		{glob: "", wantErr: true},
		{glob: "/", wantErr: true},
		{glob: "[a", wantErr: true},
		{glob: "a/../b", wantErr: true},
		{glob: "./a", wantErr: true},
		{glob: `a\`, wantErr: true},
		{glob: "!keep.log"},
		{glob: "!/a/b/"},
		{glob: "[!x]y.z"},
		{glob: "[]a]"},
		{glob: "!", wantErr: true},
		{glob: "!/", wantErr: true},
		{glob: "[!", wantErr: true},
		{glob: "[!]", wantErr: true},
	}
	for _, tt := range tests {
		_, err := compileGlob(tt.glob)
		if (err != nil) != tt.wantErr {
			t.Errorf("compileGlob(%q): got error %v want error %v", tt.glob, err, tt.wantErr)
		}
	}
}

func TestFnmatchClasses(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{in: "plain", want: "plain"},
		{in: "[!x]y", want: "[^x]y"},
		{in: "[^x]y", want: "[^x]y"},
		{in: "[x!]", want: "[x!]"},
		{in: "!x", want: "!x"},
		{in: "[]x]", want: `[\]x]`},
		{in: "[!]x]", want: `[^\]x]`},
		{in: `\[!x]`, want: `\[!x]`},
		{in: `[\]!]`, want: `[\]!]`},
		{in: "[a][!b]", want: "[a][^b]"},
		{in: "[!", want: "[^"},
	}
	for _, tt := range tests {
		if got := fnmatchClasses(tt.in); got != tt.want {
			t.Errorf("fnmatchClasses(%q): got %q want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	p := mustParse(b, matchPolicy)
	paths := []string{
		"/srv/uploads/a/b/c/d/file.exe",
		"/srv/uploads/logs/2025/01/app.log",
		"/srv/uploads/a/b/x.part",
		"/var/lib/other/file",
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Match(paths[i%len(paths)])
	}
}
