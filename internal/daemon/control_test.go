package daemon

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vigilsec/vigil/internal/testutil"
)

// A control socket with no daemon behind it is said to be unreachable
// once, with the reason, and the dial's error is kept.
func TestControlUnreachable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // a daemon killed: its socket is left behind
	l.Close()

	clients := map[string]func(socket string) error{
		"status":  func(s string) error { _, err := QueryStatus(s); return err },
		"metrics": func(s string) error { return Metrics(s, io.Discard) },
		"reload":  Reload,
	}
	tests := []struct {
		name    string
		socket  string
		wantErr error
		wantMsg string
	}{
		{"no socket", missing, os.ErrNotExist, "cannot reach the daemon at " + missing + ": no such file or directory"},
		{"stale socket", stale, syscall.ECONNREFUSED, "cannot reach the daemon at " + stale + ": connection refused"},
	}
	for _, tt := range tests {
		for client, call := range clients {
			t.Run(tt.name+"/"+client, func(t *testing.T) {
				err := call(tt.socket)
				if err == nil || err.Error() != tt.wantMsg {
					t.Errorf("got %v, want %q", err, tt.wantMsg)
				}
				if !errors.Is(err, ErrUnreachable) || !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v: want errors.Is ErrUnreachable and %v", err, tt.wantErr)
				}
				var op *net.OpError
				if !errors.As(err, &op) {
					t.Errorf("got %v: the dial's *net.OpError is lost", err)
				}
			})
		}
	}
}

// listenSocket listens on a new unix socket, closed at cleanup, and
// returns its path: a control socket for a daemon a test plays.
func listenSocket(t *testing.T) (string, net.Listener) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "vigil.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return socket, l
}

// fakeDaemon answers one connection on a new control socket with reply
// ("" says nothing) and returns the socket's path. It hangs up at once,
// or, when hold is not nil, once hold is closed.
func fakeDaemon(t *testing.T, reply string, hold <-chan struct{}) string {
	t.Helper()
	socket, l := listenSocket(t)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, reply)
		if hold != nil {
			<-hold
		}
	}()
	return socket
}

// Reload tells a refusal, after which the previous policy is in force,
// from a reload whose outcome is unknown.
func TestReloadOutcome(t *testing.T) {
	tests := []struct {
		name        string
		reply       string
		wantErr     string
		wantRefused bool
	}{
		{"done", `{"reloading":true}` + "\n" + `{"ok":true}` + "\n", "", false},
		{"refused", `{"reloading":true}` + "\n" + `{"ok":false,"error":"load p.hcl: policy has errors"}` + "\n", "load p.hcl: policy has errors", true},
		{"hung up", "", "no answer from the daemon at SOCKET: EOF", false},
		{"hung up once taken", `{"reloading":true}` + "\n", "no outcome from the daemon at SOCKET, which took the reload: EOF", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := fakeDaemon(t, tt.reply, nil)
			err := Reload(socket)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if want := strings.ReplaceAll(tt.wantErr, "SOCKET", socket); got != want {
				t.Errorf("got error %q, want %q", got, want)
			}
			var refused *RefusedError
			if errors.As(err, &refused) != tt.wantRefused {
				t.Errorf("got %#v: refused %v, want %v", err, !tt.wantRefused, tt.wantRefused)
			}
		})
	}
}

// A daemon that takes the connection and never answers (stopped, say:
// the kernel accepts for it) is given up on in controlTimeout, not after
// the reload's own ten minutes.
func TestReloadUnansweredGivesUp(t *testing.T) {
	socket, _ := listenSocket(t) // connections wait in its backlog, unread
	done := make(chan error, 1)
	go func() { done <- Reload(socket) }()
	select {
	case err := <-done:
		if err == nil || !strings.HasPrefix(err.Error(), "no answer from the daemon at "+socket+": ") || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("got %v, want no answer within the control timeout", err)
		}
	case <-time.After(controlTimeout + 10*time.Second):
		t.Fatalf("Reload still waiting %v after asking a daemon that does not answer", controlTimeout+10*time.Second)
	}
}

// A reload refused for a broken policy brings the policy's diagnostics
// back to whoever asked over the control socket.
func TestReloadRefusedWithDiagnostics(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte("watch \"/srv\" {\n  colour = \"red\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := listenControl(filepath.Join(dir, "vigil.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := &daemon{log: hclog.NewNullLogger(), reloads: make(chan chan error)}
	go d.serveControl(l)
	go func() { // Run's loop, reloading
		res := <-d.reloads
		_, err := loadPolicy(bad, io.Discard, nil)
		res <- err
	}()

	err = Reload(l.Addr().String())
	var refused *RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("got %v, want a *RefusedError", err)
	}
	if want := "load " + bad + ": policy has errors"; refused.Reason != want {
		t.Errorf("reason: got %q, want %q", refused.Reason, want)
	}
	for _, want := range []string{bad + ":2,3: Error: Unsupported argument", `colour = "red"`, "^"} {
		if !strings.Contains(refused.Diagnostics, want) {
			t.Errorf("diagnostics lack %q:\n%s", want, refused.Diagnostics)
		}
	}
}

// askEnv makes the test binary a control socket client that asks for the
// status and prints the answer, instead of running tests: see
// TestControlRootOnly.
const askEnv = "VIGIL_TEST_ASK_STATUS"

func init() {
	socket := os.Getenv(askEnv)
	if socket == "" {
		return
	}
	c, err := net.Dial("unix", socket)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	c.Write([]byte("status\n"))
	io.Copy(os.Stdout, c)
	os.Exit(0)
}

// Only root is answered on the control socket, even when its mode lets
// others connect.
func TestControlRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test asks as another user")
	}
	dir := testutil.TempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "vigil.sock")
	l, err := listenControl(socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(socket, 0o777); err != nil {
		t.Fatal(err)
	}
	d := &daemon{log: hclog.NewNullLogger()}
	go d.serveControl(l)

	// The test binary, where another user may run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(dir, "client")
	if err := os.WriteFile(client, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ask := func(uid uint32) string {
		cmd := exec.Command(client)
		cmd.Env = append(os.Environ(), askEnv+"="+socket)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ask as uid %d: %v", uid, err)
		}
		return string(out)
	}
	if out := ask(0); !strings.Contains(out, `"ready"`) {
		t.Errorf("root's status: got %q, want the status", out)
	}
	if out := ask(65534); out != "" {
		t.Errorf("another user's status: got %q, want nothing", out)
	}
}

// An accept that fails for want of descriptors is retried: the control
// socket answers again once descriptors are free, rather than never.
func TestControlAcceptOutOfDescriptors(t *testing.T) {
	l, err := listenControl(filepath.Join(t.TempDir(), "vigil.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs testutil.SyncBuffer
	d := &daemon{log: hclog.New(&hclog.LoggerOptions{Output: &logs})}
	go d.serveControl(l)

	release := testutil.FillDescriptors(t, 1)
	c, err := net.Dial("unix", l.Addr().String()) // takes the last one
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for end := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "too many open files"); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("accept did not fail for want of descriptors; log:\n%s", logs.String())
		}
	}
	release()

	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "status\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, `"pid"`) {
		t.Errorf("status once descriptors are free: got %q, %v; want the status", line, err)
	}
}

// A daemon that stops answering halfway through the metrics is a failed
// read from the socket, not a write to the output (which an *os.File
// output, spliced into, used to say), and no half exposition is printed.
func TestMetricsReadTimeout(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	socket := fakeDaemon(t, "# HELP vigil_events_total Events.\n", done)
	out, err := os.Create(filepath.Join(t.TempDir(), "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	err = Metrics(socket, out)
	if err == nil || !strings.HasPrefix(err.Error(), "read metrics from "+socket+": ") || strings.Contains(err.Error(), "write") {
		t.Errorf("got %v, want a read error from %s", err, socket)
	}
	if fi, _ := out.Stat(); fi.Size() != 0 {
		t.Errorf("got %d bytes of output, want none from a cut exposition", fi.Size())
	}
}
