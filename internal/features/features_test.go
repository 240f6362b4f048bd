package features

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWrap(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"einval", unix.EINVAL, true},
		{"enosys", unix.ENOSYS, true},
		{"eperm", unix.EPERM, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(wrap("x", tt.err), ErrNotSupported); got != tt.want {
				t.Errorf("errors.Is(wrap(%v), ErrNotSupported) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// On this project's machines (kernel >= 6.0, root) every probe must pass:
// a broken probe must not hide as "not supported".
func TestProbesOnCI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify probes need root")
	}
	for _, p := range All() {
		if p.Err != nil {
			if errors.Is(p.Err, ErrNotSupported) && os.Getenv("CI") == "" {
				t.Logf("%s: %v", p.Name, p.Err)
				continue
			}
			t.Errorf("%s: %v", p.Name, p.Err)
		}
	}
}
