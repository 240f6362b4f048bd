package daemon

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/scan/clamav"
)

// NewEngine builds the policy's engine. Database paths that do not exist
// are skipped with a warning, so one policy serves hosts with and without
// ClamAV's databases; EICAR is detected either way.
func NewEngine(p *policy.Policy, log hclog.Logger) (scan.Engine, error) {
	var paths []string
	for _, db := range p.Engine.Databases {
		if _, err := os.Stat(db); err != nil {
			log.Warn("database path skipped", "path", db, "error", err)
			continue
		}
		paths = append(paths, db)
	}
	e, err := clamav.Load(paths, log)
	if err != nil {
		return nil, fmt.Errorf("load databases: %w", err)
	}
	log.Info("databases loaded", "report", e.Report().String())
	return e, nil
}
