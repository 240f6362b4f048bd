package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/policy"
)

// unitSettings reads deploy/vigil.service's [Service] settings, each
// setting's values split on spaces.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "vigil.service"))
	if err != nil {
		t.Fatal(err)
	}
	set := make(map[string][]string)
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("vigil.service: not a setting: %q", line)
		}
		set[k] = append(set[k], strings.Fields(v)...)
	}
	return set
}

// The shipped unit lets vigil keep what it needs: every capability it
// keeps once running, and a writable quarantine store at its default
// place.
func TestUnitAllowsWhatVigilNeeds(t *testing.T) {
	names := map[uintptr]string{
		unix.CAP_SYS_ADMIN:       "CAP_SYS_ADMIN",
		unix.CAP_BPF:             "CAP_BPF",
		unix.CAP_PERFMON:         "CAP_PERFMON",
		unix.CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
		unix.CAP_SYS_PTRACE:      "CAP_SYS_PTRACE",
		unix.CAP_DAC_OVERRIDE:    "CAP_DAC_OVERRIDE",
		unix.CAP_FOWNER:          "CAP_FOWNER",
	}
	set := unitSettings(t)
	bounding := set["CapabilityBoundingSet"]
	needed := map[string]bool{}
	for _, c := range append(keptCaps[:len(keptCaps):len(keptCaps)], quarantineCaps...) {
		name, ok := names[c]
		if !ok {
			t.Fatalf("capability %d has no name in this test", c)
		}
		needed[name] = true
		if !slices.Contains(bounding, name) {
			t.Errorf("CapabilityBoundingSet lacks %s, which vigil keeps", name)
		}
	}
	for _, name := range bounding {
		if !needed[name] {
			t.Errorf("CapabilityBoundingSet has %s, which vigil drops at start: it bounds a service to what it uses", name)
		}
	}

	if set["ProtectSystem"][0] != "strict" {
		return
	}
	writable := set["ReadWritePaths"]
	for _, d := range set["StateDirectory"] {
		writable = append(writable, filepath.Join("/var/lib", d))
	}
	for _, w := range writable {
		if policy.DefaultQuarantineDir == w || strings.HasPrefix(policy.DefaultQuarantineDir, w+"/") {
			return
		}
	}
	t.Errorf("quarantine_dir's default %s is read-only under ProtectSystem=strict: writable are %v",
		policy.DefaultQuarantineDir, writable)
}
