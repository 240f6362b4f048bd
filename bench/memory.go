package main

import "fmt"

var memorySection = section{
	name:  "memory",
	title: "memory of `vigil run` with its watches placed",
	needs: []need{needRoot, needFanotify, needVigil},
	run:   runMemory,
}

// designDirs is where the design sets its memory aim.
const designDirs = 100000

// runMemory reports the daemon's resident set once every watch of a tree
// is placed, with its peak. The design's aim is at 100,000 directories,
// the largest tree of a full run; a --quick run's trees are smaller, so
// its last row gives the straight line through the two trees' figures at
// 100,000, labelled as such.
func runMemory(e *env) ([]row, error) {
	var rows []row
	sizes := e.treeSizes()
	ps := make([]placement, len(sizes))
	for i, n := range sizes {
		p, err := e.placement(n)
		if err != nil {
			return rows, err
		}
		ps[i] = p
		r := row{
			figure:   fmt.Sprintf("daemon RSS at %s watched directories (%s-signature database)", group(int64(n)), group(dbSignatures)),
			measured: fmt.Sprintf("%s (peak %s)", mib(p.rss), mib(p.peak)),
		}
		if n >= designDirs {
			r.aim = fmt.Sprintf("≤ 64 MiB at %s", group(designDirs))
			r.ref = e.memoryPeerRef()
			r.met = atMost(float64(p.rss), 64<<20)
		} else if i == len(sizes)-1 && i > 0 {
			prev := ps[i-1]
			perDir := float64(p.rss-prev.rss) / float64(n-sizes[i-1])
			at := float64(p.rss) + perDir*float64(designDirs-n)
			r.aim = fmt.Sprintf("≤ 64 MiB at %s", group(designDirs))
			r.ref = e.memoryPeerRef()
			r.measured += fmt.Sprintf("; %s at %s by linear extrapolation", mib(int64(at)), group(designDirs))
			r.met = atMost(at, 64<<20)
		}
		if n == peerDirs {
			r.ref = e.memoryPeerRef()
		}
		rows = append(rows, r)
	}
	rows = append(rows, e.memoryRatio(sizes, ps)...)
	return rows, nil
}
