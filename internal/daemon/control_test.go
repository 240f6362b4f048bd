package daemon

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
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
