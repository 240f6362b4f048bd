package onaccess

import (
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

// TestSnapshotCopiesEveryCounter sets each counter to a value of its own
// and finds it in the snapshot field of the same name: a counter added
// to Counters but not to Snapshot (or copied into another field) fails.
func TestSnapshotCopiesEveryCounter(t *testing.T) {
	var c Counters
	cv := reflect.ValueOf(&c).Elem()
	want := map[string]uint64{}
	for i := range cv.NumField() {
		f := cv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		u, ok := cv.Field(i).Addr().Interface().(*atomic.Uint64)
		if !ok {
			t.Fatalf("Counters.%s: got %s, want atomic.Uint64", f.Name, f.Type)
		}
		n := uint64(i + 1)
		u.Store(n)
		want[f.Name] = n
	}
	c.observe(500 * time.Nanosecond) // below 1 µs: bucket 0
	s := reflect.ValueOf(c.Snapshot())
	for name, n := range want {
		f := s.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("Snapshot has no field %s", name)
			continue
		}
		if got := f.Uint(); got != n {
			t.Errorf("Snapshot.%s: got %d, want %d", name, got, n)
		}
	}
	if got := c.Snapshot().Latency[0]; got != 1 {
		t.Errorf("Snapshot.Latency[0]: got %d, want 1", got)
	}
}
