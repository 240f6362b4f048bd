package testutil

import (
	"testing"
	"time"
)

// Collect reads n values from ch, failing t if they have not come within
// 2 s, then goes on reading until ch has been quiet for quiet: a value
// more than the test expects shows in what it returns.
func Collect[T any](t testing.TB, ch <-chan T, n int, quiet time.Duration) []T {
	t.Helper()
	var got []T
	timeout := time.After(2 * time.Second)
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-timeout:
			t.Errorf("timed out after %d of %d values: %+v", len(got), n, got)
			return got
		}
	}
	for {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-time.After(quiet):
			return got
		}
	}
}
