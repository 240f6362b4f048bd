package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// A policy given by a relative path is named by its absolute one: in
// the logs and errors here, and in status (cmd/vigil's TestStatus).
func TestRunNamesPolicyAbsolutely(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte("watch \"relative\" {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	want := filepath.Join(dir, "p.hcl")
	var out bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &out, JSONFormat: true})
	err := Run(t.Context(), Options{PolicyFile: "p.hcl", Log: log})
	if !errors.Is(err, ErrPolicy) || err.Error() != "load "+want+": policy has errors" {
		t.Errorf("got error %v, want ErrPolicy naming %s", err, want)
	}
	var rec struct{ File string }
	if err := json.NewDecoder(bytes.NewReader(out.Bytes())).Decode(&rec); err != nil || rec.File != want {
		t.Errorf("log: got file %q (%v), want %q:\n%s", rec.File, err, want, out.String())
	}
}

// A start stopped by an alert log or a quarantine store that cannot be
// opened says so once, before anything is marked.
func TestRunStoresUnopenable(t *testing.T) {
	dir := t.TempDir()
	notFile := filepath.Join(dir, "alerts") // a directory: cannot be appended to
	open := filepath.Join(dir, "q")         // a store group and others may enter
	for _, d := range []string{notFile, open, filepath.Join(dir, "w")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		alertLog string
		action   string
		want     string
	}{
		{"alert log", notFile, "block", "open alert log: open " + notFile + ": is a directory"},
		{"quarantine", filepath.Join(dir, "alerts.jsonl"), "quarantine",
			"open quarantine " + open + ": mode 0755 lets group or others in, want 0700"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, fmt.Sprintf("policy%d.hcl", i))
			pol := fmt.Sprintf("settings {\n  alert_log = %q\n  quarantine_dir = %q\n  control_socket = %q\n}\nwatch %q {\n  action = %q\n}\n",
				tt.alertLog, open, filepath.Join(dir, fmt.Sprintf("vigil%d.sock", i)), filepath.Join(dir, "w"), tt.action)
			if err := os.WriteFile(file, []byte(pol), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Run(t.Context(), Options{PolicyFile: file, Log: hclog.NewNullLogger()})
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}
