package daemon

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/policy"
)

func TestNewEngine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.ctl")
	tests := []struct {
		name, src, wantName, wantErr string
	}{
		{"builtin", `watch "/srv" {}`, "builtin", ""},
		{"clamd down", `engine "clamd" { address = "unix://` + sock + `" }
settings { scan_timeout = "500ms" }
watch "/srv" {}`, "", "start clamd engine: clamd connect " + sock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, diags := policy.Parse([]byte(tt.src), "test.hcl")
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			e, err := NewEngine(p, hclog.NewNullLogger())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || e.Name() != tt.wantName {
				t.Fatalf("got %v, %v want engine %s", e, err, tt.wantName)
			}
		})
	}
}
