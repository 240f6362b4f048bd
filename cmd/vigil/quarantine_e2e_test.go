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

// A store removed while vigil runs is made again at the next quarantine.
func TestQuarantineStoreRemoved(t *testing.T) {
	root := testutil.TempDir(t)
	d := startDaemon(t, fmt.Sprintf("watch %q {\n  action = \"quarantine\"\n}\n", root), "")
	dir := filepath.Join(d.state, "quarantine")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(root, "evil.com")
	writeFile(t, evil, clamav.EICAR)
	wantDenied(t, evil)
	recs := d.alerts(t, 1)
	if len(recs) != 1 || recs[0].Action != "quarantined" || recs[0].Quarantine == "" {
		t.Fatalf("alerts: got %+v, want the file quarantined in a store made again", recs)
	}
	if code, stdout, stderr := runCLI("quarantine", "list", "--dir", dir); code != 0 || !strings.Contains(stdout, recs[0].Quarantine) {
		t.Errorf("quarantine list: exit %d, want the entry\n%s%s", code, stdout, stderr)
	}
	d.waitLog(t, "the quarantine store was removed: made again")
}

// A file the quarantine has no room for (the store leaves 5% of its
// filesystem free) stays in place, blocked, and its alert says why.
func TestQuarantineFull(t *testing.T) {
	store := testutil.MountTmpfsSized(t, "size=1m")
	root, db := testutil.TempDir(t), testutil.TempDir(t)
	big := make([]byte, 1000<<10) // fits in 1 MiB, but not with 5% left free
	copy(big, "not EICAR, but listed by hash")
	bigPath, small := filepath.Join(root, "big.bin"), filepath.Join(root, "small.com")
	writeFile(t, bigPath, string(big))
	writeFile(t, small, clamav.EICAR)
	writeFile(t, filepath.Join(db, "test.hdb"), fmt.Sprintf("%x:%d:Test.Big\n", md5sum(big), len(big)))
	d := startDaemonWith(t, fmt.Sprintf("watch %q {\n  action = \"quarantine\"\n}\n", root),
		fmt.Sprintf("engine \"builtin\" {\n  databases = [%q]\n}\n", db),
		fmt.Sprintf("  quarantine_dir = %q", filepath.Join(store, "q")))

	wantDenied(t, bigPath)
	recs := d.alerts(t, 1)
	if len(recs) != 1 || recs[0].Action != "blocked" || !strings.Contains(recs[0].Error, "quarantine store full") {
		t.Fatalf("alerts: got %+v, want one blocked record saying the store is full", recs)
	}
	if _, err := os.Lstat(bigPath); err != nil {
		t.Errorf("the file the store had no room for: %v, want it in place", err)
	}

	// A file that fits is still taken.
	wantDenied(t, small)
	recs = d.alerts(t, 2)
	if len(recs) != 2 || recs[1].Action != "quarantined" || recs[1].Path != small {
		t.Fatalf("alerts: got %+v, want the small file quarantined", recs)
	}
}
