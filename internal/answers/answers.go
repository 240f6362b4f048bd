// Package answers asks questions of filesystems that may not answer (a
// hung NFS server, a stuck FUSE daemon) without waiting on any of them
// longer than a deadline.
package answers

import "time"

// Within runs fn on each of keys at once and returns the answers that came
// within d, by key. A key whose call did not answer in time has none: the
// call is left to end on its own, and late, unless nil, is given its
// answer then, on a goroutine of its own.
func Within[K comparable, T any](keys []K, d time.Duration, fn func(K) T, late func(K, T)) map[K]T {
	type answer struct {
		key K
		v   T
	}
	seen := make(map[K]bool, len(keys))
	ch := make(chan answer, len(keys)) // without late, a late answer is dropped in the buffer
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		go func() { ch <- answer{k, fn(k)} }()
	}
	got := make(map[K]T, len(seen))
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for n := range len(seen) {
		select {
		case a := <-ch:
			got[a.key] = a.v
		case <-deadline.C:
			if late != nil {
				go func() {
					for range len(seen) - n {
						a := <-ch
						late(a.key, a.v)
					}
				}()
			}
			return got
		}
	}
	return got
}
