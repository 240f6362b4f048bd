//go:build !race

package testutil

// Race says the race detector is on. It allocates of its own, which
// testing.AllocsPerRun counts.
const Race = false
