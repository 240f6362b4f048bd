package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigilsec/vigil/internal/metrics"
	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/watch"
)

// newMetrics exposes the daemon's counters, read at scrape time from
// whichever instance is current. One registry serves the whole process:
// counters are shared across reloads.
func (d *daemon) newMetrics() *prometheus.Registry {
	cur := d.cur.Load
	return metrics.NewRegistry(metrics.Sources{
		Loop: d.counters.Snapshot,
		QueueDepth: func() int {
			if i := cur(); i != nil {
				return i.loop.QueueDepth()
			}
			return 0
		},
		Dirs: func() int {
			if i := cur(); i != nil {
				return i.watches.Dirs()
			}
			return 0
		},
		Manager: func() watch.ManagerStats {
			if i := cur(); i != nil {
				return i.watches.Stats()
			}
			return watch.ManagerStats{}
		},
		Alerts: d.alerts.Stats,
		Cache:  d.cache.Stats,
		Hook: func() string {
			if i := cur(); i != nil {
				return string(i.hook)
			}
			return ""
		},
		Engine: func() (string, string) {
			if i := cur(); i != nil {
				st := i.loop.State()
				return st.Engine.Name(), st.Engine.Version()
			}
			return "", ""
		},
		EngineDown: func() bool {
			i := cur()
			return i != nil && scan.HealthOf(i.loop.State().Engine) != nil
		},
		Ready: d.ready.Load,
	})
}
