package dirtrace

import (
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/features"
)

// RungProbe is what probing one rung of the ladder found.
type RungProbe struct {
	features.Probe
	Hook Hook
}

// Probe loads and attaches each rung of the ladder in turn, then detaches
// it, and tells which work here and why the others do not, best first.
// Like Open, it mounts tracefs when a rung needs it.
func Probe() []RungProbe {
	var out []RungProbe
	c := newClimb(hclog.NewNullLogger())
	for _, h := range Ladder {
		if h == HookNone {
			continue
		}
		p := RungProbe{Probe: features.Probe{Name: "eBPF directory events, hook " + string(h)}, Hook: h}
		r, err := loadRung(h, c, hclog.NewNullLogger())
		if err != nil {
			p.Err = err
		} else if err := r.close(); err != nil {
			p.Err = fmt.Errorf("loaded and attached, then: %w", err)
		}
		out = append(out, p)
	}
	return out
}
