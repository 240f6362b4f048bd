package watch

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"
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

// A job left behind stuck at a directory, once it goes on, walks below it;
// any other walk defers what is below it until the job ends.
func TestStalledJobWalksItsOwn(t *testing.T) {
	m := NewManager(newRecorder(), nil, Sources{}, nil)
	tag, done := new(jobTag), make(chan struct{})
	if !m.leaveBehind("/stuck", done, tag) {
		t.Fatal("leaveBehind refused the first stalled job")
	}
	own := context.WithValue(context.Background(), jobKey{}, tag)
	if m.avoid(own, "/stuck/kid") {
		t.Error("the stalled job avoids below where it was stuck itself")
	}
	if !m.avoid(context.Background(), "/stuck/kid") {
		t.Error("another walk does not avoid below the stalled job")
	}
	if m.avoid(context.Background(), "/elsewhere") {
		t.Error("a walk avoids a directory no job is stuck at")
	}
	if dirs, _ := m.takeDeferred(); len(dirs) != 0 {
		t.Errorf("deferred directories handed out while the job is stuck: %v", dirs)
	}

	close(done)
	for end := time.Now().Add(10 * time.Second); m.Stats().Stalled != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the stalled job's end was not seen")
		}
	}
	if m.avoid(context.Background(), "/stuck/kid") {
		t.Error("a walk avoids below a job that ended")
	}
	dirs, resync := m.takeDeferred()
	if !slices.Equal(dirs, []string{"/stuck/kid"}) || resync {
		t.Errorf("deferred after the job ended: got %v (resync %v), want [/stuck/kid]", dirs, resync)
	}
}
