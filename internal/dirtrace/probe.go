package dirtrace

import (
	"fmt"

	"github.com/cilium/ebpf/btf"
	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/features"
)

// Probe loads and attaches each rung of the ladder in turn, then detaches
// it, and tells which work here and why the others do not. Like Open, it
// mounts tracefs when a rung needs it.
func Probe() []features.Probe {
	var out []features.Probe
	kernel := btf.NewCache()
	for _, h := range Ladder {
		if h == HookNone {
			continue
		}
		p := features.Probe{Name: "eBPF directory events, hook " + string(h)}
		r, err := loadRung(h, kernel, hclog.NewNullLogger())
		if err != nil {
			p.Err = err
		} else if err := r.close(); err != nil {
			p.Err = fmt.Errorf("loaded and attached, then: %w", err)
		}
		out = append(out, p)
	}
	return out
}
