package watch

import (
	"maps"
	"testing"
)

func TestMountPoints(t *testing.T) {
	got := mountPoints([]string{"/", "/proc/self", "/no/such/dir"})
	if want := map[string]bool{"/": true}; !maps.Equal(got, want) {
		t.Errorf("mountPoints: got %v, want %v", got, want)
	}
	if got := mountPoints(nil); got != nil {
		t.Errorf("mountPoints(nil): got %v, want nil", got)
	}
}
