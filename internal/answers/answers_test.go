package answers

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// The calls that answer in time are returned; one that does not is left
// out, and given to late once it answers. A key asked twice is asked once.
func TestWithin(t *testing.T) {
	release := make(chan struct{})
	calls := make(chan string, 8)
	fn := func(k string) int {
		calls <- k
		if k == "hung" {
			<-release
		}
		return len(k)
	}
	lates := make(chan string, 1)
	late := func(k string, v int) {
		if v != len(k) {
			t.Errorf("late answer for %q: %d, want %d", k, v, len(k))
		}
		lates <- k
	}
	got := Within([]string{"a", "bb", "hung", "a"}, 100*time.Millisecond, fn, late)
	if want := map[string]int{"a": 1, "bb": 2}; !maps.Equal(got, want) {
		t.Errorf("answers: got %v, want %v", got, want)
	}
	select {
	case k := <-lates:
		t.Fatalf("late answer for %q before it answered", k)
	default:
	}
	close(release)
	select {
	case k := <-lates:
		if k != "hung" {
			t.Errorf("late answer for %q, want hung", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no late answer 5s after the call answered")
	}
	close(calls)
	var asked []string
	for k := range calls {
		asked = append(asked, k)
	}
	slices.Sort(asked)
	if want := []string{"a", "bb", "hung"}; !slices.Equal(asked, want) {
		t.Errorf("calls: got %v, want %v", asked, want)
	}
}
