package policy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// writePolicy writes src, with DIR replaced by dir, to a policy file.
func writePolicy(t *testing.T, dir, src string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "p.hcl")
	if err := os.WriteFile(f, []byte(fmt.Sprintf(src, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func diagsAt(diags hcl.Diagnostics) []string {
	var got []string
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		got = append(got, fmt.Sprintf("%d:%d %s %s", d.Subject.Start.Line, d.Subject.Start.Column, sev, d.Summary))
	}
	return got
}

// Load warns about watch paths and databases that are not there; the
// policy stays valid. Parse, which never looks, does not.
func TestLoadPathWarnings(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	os.Symlink(filepath.Join(dir, "d"), filepath.Join(dir, "link"))
	os.Symlink(filepath.Join(dir, "f"), filepath.Join(dir, "flink"))
	f := writePolicy(t, dir, `engine "builtin" {
  databases = ["%[1]s/d", "%[1]s/nodb", "%[1]s/f"]
}
watch "%[1]s/d" {}
watch "%[1]s/link" {}
watch "%[1]s/missing/x" {}
watch "%[1]s/f" {}
watch "%[1]s/f/below" {}
watch "%[1]s/flink" {}
`)
	p, diags := Load(f)
	if p == nil {
		t.Fatalf("got errors %v, want a policy", diags)
	}
	dbCol := len(`  databases = ["`+dir+`/d", `) + 1 // the second element
	want := []string{
		fmt.Sprintf("2:%d warning Database path does not exist", dbCol),
		"5:7 warning Watch path already watched",
		"6:7 warning Watch path does not exist",
		"7:7 warning Watch path is not a directory",
		"8:7 warning Watch path does not exist",
		"9:7 warning Watch path already watched", // the daemon drops it as it does a directory's
	}
	if got := diagsAt(diags); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if len(diags) > 1 {
		if want := fmt.Sprintf("%q is %q once links are followed, as %q at %s:4,7 is; vigil keeps that watch and ignores this one.",
			dir+"/link", dir+"/d", dir+"/d", f); diags[1].Detail != want {
			t.Errorf("got detail %q\nwant %q", diags[1].Detail, want)
		}
	}
	for _, d := range diags {
		if d.Subject.Filename != f {
			t.Errorf("%s: got file %q want %q", d.Summary, d.Subject.Filename, f)
		}
	}

	src, _ := os.ReadFile(f)
	if _, diags := Parse(src, f); len(diags) > 0 {
		t.Errorf("Parse: got %q, want no diagnostics", diagsAt(diags))
	}
}

// A path on a filesystem that does not answer holds Load for
// statTimeout at most, and gets no warning.
func TestLoadPathHung(t *testing.T) {
	dir := t.TempDir()
	hung := filepath.Join(dir, "nfs", "x")
	release := make(chan struct{})
	defer close(release)
	oldStat, oldTimeout := stat, statTimeout
	defer func() { stat, statTimeout = oldStat, oldTimeout }()
	stat = func(p string) (fs.FileInfo, error) {
		if p == hung {
			<-release
		}
		return os.Stat(p)
	}
	statTimeout = 100 * time.Millisecond

	f := writePolicy(t, dir, "watch \"%[1]s/nfs/x\" {}\nwatch \"%[1]s/missing\" {}\n")
	start := time.Now()
	p, diags := Load(f)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Load took %v, want about %v", d, statTimeout)
	}
	if p == nil {
		t.Fatalf("got errors %v, want a policy", diags)
	}
	want := []string{"2:7 warning Watch path does not exist"}
	if got := diagsAt(diags); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}
