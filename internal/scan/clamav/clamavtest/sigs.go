// Package clamavtest makes ClamAV signature databases for the engine's
// benchmarks and for vigil's bench, which measure on the same ones.
package clamavtest

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// BodySignatures returns n .ndb body signatures shaped like ClamAV's,
// the same for the same seed: mostly plain hex of 10 to 40 bytes, some
// with wildcards, alternatives and jumps, most at any offset, a fifth for
// PE or ELF at EP or fixed offsets. They are named Bench.0 to Bench.n-1.
func BodySignatures(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 7))
	hexb := func(k int) string {
		var b strings.Builder
		for range k {
			fmt.Fprintf(&b, "%02x", r.IntN(256))
		}
		return b.String()
	}
	out := make([]string, 0, n)
	for i := range n {
		target, off := "0", "*"
		switch r.IntN(10) {
		case 0:
			target, off = "1", fmt.Sprintf("EP+%d", r.IntN(64))
		case 1:
			target, off = "1", "*"
		case 2:
			target, off = "6", "*"
		case 3:
			off = fmt.Sprint(r.IntN(1024))
		}
		var sig string
		switch r.IntN(20) {
		case 0, 1, 2:
			sig = hexb(4+r.IntN(8)) + "??" + hexb(2+r.IntN(8)) + "?" + hexb(1)[:1] + hexb(4)
		case 3, 4:
			sig = hexb(6+r.IntN(10)) + "*" + hexb(6+r.IntN(10))
		case 5:
			sig = hexb(6+r.IntN(10)) + fmt.Sprintf("{%d-%d}", r.IntN(10), 10+r.IntN(100)) + hexb(6+r.IntN(10))
		case 6:
			sig = hexb(6) + "(" + hexb(1) + "|" + hexb(1) + ")" + hexb(8)
		default:
			sig = hexb(10 + r.IntN(30))
		}
		out = append(out, fmt.Sprintf("Bench.%d:%s:%s:%s", i, target, off, sig))
	}
	return out
}
