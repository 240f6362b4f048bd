package inotify

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/watch"
)

// encode builds the buffer the kernel would return for evs, names padded
// with NULs as the kernel pads them.
func encode(evs ...rawEvent) []byte {
	var b []byte
	for _, e := range evs {
		nameLen := 0
		if e.name != "" {
			nameLen = (len(e.name) + 16) &^ 15
		}
		rec := make([]byte, unix.SizeofInotifyEvent+nameLen)
		binary.NativeEndian.PutUint32(rec[0:4], uint32(e.wd))
		binary.NativeEndian.PutUint32(rec[4:8], e.mask)
		binary.NativeEndian.PutUint32(rec[8:12], e.cookie)
		binary.NativeEndian.PutUint32(rec[12:16], uint32(nameLen))
		copy(rec[unix.SizeofInotifyEvent:], e.name)
		b = append(b, rec...)
	}
	return b
}

func TestParse(t *testing.T) {
	evs := []rawEvent{
		{wd: 1, mask: unix.IN_CREATE | unix.IN_ISDIR, name: "a\nb\xff"},
		{wd: -1, mask: unix.IN_Q_OVERFLOW},
		{wd: 7, mask: unix.IN_MOVED_FROM | unix.IN_ISDIR, cookie: 42, name: "exactly16bytes!!"},
	}
	b := encode(evs...)
	tests := []struct {
		name    string
		buf     []byte
		want    []rawEvent
		wantErr bool
	}{
		{name: "records", buf: b, want: evs},
		{name: "empty", buf: nil, want: nil},
		{name: "short record", buf: b[:10], wantErr: true},
		{name: "name past the end", buf: b[:unix.SizeofInotifyEvent+4], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(tt.buf, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !slices.Equal(got, tt.want) {
				t.Errorf("got %+v want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(encode(rawEvent{wd: 1, mask: unix.IN_CREATE | unix.IN_ISDIR, name: "a"}))
	f.Add(encode(rawEvent{wd: -1, mask: unix.IN_Q_OVERFLOW}))
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := parse(b, nil)
		if err == nil && len(b) > 0 && len(evs) == 0 {
			t.Errorf("no events and no error from %d bytes", len(b))
		}
	})
}

// TestHandle feeds synthesized reads to the event state machine, with the
// tree holding /r (wd 1), /r/a (wd 2) and /r/b (wd 3).
func TestHandle(t *testing.T) {
	const dirMask = unix.IN_ISDIR
	type batch struct {
		evs    []rawEvent
		expire bool // the grace period passes after this read
	}
	created := func(p string) watch.DirEvent { return watch.DirEvent{Op: watch.Created, Path: p, Source: "inotify"} }
	removed := func(p string) watch.DirEvent { return watch.DirEvent{Op: watch.Removed, Path: p, Source: "inotify"} }
	moved := func(from, to string) watch.DirEvent {
		return watch.DirEvent{Op: watch.Moved, Path: to, From: from, Source: "inotify"}
	}
	resync := watch.DirEvent{Op: watch.Resync, Source: "inotify"}
	tests := []struct {
		name      string
		more      map[int32]string // more tracked directories
		reads     []batch
		want      []watch.DirEvent
		wantPaths []string
	}{
		{
			name:      "overflow",
			reads:     []batch{{evs: []rawEvent{{wd: -1, mask: unix.IN_Q_OVERFLOW}}}},
			want:      []watch.DirEvent{resync},
			wantPaths: []string{"/r", "/r/a", "/r/b"},
		},
		{
			name: "unmount reports each directory gone, not every watch to walk again",
			reads: []batch{{evs: []rawEvent{
				{wd: 2, mask: unix.IN_UNMOUNT}, {wd: 3, mask: unix.IN_UNMOUNT},
				{wd: 2, mask: unix.IN_IGNORED}, {wd: 3, mask: unix.IN_IGNORED},
			}}},
			want:      []watch.DirEvent{removed("/r/a"), removed("/r/b")},
			wantPaths: []string{"/r"},
		},
		{
			name:      "mkdir",
			reads:     []batch{{evs: []rawEvent{{wd: 2, mask: unix.IN_CREATE | dirMask, name: "x"}}}},
			want:      []watch.DirEvent{created("/r/a/x")},
			wantPaths: []string{"/r", "/r/a", "/r/b"},
		},
		{
			name:      "files and unknown watches are not reported",
			reads:     []batch{{evs: []rawEvent{{wd: 2, mask: unix.IN_CREATE, name: "f"}, {wd: 99, mask: unix.IN_CREATE | dirMask, name: "x"}}}},
			wantPaths: []string{"/r", "/r/a", "/r/b"},
		},
		{
			name: "a move split across reads is paired",
			reads: []batch{
				{evs: []rawEvent{{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"}}},
				{evs: []rawEvent{{wd: 3, mask: unix.IN_MOVED_TO | dirMask, cookie: 5, name: "x"}, {wd: 2, mask: unix.IN_MOVE_SELF}}},
			},
			want:      []watch.DirEvent{moved("/r/a", "/r/b/x")},
			wantPaths: []string{"/r", "/r/b", "/r/b/x"},
		},
		{
			name:      "move out found by the grace period",
			reads:     []batch{{evs: []rawEvent{{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"}}, expire: true}},
			want:      []watch.DirEvent{removed("/r/a")},
			wantPaths: []string{"/r", "/r/b"},
		},
		{
			name:      "move out found by IN_MOVE_SELF",
			reads:     []batch{{evs: []rawEvent{{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"}, {wd: 2, mask: unix.IN_MOVE_SELF}}}},
			want:      []watch.DirEvent{removed("/r/a")},
			wantPaths: []string{"/r", "/r/b"},
		},
		{
			name: "a move out is reported before a later event",
			reads: []batch{{evs: []rawEvent{
				{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"},
				{wd: 1, mask: unix.IN_CREATE | dirMask, name: "a"},
			}}},
			want:      []watch.DirEvent{removed("/r/a"), created("/r/a")},
			wantPaths: []string{"/r", "/r/b"},
		},
		{
			name:      "move in",
			reads:     []batch{{evs: []rawEvent{{wd: 3, mask: unix.IN_MOVED_TO | dirMask, cookie: 9, name: "x"}}}},
			want:      []watch.DirEvent{created("/r/b/x")},
			wantPaths: []string{"/r", "/r/a", "/r/b"},
		},
		{
			name:      "a different cookie does not pair",
			reads:     []batch{{evs: []rawEvent{{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"}, {wd: 1, mask: unix.IN_MOVED_TO | dirMask, cookie: 6, name: "c"}}}},
			want:      []watch.DirEvent{removed("/r/a"), created("/r/c")},
			wantPaths: []string{"/r", "/r/b"},
		},
		{
			name:      "rmdir of a tracked directory",
			reads:     []batch{{evs: []rawEvent{{wd: 2, mask: unix.IN_DELETE_SELF}, {wd: 2, mask: unix.IN_IGNORED}}}},
			want:      []watch.DirEvent{removed("/r/a")},
			wantPaths: []string{"/r", "/r/b"},
		},
		{
			name:      "a tracked directory whose parent is not tracked moved away",
			reads:     []batch{{evs: []rawEvent{{wd: 1, mask: unix.IN_MOVE_SELF}}}},
			want:      []watch.DirEvent{removed("/r")},
			wantPaths: nil,
		},
		{
			name: "rename over a tracked empty directory",
			reads: []batch{
				{evs: []rawEvent{
					{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"},
					{wd: 1, mask: unix.IN_MOVED_TO | dirMask, cookie: 5, name: "b"},
					{wd: 2, mask: unix.IN_MOVE_SELF},
					{wd: 3, mask: unix.IN_DELETE_SELF},
					{wd: 3, mask: unix.IN_IGNORED},
				}},
			},
			want:      []watch.DirEvent{moved("/r/a", "/r/b")},
			wantPaths: []string{"/r", "/r/b"},
		},
		{
			name:      "a tracked directory whose parent is not tracked moved in",
			more:      map[int32]string{4: "/s", 5: "/s/c"},
			reads:     []batch{{evs: []rawEvent{{wd: 3, mask: unix.IN_MOVED_TO | dirMask, cookie: 5, name: "x"}, {wd: 4, mask: unix.IN_MOVE_SELF}}}},
			want:      []watch.DirEvent{moved("/s", "/r/b/x")},
			wantPaths: []string{"/r", "/r/a", "/r/b", "/r/b/x", "/r/b/x/c"},
		},
		{
			name: "the same across reads",
			more: map[int32]string{4: "/s", 5: "/s/c"},
			reads: []batch{
				{evs: []rawEvent{{wd: 3, mask: unix.IN_MOVED_TO | dirMask, cookie: 5, name: "x"}}},
				{evs: []rawEvent{{wd: 4, mask: unix.IN_MOVE_SELF}}},
			},
			want:      []watch.DirEvent{created("/r/b/x"), moved("/s", "/r/b/x")},
			wantPaths: []string{"/r", "/r/a", "/r/b", "/r/b/x", "/r/b/x/c"},
		},
		{
			name: "not right after the IN_MOVED_TO: moved away",
			more: map[int32]string{4: "/s"},
			reads: []batch{{evs: []rawEvent{
				{wd: 3, mask: unix.IN_MOVED_TO | dirMask, cookie: 5, name: "x"},
				{wd: 2, mask: unix.IN_CREATE | dirMask, name: "y"},
				{wd: 4, mask: unix.IN_MOVE_SELF},
			}}},
			want:      []watch.DirEvent{created("/r/b/x"), created("/r/a/y"), removed("/s")},
			wantPaths: []string{"/r", "/r/a", "/r/b"},
		},
		{
			name: "rename exchange",
			reads: []batch{
				{evs: []rawEvent{
					{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 5, name: "a"},
					{wd: 1, mask: unix.IN_MOVED_TO | dirMask, cookie: 5, name: "b"},
					{wd: 2, mask: unix.IN_MOVE_SELF},
					{wd: 1, mask: unix.IN_MOVED_FROM | dirMask, cookie: 6, name: "b"},
					{wd: 1, mask: unix.IN_MOVED_TO | dirMask, cookie: 6, name: "a"},
					{wd: 3, mask: unix.IN_MOVE_SELF},
					{wd: 3, mask: unix.IN_CREATE | dirMask, name: "x"},
				}},
			},
			want:      []watch.DirEvent{moved("/r/a", "/r/b"), moved("/r/b", "/r/a"), created("/r/a/x")},
			wantPaths: []string{"/r", "/r/a", "/r/b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := newWatcher(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			// Made-up watch descriptors: removing them fails with EINVAL,
			// which rmWatch tolerates.
			for wd, p := range map[int32]string{1: "/r", 2: "/r/a", 3: "/r/b"} {
				w.tree.SetKey(w.tree.Ensure(p), wd)
			}
			for wd, p := range tt.more {
				w.tree.SetKey(w.tree.Ensure(p), wd)
			}
			now := time.Unix(1000, 0)
			var got []watch.DirEvent
			for _, r := range tt.reads {
				evs, err := parse(encode(r.evs...), nil)
				if err != nil {
					t.Fatal(err)
				}
				w.mu.Lock()
				got = w.handle(evs, now, got)
				if r.expire {
					now = now.Add(moveGrace)
				}
				got = w.expire(now, got)
				w.mu.Unlock()
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
			if gotPaths := w.paths(); !slices.Equal(gotPaths, tt.wantPaths) {
				t.Errorf("tracked: got %q want %q", gotPaths, tt.wantPaths)
			}
		})
	}
}
