package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/testutil"
)

// notifyMarker marks with a notification-class group and FAN_OPEN only:
// such marks report opens and can never block one.
type notifyMarker struct{ group int }

func (m notifyMarker) MarkDir(d Dir, _ policy.Events) error {
	err := unix.FanotifyMark(m.group, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW,
		unix.FAN_OPEN|unix.FAN_EVENT_ON_CHILD, d.Fd, d.Name)
	if err != nil {
		return fmt.Errorf("mark %s: %w", d.Path, err)
	}
	return nil
}

func notifyGroup(tb testing.TB) int {
	tb.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
		unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		tb.Fatalf("fanotify_init(FAN_CLASS_NOTIF): %v", err)
	}
	return fd
}

// nextOpen returns the path of the next event on group, waiting up to d.
func nextOpen(t *testing.T, group int, buf []byte, pending *[]byte, d time.Duration) (string, error) {
	t.Helper()
	end := time.Now().Add(d)
	for len(*pending) == 0 {
		n, err := unix.Read(group, buf)
		if errors.Is(err, unix.EAGAIN) {
			left := time.Until(end)
			if left <= 0 {
				return "", errors.New("no event")
			}
			fds := []unix.PollFd{{Fd: int32(group), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
				return "", fmt.Errorf("poll: %w", err)
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read events: %w", err)
		}
		*pending = buf[:n]
	}
	b := *pending
	if len(b) < int(unsafe.Sizeof(unix.FanotifyEventMetadata{})) {
		return "", fmt.Errorf("short event: %d bytes", len(b))
	}
	meta := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
	if meta.Vers != unix.FANOTIFY_METADATA_VERSION {
		return "", fmt.Errorf("event metadata version %d, want %d", meta.Vers, unix.FANOTIFY_METADATA_VERSION)
	}
	*pending = b[meta.Event_len:]
	if meta.Fd < 0 {
		return "", fmt.Errorf("event without fd, mask %#x", meta.Mask)
	}
	defer unix.Close(int(meta.Fd))
	return os.Readlink("/proc/self/fd/" + strconv.Itoa(int(meta.Fd)))
}

func TestPlaceFanotify(t *testing.T) {
	testutil.SkipUnlessFanotify(t)
	testutil.Deadline(t, 30*time.Second, nil)
	dir := testutil.TempDir(t)
	outside := testutil.TempDir(t)
	deepDir := filepath.Join(dir, "a", "b c", "d\ne", "f", "g")
	mkdirs(t, dir, "a/b c/d\ne/f/g", "a/x/y")
	deep := filepath.Join(deepDir, "file")
	flat := filepath.Join(outside, "file")
	for _, p := range []string{deep, flat} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	symlink(t, outside, filepath.Join(dir, "a/out"))

	group := notifyGroup(t)
	defer unix.Close(group)
	st, err := Place(context.Background(), notifyMarker{group}, []Root{{Path: dir, Recursive: true, Events: policy.EventOpen}}, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("place: %v", err)
	}
	if st.Dirs != 8 || st.Errors != 0 {
		t.Errorf("got dirs=%d errors=%d want dirs=8 errors=0", st.Dirs, st.Errors)
	}

	// Through the symlink first: the walk did not follow it, so no event.
	for _, p := range []string{filepath.Join(dir, "a/out/file"), deep} {
		b, err := os.ReadFile(p)
		if err != nil || string(b) != "x" {
			t.Fatalf("read %s: got %q, %v want \"x\"", p, b, err)
		}
	}
	buf := make([]byte, 4096)
	var pending []byte
	got, err := nextOpen(t, group, buf, &pending, 5*time.Second)
	if err != nil {
		t.Fatalf("got %v want an open event for %q", err, deep)
	}
	if got != deep {
		t.Errorf("first event: got %q want %q", got, deep)
	}
	if strings.HasPrefix(got, outside) {
		t.Errorf("got an event from outside the watched tree: %q", got)
	}
}

// countMarker counts marks.
type countMarker struct{ n atomic.Int64 }

func (m *countMarker) MarkDir(Dir, policy.Events) error {
	m.n.Add(1)
	return nil
}

func BenchmarkPlace(b *testing.B) {
	dir := b.TempDir()
	want := 1
	for i := range 10 {
		for j := range 10 {
			for k := range 100 {
				if err := os.MkdirAll(filepath.Join(dir, strconv.Itoa(i), strconv.Itoa(j), strconv.Itoa(k)), 0o755); err != nil {
					b.Fatal(err)
				}
				want++
			}
			want++
		}
		want++
	}
	roots := []Root{{Path: dir, Recursive: true, Events: policy.EventOpen}}
	place := func(b *testing.B, m Marker) {
		st, err := Place(context.Background(), m, roots, nil)
		if err != nil {
			b.Fatal(err)
		}
		if st.Dirs != want {
			b.Fatalf("got dirs=%d want %d", st.Dirs, want)
		}
	}

	b.Run("counting", func(b *testing.B) {
		var m countMarker
		for b.Loop() {
			place(b, &m)
		}
		b.ReportMetric(float64(want*b.N)/b.Elapsed().Seconds(), "dirs/s")
	})
	b.Run("fanotify", func(b *testing.B) {
		testutil.SkipUnlessFanotify(b)
		testutil.Deadline(b, 5*time.Minute, nil)
		n := 0
		for b.Loop() {
			b.StopTimer()
			group := notifyGroup(b)
			b.StartTimer()
			place(b, notifyMarker{group})
			b.StopTimer()
			unix.Close(group) // drops the marks, outside the timing
			b.StartTimer()
			n++
		}
		b.ReportMetric(float64(want*n)/b.Elapsed().Seconds(), "dirs/s")
	})
}
