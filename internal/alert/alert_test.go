package alert

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/testutil"
)

var when = time.Date(2026, 11, 29, 14, 22, 0, 123456789, time.UTC)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Errorf("file does not end with a newline: %q", b)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		rec      Record
		wantB64  bool
		wantText []string // substrings of the line
	}{
		{
			name: "blocked",
			rec: Record{Time: when, Action: ActionBlocked, Path: "/srv/uploads/eicar.com",
				Signature: "Eicar-Signature", PID: 4242, UID: 1000, Exe: "/usr/bin/cat",
				Watch: "/srv/uploads", Engine: "builtin"},
			wantText: []string{`"action":"blocked"`, `"signature":"Eicar-Signature"`, `"pid":4242`},
		},
		{
			name:     "error omits empty fields",
			rec:      Record{Time: when, Action: ActionError, Path: "/srv/x", Watch: "/srv", Engine: "clamd", Error: "scan: timeout"},
			wantText: []string{`"error":"scan: timeout"`, `"pid":0`},
		},
		{
			name:     "newline in path",
			rec:      Record{Time: when, Action: ActionAlerted, Path: "/srv/a\nb\r\n{\"action\":\"fake\"}", Watch: "/srv"},
			wantText: []string{`a\nb\r\n`},
		},
		{
			name:    "invalid UTF-8 path",
			rec:     Record{Time: when, Action: ActionBlocked, Path: "/srv/\xff\xfe\x80name", Watch: "/srv"},
			wantB64: true,
		},
		{
			name:     "line separators and HTML",
			rec:      Record{Time: when, Action: ActionAlerted, Path: "/srv/\u2028<&>\u2029", Watch: "/srv"},
			wantText: []string{`\u2028<&>\u2029`},
		},
	}
	path := filepath.Join(testutil.TempDir(t), "alerts.jsonl")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		l.Emit(tt.rec)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != len(tests) {
		t.Fatalf("got %d lines want %d:\n%s", len(lines), len(tests), strings.Join(lines, "\n"))
	}
	if w, d, f := l.Stats(); w != uint64(len(tests)) || d != 0 || f != 0 {
		t.Errorf("stats: got written=%d dropped=%d failed=%d want %d, 0, 0", w, d, f, len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Record
			if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
				t.Fatalf("line %q: %v", lines[i], err)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(lines[i], s) {
					t.Errorf("line %q: want it to contain %q", lines[i], s)
				}
			}
			want := tt.rec
			if tt.wantB64 {
				raw, err := base64.StdEncoding.DecodeString(got.PathB64)
				if err != nil || string(raw) != tt.rec.Path {
					t.Errorf("path_b64: got %q (%v) want the bytes %q", raw, err, tt.rec.Path)
				}
				want.PathB64 = got.PathB64
				want.Path = got.Path // encoding/json replaced the bad bytes
				if !strings.Contains(got.Path, "\uFFFD") {
					t.Errorf("path: got %q want U+FFFD in place of the bad bytes", got.Path)
				}
			} else if got.PathB64 != "" {
				t.Errorf("path_b64: got %q want none for a valid path", got.PathB64)
			}
			if !got.Time.Equal(want.Time) {
				t.Errorf("time: got %v want %v", got.Time, want.Time)
			}
			got.Time = want.Time
			if got != want {
				t.Errorf("got %+v want %+v", got, want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := filepath.Join(testutil.TempDir(t), "var", "log", "vigil")
	path := filepath.Join(dir, "alerts.jsonl")
	for i := range 2 { // the second Open appends
		l, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Emit(Record{Time: when, Action: ActionAlerted, Path: "/p"})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := len(readLines(t, path)); got != i+1 {
			t.Errorf("open %d: got %d lines want %d", i+1, got, i+1)
		}
	}
	tests := []struct {
		name string
		path string
		want os.FileMode
	}{
		{name: "directory", path: dir, want: os.ModeDir | 0o700},
		{name: "file", path: path, want: 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.want {
				t.Errorf("mode: got %v want %v", fi.Mode(), tt.want)
			}
		})
	}
	if _, err := Open(filepath.Join(path, "sub", "x"), nil); err == nil {
		t.Errorf("open under a file: got no error want one")
	}
}

// stuckWriter blocks every Write until release is closed; entered is
// closed by the first Write.
type stuckWriter struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	buf              bytes.Buffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func TestEmitNeverBlocks(t *testing.T) {
	const size, n = 4, 1000
	w := &stuckWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := newLog(w, nil, "", size, nil)
	testutil.Deadline(t, 10*time.Second, func() { close(w.release) })

	l.Emit(Record{Time: when, Action: ActionBlocked, Path: "/first"})
	<-w.entered // the writer is stuck in Write
	start := time.Now()
	for range n {
		l.Emit(Record{Time: when, Action: ActionBlocked, Path: "/p"})
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("%d Emit calls took %v with the writer stuck", n, el)
	}
	// The queue took size records, the rest were dropped.
	if _, dropped, _ := l.Stats(); dropped != n-size {
		t.Errorf("dropped: got %d want %d", dropped, n-size)
	}

	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	written, dropped, failed := l.Stats()
	if written != size+1 || dropped != n-size || failed != 0 {
		t.Errorf("got written=%d dropped=%d failed=%d want %d, %d, 0", written, dropped, failed, size+1, n-size)
	}
	lines := 0
	sc := bufio.NewScanner(&w.buf)
	for sc.Scan() {
		lines++
	}
	if uint64(lines) != written {
		t.Errorf("lines: got %d want %d (written)", lines, written)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

func TestWriteErrors(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &logs, mu: &mu}})
	l := newLog(failWriter{}, nil, "/var/log/vigil/alerts.jsonl", 16, log)
	for range 10 {
		l.Emit(Record{Time: when, Action: ActionBlocked, Path: "/p"})
		time.Sleep(time.Millisecond) // separate writes, not one batch
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	written, dropped, failed := l.Stats()
	if written != 0 || dropped != 0 || failed != 10 {
		t.Errorf("got written=%d dropped=%d failed=%d want 0, 0, 10", written, dropped, failed)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Count(logs.String(), "write alert log"); got != 1 {
		t.Errorf("write errors logged: got %d want 1 per minute\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("log: got %q want the error", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestCloseWhileEmitting(t *testing.T) {
	var buf lockedWriter
	buf.w, buf.mu = &bytes.Buffer{}, &sync.Mutex{}
	l := newLog(&buf, nil, "", 64, nil)
	var wg sync.WaitGroup
	const emitters, each = 8, 500
	for range emitters {
		wg.Go(func() {
			for range each {
				l.Emit(Record{Time: when, Action: ActionAlerted, Path: "/p"})
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // Emit after Close drops, never panics
	if err := l.Close(); err != nil {
		t.Errorf("second Close: got %v want nil", err)
	}
	written, dropped, failed := l.Stats()
	if written+dropped != emitters*each || failed != 0 {
		t.Errorf("got written=%d dropped=%d failed=%d want written+dropped=%d", written, dropped, failed, emitters*each)
	}
	buf.mu.Lock()
	defer buf.mu.Unlock()
	if got := uint64(bytes.Count(buf.w.Bytes(), []byte("\n"))); got != written {
		t.Errorf("lines: got %d want %d", got, written)
	}
}

func TestDiscard(t *testing.T) {
	l := Discard()
	l.Emit(Record{Action: ActionBlocked, Path: "/p"})
	if err := l.Close(); err != nil {
		t.Errorf("close: got %v want nil", err)
	}
	l.Emit(Record{Action: ActionBlocked, Path: "/p"})
	if w, d, f := l.Stats(); w != 0 || d != 0 || f != 0 {
		t.Errorf("got %d, %d, %d want 0, 0, 0", w, d, f)
	}
}

// Rotation: the file is renamed away, Reopen starts a new one, and every
// record lands in one of the two.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.jsonl")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(Record{Action: ActionBlocked, Path: "/a"})
	waitWritten(t, l, 1)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Emit(Record{Action: ActionBlocked, Path: "/b"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{{path + ".1", `"/a"`}, {path, `"/b"`}} {
		b, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(string(b), "\n"); lines != 1 || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s: got %q, want one line with %s", tt.file, b, tt.want)
		}
	}
	if err := l.Reopen(); err == nil {
		t.Errorf("Reopen after Close: got nil error")
	}
}

func waitWritten(t *testing.T, l *Log, n uint64) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if w, _, _ := l.Stats(); w >= n {
			return
		}
	}
	t.Fatalf("fewer than %d records written after 5s", n)
}

// roomWriter takes room bytes, then fails as a full disk does, after
// writing what fits: a line cut short. With a file it is an *os.File
// (Stat, Truncate); without one it writes to buf.
type roomWriter struct {
	*os.File
	buf  bytes.Buffer
	mu   sync.Mutex
	room int
}

func (w *roomWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if len(p) > w.room {
		p, err = p[:w.room], syscall.ENOSPC
	}
	w.room -= len(p)
	if w.File == nil {
		w.buf.Write(p)
	} else if _, werr := w.File.Write(p); werr != nil {
		return 0, werr
	}
	return len(p), err
}

func (w *roomWriter) setRoom(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.room = n
}

// A full disk cuts a line short: the line is taken back (or, where it
// cannot be, the next line starts on a line of its own), so every line
// after the disk has room again is whole JSON; the lines written whole
// before the error count as written.
func TestWriteCutShort(t *testing.T) {
	line := func(p string) string {
		b, _ := json.Marshal(Record{Time: when, Action: ActionBlocked, Path: p})
		return string(b) + "\n"
	}
	for _, withFile := range []bool{true, false} {
		t.Run(map[bool]string{true: "file", false: "writer"}[withFile], func(t *testing.T) {
			w := &roomWriter{}
			path := filepath.Join(t.TempDir(), "alerts.jsonl")
			if withFile {
				f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				w.File = f
			}
			// Room for /a whole and half of /b: one write cut short.
			w.setRoom(len(line("/a")) + len(line("/b"))/2)
			var c io.Closer
			if withFile {
				c = w.File
			}
			l := newLog(w, c, path, 16, nil)
			l.Emit(Record{Time: when, Action: ActionBlocked, Path: "/a"})
			waitWritten(t, l, 1)
			l.Emit(Record{Time: when, Action: ActionBlocked, Path: "/b"})
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				if _, _, failed := l.Stats(); failed == 1 {
					break
				}
			}
			w.setRoom(1 << 20)
			l.Emit(Record{Time: when, Action: ActionBlocked, Path: "/c"})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if written, _, failed := l.Stats(); written != 2 || failed != 1 {
				t.Errorf("got written=%d failed=%d want 2, 1", written, failed)
			}
			var got string
			if withFile {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				got = string(b)
			} else {
				got = w.buf.String()
			}
			if !strings.HasPrefix(got, line("/a")) || !strings.HasSuffix(got, "\n"+line("/c")) {
				t.Errorf("log: got %q\nwant /a's line first and /c's last, on a line of its own", got)
			}
			if withFile && got != line("/a")+line("/c") {
				t.Errorf("log: got %q\nwant /a's and /c's lines only (the cut line taken back)", got)
			}
		})
	}
}
