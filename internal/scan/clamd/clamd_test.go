package clamd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan"
)

// fakeClamd speaks clamd's protocol: PING, VERSION, IDSESSION/END,
// FILDES (unix) and INSTREAM, with replies chosen by the test.
type fakeClamd struct {
	t       *testing.T
	ln      net.Listener
	addr    string
	version atomic.Value // string
	// reply answers a scan of data; name is "fd[N]" or "stream". The
	// empty string means no reply at all.
	reply    func(name string, data []byte) string
	idShift  int  // added to the session id in replies
	endAfter bool // close each session after one scan reply
	limit    int  // StreamMaxLength; 0 for none
	// hung holds every command read until it is cleared, as a stopped
	// clamd would; scanCmds counts the scan commands read.
	hung      atomic.Bool
	scanCmds  atomic.Int32
	sessions  atomic.Int32
	scans     atomic.Int32
	fdScans   atomic.Int32
	mu        sync.Mutex
	lastData  []byte
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func startFake(t *testing.T, network string, reply func(string, []byte) string) *fakeClamd {
	t.Helper()
	f := &fakeClamd{t: t, reply: reply}
	f.version.Store("ClamAV 1.4.6/27451/Wed Nov  6 09:37:00 2024")
	var err error
	if network == "unix" {
		p := filepath.Join(t.TempDir(), "clamd.ctl")
		f.ln, err = net.Listen("unix", p)
		f.addr = "unix://" + p
	} else {
		f.ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			f.addr = "tcp://" + f.ln.Addr().String()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.stop)
	return f
}

func (f *fakeClamd) stop() {
	f.closeOnce.Do(func() { f.ln.Close() })
	f.wg.Wait()
}

func (f *fakeClamd) serve() {
	defer f.wg.Done()
	var conns []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			f.handle(c)
		}()
	}
}

// fdReader collects descriptors passed with SCM_RIGHTS.
type fdReader struct {
	c   net.Conn
	fds []int
}

func (r *fdReader) Read(p []byte) (int, error) {
	uc, ok := r.c.(*net.UnixConn)
	if !ok {
		return r.c.Read(p)
	}
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(p, oob)
	n = max(n, 0)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for i := range msgs {
				if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					r.fds = append(r.fds, fds...)
				}
			}
		}
	}
	return n, err
}

func (f *fakeClamd) handle(c net.Conn) {
	fr := &fdReader{c: c}
	r := bufio.NewReader(fr)
	session, id := false, 0
	send := func(s string) {
		if s == "" {
			return
		}
		if session {
			s = fmt.Sprintf("%d: %s", id+f.idShift, s)
		}
		c.Write([]byte(s + "\x00"))
	}
	for {
		cmd, err := r.ReadString(0)
		if err != nil {
			return
		}
		cmd = strings.TrimSuffix(strings.TrimPrefix(cmd, "z"), "\x00")
		id++
		if cmd == "FILDES" || cmd == "INSTREAM" {
			f.scanCmds.Add(1)
		}
		for f.hung.Load() {
			time.Sleep(time.Millisecond)
		}
		switch cmd {
		case "IDSESSION":
			session, id = true, 0
			f.sessions.Add(1)
			continue
		case "END":
			return
		case "PING":
			send("PONG")
		case "VERSION":
			send(f.version.Load().(string))
		case "FILDES":
			if _, err := r.ReadByte(); err != nil { // the dummy byte
				return
			}
			if len(fr.fds) == 0 {
				send("FILDES: didn't receive file descriptor. ERROR")
				return
			}
			fd := fr.fds[0]
			fr.fds = fr.fds[1:]
			file := os.NewFile(uintptr(fd), "passed")
			data, _ := io.ReadAll(io.NewSectionReader(file, 0, 64<<20))
			file.Close()
			f.fdScans.Add(1)
			f.scanned(data)
			send(f.reply(fmt.Sprintf("fd[%d]", fd), data))
		case "INSTREAM":
			var data []byte
			for {
				var hdr [4]byte
				if _, err := io.ReadFull(r, hdr[:]); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(hdr[:])
				if n == 0 {
					break
				}
				chunk := make([]byte, n)
				if _, err := io.ReadFull(r, chunk); err != nil {
					return
				}
				data = append(data, chunk...)
				if f.limit > 0 && len(data) > f.limit {
					send("INSTREAM size limit exceeded. ERROR")
					return
				}
			}
			f.scanned(data)
			send(f.reply("stream", data))
		default:
			send("UNKNOWN COMMAND")
			return
		}
		if !session || (f.endAfter && cmd != "PING" && cmd != "VERSION") {
			return
		}
	}
}

func (f *fakeClamd) scanned(data []byte) {
	f.scans.Add(1)
	f.mu.Lock()
	f.lastData = data
	f.mu.Unlock()
}

func (f *fakeClamd) last() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastData
}

func tempFile(t *testing.T, content []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sample")
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func newEngine(t *testing.T, addr string, timeout time.Duration) *Engine {
	t.Helper()
	e, err := New(Config{Address: addr, Timeout: timeout, Conns: 2}, nil)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestScanReplies(t *testing.T) {
	tests := []struct {
		name     string
		reply    string // %s is the name: fd[N] or stream
		idShift  int
		want     scan.Result
		wantErr  string
		wantIs   error
		deadline time.Duration
	}{
		{name: "clean", reply: "%s: OK"},
		{name: "found", reply: "%s: Win.Test.EICAR_HDB-1 FOUND", want: scan.Result{Infected: true, Signature: "Win.Test.EICAR_HDB-1"}},
		{name: "found, path with colon", reply: "/srv/a: b/x: Win.Test FOUND", want: scan.Result{Infected: true, Signature: "Win.Test"}},
		{name: "found, unofficial", reply: "%s: Vigil.Test.UNOFFICIAL FOUND", want: scan.Result{Infected: true, Signature: "Vigil.Test.UNOFFICIAL"}},
		{name: "error", reply: "%s: Can't open file or directory ERROR", wantErr: ": Can't open file or directory"},
		{name: "size limit", reply: "INSTREAM size limit exceeded. ERROR", wantIs: ErrSizeLimit},
		{name: "unknown reply", reply: "UNKNOWN COMMAND", wantErr: "unexpected reply"},
		{name: "FOUND without a name", reply: "%s:  FOUND", wantErr: "malformed FOUND"},
		{name: "FOUND without a colon", reply: "FOUND", wantErr: "unexpected reply"},
		{name: "wrong session id", reply: "%s: OK", idShift: 1, wantErr: "does not carry request id 1"},
		{name: "no reply", reply: "", deadline: 300 * time.Millisecond, wantIs: context.DeadlineExceeded},
	}
	for _, network := range []string{"unix", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				fk := startFake(t, network, func(name string, data []byte) string {
					if tt.reply == "" {
						return ""
					}
					if strings.Contains(tt.reply, "%s") {
						return fmt.Sprintf(tt.reply, name)
					}
					return tt.reply
				})
				fk.idShift = tt.idShift
				e := newEngine(t, fk.addr, 5*time.Second)
				ctx := context.Background()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				content := []byte("some file content")
				start := time.Now()
				got, err := e.Scan(ctx, tempFile(t, content))
				if tt.wantErr == "" && tt.wantIs == nil {
					if err != nil || got != tt.want {
						t.Fatalf("got %+v, %v want %+v, no error", got, err, tt.want)
					}
				} else {
					if err == nil {
						t.Fatalf("got %+v, no error want an error", got)
					}
					if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
						t.Fatalf("got error %v want %v", err, tt.wantIs)
					}
					if !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("got error %q want it to contain %q", err, tt.wantErr)
					}
				}
				if tt.deadline > 0 && time.Since(start) > tt.deadline+time.Second {
					t.Fatalf("got a scan of %v want it cut at %v", time.Since(start), tt.deadline)
				}
				if network == "unix" && fk.fdScans.Load() != 1 {
					t.Fatalf("got %d FILDES scans want 1", fk.fdScans.Load())
				}
				if fk.scans.Load() == 1 && string(fk.last()) != string(content) {
					t.Fatalf("got clamd reading %q want %q", fk.last(), content)
				}
			})
		}
	}
}

// A file of several chunks arrives whole, by descriptor or by stream, and
// the file's offset is left alone.
func TestScanContent(t *testing.T) {
	content := make([]byte, 3*chunkSize+123)
	for i := range content {
		content[i] = byte(i * 7)
	}
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			fk := startFake(t, network, func(name string, data []byte) string { return name + ": OK" })
			e := newEngine(t, fk.addr, 5*time.Second)
			f := tempFile(t, content)
			if _, err := f.Seek(100, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Scan(context.Background(), f); err != nil {
				t.Fatal(err)
			}
			if got := fk.last(); string(got) != string(content) {
				t.Fatalf("got %d bytes want %d", len(got), len(content))
			}
			if off, _ := f.Seek(0, io.SeekCurrent); network == "tcp" && off != 100 {
				t.Fatalf("got offset %d want 100", off)
			}
		})
	}
}

func TestStreamSizeLimit(t *testing.T) {
	fk := startFake(t, "tcp", func(name string, data []byte) string { return name + ": OK" })
	fk.limit = 100 << 10
	e := newEngine(t, fk.addr, 5*time.Second)
	_, err := e.Scan(context.Background(), tempFile(t, make([]byte, 8<<20)))
	if !errors.Is(err, ErrSizeLimit) {
		t.Fatalf("got error %v want %v", err, ErrSizeLimit)
	}
}

// Sessions are reused; one that clamd closed while idle is replaced
// without the caller seeing an error, and a new session asks VERSION again.
func TestSessions(t *testing.T) {
	for _, endAfter := range []bool{false, true} {
		t.Run(fmt.Sprintf("clamd ends sessions=%v", endAfter), func(t *testing.T) {
			fk := startFake(t, "unix", func(name string, data []byte) string { return name + ": OK" })
			fk.endAfter = endAfter
			e := newEngine(t, fk.addr, 5*time.Second)
			for i := range 5 {
				if _, err := e.Scan(context.Background(), tempFile(t, []byte("x"))); err != nil {
					t.Fatalf("scan %d: %v", i, err)
				}
			}
			want := int32(1)
			if endAfter {
				want = 5
			}
			if got := fk.sessions.Load(); got != want {
				t.Fatalf("got %d sessions want %d", got, want)
			}
		})
	}
}

func TestVersionRefresh(t *testing.T) {
	fk := startFake(t, "unix", func(name string, data []byte) string { return name + ": OK" })
	fk.endAfter = true
	e := newEngine(t, fk.addr, 5*time.Second)
	if got, want := e.Version(), "ClamAV 1.4.6/27451/Wed Nov  6 09:37:00 2024"; got != want {
		t.Fatalf("got version %q want %q", got, want)
	}
	fk.version.Store("ClamAV 1.4.6/27452/Thu Nov  7 09:37:00 2024")
	deadline := time.Now().Add(5 * time.Second)
	for e.Version() != "ClamAV 1.4.6/27452/Thu Nov  7 09:37:00 2024" {
		if time.Now().After(deadline) {
			t.Fatalf("got version %q after reconnects want the new database's", e.Version())
		}
		if _, err := e.Scan(context.Background(), tempFile(t, []byte("x"))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConcurrentScans(t *testing.T) {
	fk := startFake(t, "unix", func(name string, data []byte) string {
		if string(data) == "bad" {
			return name + ": Bad FOUND"
		}
		return name + ": OK"
	})
	e := newEngine(t, fk.addr, 5*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			content, want := "good", false
			if i%3 == 0 {
				content, want = "bad", true
			}
			res, err := e.Scan(context.Background(), tempFile(t, []byte(content)))
			if err != nil || res.Infected != want {
				errs <- fmt.Errorf("scan %d: got %+v, %v want infected=%v", i, res, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := fk.sessions.Load(); got > 2 {
		t.Fatalf("got %d sessions want at most Conns=2", got)
	}
}

func TestNew(t *testing.T) {
	fk := startFake(t, "tcp", nil)
	bad := startFake(t, "unix", nil)
	bad.version.Store("hello")
	tests := []struct {
		name, addr, wantErr string
	}{
		{"tcp", fk.addr, ""},
		{"no scheme", "localhost:3310", "want unix:///path or tcp://host:port"},
		{"empty unix path", "unix://", "want unix:///path"},
		{"tcp without port", "tcp://localhost", "missing port"},
		{"nothing listening", "unix://" + filepath.Join(t.TempDir(), "none.ctl"), "clamd connect"},
		{"not clamd", bad.addr, "unexpected reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(Config{Address: tt.addr, Timeout: 2 * time.Second}, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v want none", err)
				}
				if e.Name() != "clamd" || e.Ping(context.Background()) != nil {
					t.Fatalf("got name %q, ping %v want clamd, nil", e.Name(), e.Ping(context.Background()))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		addr, wantNet, wantAddr string
		wantErr                 string
	}{
		{addr: "unix:///run/clamav/clamd.ctl", wantNet: "unix", wantAddr: "/run/clamav/clamd.ctl"},
		{addr: "tcp://127.0.0.1:3310", wantNet: "tcp", wantAddr: "127.0.0.1:3310"},
		{addr: "tcp://[::1]:3310", wantNet: "tcp", wantAddr: "[::1]:3310"},
		{addr: "tcp://clamd.example:3310", wantNet: "tcp", wantAddr: "clamd.example:3310"},
		{addr: "unix://run/clamd.ctl", wantErr: "not absolute"},
		{addr: "unix://", wantErr: "not absolute"},
		{addr: "tcp://127.0.0.1", wantErr: "missing port"},
		{addr: "tcp://", wantErr: "missing port"},
		{addr: "tcp://:3310", wantErr: "host is missing"},
		{addr: "tcp://127.0.0.1:", wantErr: "from 1 to 65535"},
		{addr: "tcp://127.0.0.1:0", wantErr: "from 1 to 65535"},
		{addr: "tcp://127.0.0.1:70000", wantErr: "from 1 to 65535"},
		{addr: "tcp://127.0.0.1:clamd", wantErr: "from 1 to 65535"},
		{addr: "localhost:3310", wantErr: "scheme"},
		{addr: "", wantErr: "scheme"},
	}
	for _, tt := range tests {
		network, addr, err := ParseAddress(tt.addr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAddress(%q): got %q %q, error %v want error %q", tt.addr, network, addr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || network != tt.wantNet || addr != tt.wantAddr {
			t.Errorf("ParseAddress(%q): got %q %q, error %v want %q %q", tt.addr, network, addr, err, tt.wantNet, tt.wantAddr)
		}
	}
}

// A clamd that goes away makes scans fail at once, not hang.
func TestClamdDown(t *testing.T) {
	fk := startFake(t, "unix", func(name string, data []byte) string { return name + ": OK" })
	e := newEngine(t, fk.addr, 2*time.Second)
	fk.stop()
	start := time.Now()
	if _, err := e.Scan(context.Background(), tempFile(t, []byte("x"))); err == nil {
		t.Fatal("got no error want one")
	}
	if err := e.Ping(context.Background()); err == nil {
		t.Fatal("got ping ok want an error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("got failure after %v want within the 2s timeout", d)
	}
}

// A clamd that stops answering costs one scan its deadline; once it
// fails PING too, scans fail at once without asking it, until it answers
// PING again.
func TestClamdHungFailsFast(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			fk := startFake(t, network, func(name string, data []byte) string { return name + ": OK" })
			e := newEngine(t, fk.addr, 200*time.Millisecond)
			f := tempFile(t, []byte("some file content"))
			fk.hung.Store(true)
			t.Cleanup(func() { fk.hung.Store(false) }) // before the fake stops
			if _, err := e.Scan(context.Background(), f); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("scan with clamd stopped: got %v, want a deadline", err)
			}
			var err error
			waitFor(t, func() bool {
				_, err = e.Scan(context.Background(), f)
				return errors.Is(err, ErrDown)
			}, "scan failing with ErrDown")
			sent := fk.scanCmds.Load()
			for range 3 {
				if _, err := e.Scan(context.Background(), f); !errors.Is(err, ErrDown) {
					t.Fatalf("scan while clamd is down: got %v, want ErrDown", err)
				}
			}
			if n := fk.scanCmds.Load() - sent; n != 0 {
				t.Errorf("scan commands sent to a clamd that does not answer PING: %d, want 0", n)
			}
			fk.hung.Store(false)
			waitFor(t, func() bool {
				res, err := e.Scan(context.Background(), f)
				return err == nil && !res.Infected
			}, "clean scan after clamd answers again")
		})
	}
}

// waitFor waits up to 5 seconds for ok, and fails the test after.
func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 5s", what)
		}
	}
}

func TestScanNotRegular(t *testing.T) {
	fk := startFake(t, "unix", func(name string, data []byte) string { return name + ": Should.Not FOUND" })
	e := newEngine(t, fk.addr, 2*time.Second)
	d, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if res, err := e.Scan(context.Background(), d); err != nil || res.Infected || fk.scans.Load() != 0 {
		t.Fatalf("got %+v, %v, %d scans want clean, nil, 0", res, err, fk.scans.Load())
	}
}
