package mountinfo

import (
	"testing"
	"time"

	"github.com/vigilsec/vigil/internal/testutil"
)

// Changes says nothing while the mounts stay as they are, and says a
// mount made since it last looked.
func TestChanges(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	c, err := OpenChanges("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Other tests may mount as this one runs: wait for a quiet moment.
	for end := time.Now().Add(2 * time.Second); c.Changed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("Changed: true at every look for 2s, want false once the mounts stay as they are")
		}
	}
	testutil.MountTmpfs(t)
	if !c.Changed() {
		t.Error("Changed after a mount: got false, want true")
	}
}
