package dirtrace

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

const tracefsPath = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs at /sys/kernel/tracing unless it or the
// debugfs copy is mounted already, as root tools (perf, bpftrace) do.
func ensureTracefs(log hclog.Logger) error {
	for _, p := range []string{tracefsPath, "/sys/kernel/debug/tracing"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.TRACEFS_MAGIC {
			return nil
		}
	}
	if _, err := os.Stat(tracefsPath); err != nil {
		return fmt.Errorf("mount tracefs: %w", notSupported(err))
	}
	if err := unix.Mount("tracefs", tracefsPath, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount tracefs on %s: %w", tracefsPath, err)
	}
	log.Info("mounted tracefs", "path", tracefsPath)
	return nil
}
