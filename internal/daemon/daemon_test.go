package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Without a text writer for them, a policy's diagnostics are log
// records, one each, with where and what: nothing else reaches the log.
func TestLoadPolicyLogsDiagnostics(t *testing.T) {
	dir := t.TempDir()
	const warning = "settings {\n  ignore_out_of_scope = true\n}\n"
	tests := []struct {
		name    string
		policy  string
		wantErr bool
		want    []map[string]any // fields each record must have, in order
	}{
		{"warning only", warning + "watch \"/srv\" {}\n", false, []map[string]any{
			{"@level": "warn", "@module": "vigil.policy", "line": 2.0, "col": 25.0, "severity": "warning",
				"summary": "ignore_out_of_scope has no effect"},
		}},
		{"error and warning", warning + "watch \"/srv\" {\n  colour = \"red\"\n}\n", true, []map[string]any{
			{"@level": "warn", "line": 2.0, "severity": "warning"},
			{"@level": "error", "@module": "vigil.policy", "line": 5.0, "col": 3.0, "severity": "error",
				"summary": "Unsupported argument", "detail": `An argument named "colour" is not expected here.`},
		}},
		{"missing file", "", true, []map[string]any{
			{"@level": "error", "line": 1.0, "col": 1.0, "summary": "Cannot read policy file"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".hcl")
			if tt.policy != "" {
				if err := os.WriteFile(file, []byte(tt.policy), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			log := hclog.New(&hclog.LoggerOptions{Name: "vigil", Output: &out, JSONFormat: true})
			_, err := loadPolicy(file, nil, log)
			if gotErr := errors.Is(err, ErrPolicy); gotErr != tt.wantErr {
				t.Errorf("got error %v, want ErrPolicy: %v", err, tt.wantErr)
			}
			var recs []map[string]any
			for line := range strings.Lines(out.String()) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q is not JSON: %v", line, err)
				}
				recs = append(recs, rec)
			}
			if len(recs) != len(tt.want) {
				t.Fatalf("got %d records, want %d:\n%s", len(recs), len(tt.want), out.String())
			}
			for i, want := range tt.want {
				want["file"] = file
				for k, v := range want {
					if recs[i][k] != v {
						t.Errorf("record %d: %s: got %v, want %v", i, k, recs[i][k], v)
					}
				}
			}
		})
	}
}
