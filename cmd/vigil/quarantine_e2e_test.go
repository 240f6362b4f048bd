package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/testutil"
)

func TestQuarantineRoundTrip(t *testing.T) {
	root := testutil.TempDir(t)
	outside := testutil.TempDir(t)
	evil := filepath.Join(root, "sub", "evil.com")
	writeFile(t, evil, clamav.EICAR)
	d := startDaemon(t, fmt.Sprintf("watch %q {\n  action = \"quarantine\"\n}\n", root), "")
	dir := filepath.Join(d.state, "quarantine")

	wantDenied(t, evil)
	recs := d.alerts(t, 1)
	if len(recs) != 1 || recs[0].Action != "quarantined" || recs[0].Quarantine == "" || recs[0].Path != evil {
		t.Fatalf("alerts: got %+v, want one quarantined record for %s with an id", recs, evil)
	}
	id := recs[0].Quarantine
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Lstat(evil); os.IsNotExist(err) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%s still in place after quarantine", evil)
		}
	}

	code, stdout, stderr := runCLI("quarantine", "list", "--dir", dir)
	if code != 0 || !strings.Contains(stdout, id) || !strings.Contains(stdout, evil) {
		t.Errorf("quarantine list: exit %d\n%s%s", code, stdout, stderr)
	}
	// Restoring outside the watch it came from is refused.
	if code, _, _ := runCLI("quarantine", "restore", "--dir", dir, "--to", filepath.Join(outside, "x"), id); code != 1 {
		t.Errorf("restore outside the tree: exit %d, want 1", code)
	}
	if code, _, _ := runCLI("quarantine", "restore", "--dir", dir, "../../etc/passwd"); code == 0 {
		t.Errorf("restore of a traversal id: exit 0")
	}
	// Back where it was.
	if code, stdout, stderr := runCLI("quarantine", "restore", "--dir", dir, id); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, stdout, stderr)
	}
	wantDenied(t, evil) // still infected: quarantined again
}
