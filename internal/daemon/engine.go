package daemon

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/scan/clamav"
	"github.com/vigilsec/vigil/internal/scan/clamd"
)

// NewEngine builds the policy's engine.
//
// builtin: database paths that do not exist are skipped with a warning, so
// one policy serves hosts with and without ClamAV's databases; EICAR is
// detected either way.
//
// clamd: one session per worker, each request bounded by the engine's
// timeout (settings.scan_timeout unless set); clamd must answer PING now.
func NewEngine(p *policy.Policy, log hclog.Logger) (scan.Engine, error) {
	if p.Engine.Kind == policy.EngineClamd {
		timeout := p.Engine.Timeout
		if timeout <= 0 {
			timeout = p.Settings.ScanTimeout
		}
		e, err := clamd.New(clamd.Config{
			Address: p.Engine.Address,
			Timeout: timeout,
			Conns:   p.Settings.Workers,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("start clamd engine: %w", err)
		}
		log.Info("clamd engine ready", "engine", e.Name(), "address", p.Engine.Address, "version", e.Version())
		return e, nil
	}
	var paths []string
	for _, db := range p.Engine.Databases {
		if _, err := os.Stat(db); err != nil {
			log.Warn("database path skipped", "path", db, "error", err)
			continue
		}
		paths = append(paths, db)
	}
	e, err := clamav.Options{SkipSignatureCheck: !p.Engine.VerifySignatures}.Load(paths, log)
	if err != nil {
		return nil, fmt.Errorf("load databases: %w", err)
	}
	log.Info("databases loaded", "report", e.Report().String())
	return e, nil
}
