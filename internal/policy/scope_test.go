package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestOutsideReaches(t *testing.T) {
	src := `
watch "/srv/www" {
  mode = "filesystem"
}
watch "/home/shared" {
  recursive = false
}
`
	// Past linearMax watches Outside walks up through the index instead.
	var many strings.Builder
	many.WriteString(src)
	for i := range linearMax + 1 {
		fmt.Fprintf(&many, "watch \"/opt/w%d\" {}\n", i)
	}
	tests := []struct {
		dir         string
		wantOutside bool
		wantReaches bool
	}{
		{"/srv/www", false, true},
		{"/srv/www/a/b", false, true},
		{"/srv", true, true}, // outside, but holds a watch
		{"/", true, true},
		{"/srv/www2", true, false},
		{"/srv/ww", true, false},
		{"/home/shared/sub", false, true}, // a non-recursive watch is still an ancestor
		{"/usr/lib", true, false},
		{"/home", true, true},
	}
	for _, name := range []string{"few", "many"} {
		text := map[string]string{"few": src, "many": many.String()}[name]
		p, diags := Parse([]byte(text), "test.hcl")
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if name == "many" && p.ix.byPath == nil {
			t.Fatalf("many: got no path index, want one")
		}
		for _, tt := range tests {
			if got := p.Outside(tt.dir); got != tt.wantOutside {
				t.Errorf("%s: Outside(%q): got %v want %v", name, tt.dir, got, tt.wantOutside)
			}
			if got := p.Reaches(tt.dir); got != tt.wantReaches {
				t.Errorf("%s: Reaches(%q): got %v want %v", name, tt.dir, got, tt.wantReaches)
			}
		}
	}
	// A policy literal has no index: the slow path must agree.
	lit := &Policy{Watches: []*Watch{{Path: "/srv/www"}}}
	if lit.Outside("/srv/www/x") || !lit.Outside("/srv") || !lit.Reaches("/srv") {
		t.Errorf("literal: got Outside(/srv/www/x)=%v Outside(/srv)=%v Reaches(/srv)=%v, want false true true",
			lit.Outside("/srv/www/x"), lit.Outside("/srv"), lit.Reaches("/srv"))
	}
}
