package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestResolved(t *testing.T) {
	src := `
watch "/home" {
  action = "alert"
}
watch "/data/home/uploads" {}
watch "/missing" {}
watch "/alias" {}
`
	p, diags := Parse([]byte(src), "r.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	links := map[string]string{"/home": "/data/home", "/alias": "/data/home"}
	q, dups := p.Resolved(func(s string) (string, error) {
		if s == "/missing" {
			return "", errors.New("no such file")
		}
		if r, ok := links[s]; ok {
			return r, nil
		}
		return s, nil
	})
	if len(dups) != 1 || !strings.Contains(dups[0].Error(), `"/alias" at r.hcl:7,7 is "/data/home", already watched by "/home" at r.hcl:2,7`) {
		t.Fatalf("duplicates: got %v, want one naming /alias at r.hcl:7,7 and /home at r.hcl:2,7", dups)
	}
	if d := dups[0]; d.Kept.Path != "/home" || d.Dropped.Path != "/alias" || d.Real != "/data/home" {
		t.Errorf("duplicate: got kept %q dropped %q real %q, want /home, /alias, /data/home", d.Kept.Path, d.Dropped.Path, d.Real)
	}
	tests := []struct {
		path       string
		wantWatch  string
		wantAction Action
	}{
		{"/data/home/alice/f", "/data/home", ActionAlert},
		{"/data/home/uploads/f", "/data/home/uploads", ActionBlock},
		{"/missing/f", "/missing", ActionBlock},
		{"/home/alice/f", "", ""},
	}
	for _, tt := range tests {
		w, _ := q.Match(tt.path)
		if w == nil {
			if tt.wantWatch != "" {
				t.Errorf("Match(%q): got nil, want %s", tt.path, tt.wantWatch)
			}
			continue
		}
		if w.Path != tt.wantWatch || w.Action != tt.wantAction {
			t.Errorf("Match(%q): got %s (%s), want %s (%s)", tt.path, w.Path, w.Action, tt.wantWatch, tt.wantAction)
		}
	}
	if w, _ := p.Match("/home/alice/f"); w == nil || w.Path != "/home" {
		t.Errorf("Resolved changed the original policy")
	}
}
