package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestListen(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr error // nil: listens; errAny: some other error
	}{
		{"127.0.0.1:0", nil},
		{"127.0.0.2:0", nil},
		{"localhost:0", nil},
		{"0.0.0.0:0", ErrNotLoopback},
		{"[::]:0", ErrNotLoopback},
		{":0", ErrNotLoopback},
		{"8.8.8.8:9100", ErrNotLoopback},
		{"192.168.1.10:9100", ErrNotLoopback},
		{"[2001:db8::1]:9100", ErrNotLoopback},
		{"example.com:9100", ErrNotLoopback},
		{"127.0.0.1", errAny},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			cerr := CheckAddr(tt.addr)
			l, err := Listen(tt.addr)
			if l != nil {
				defer l.Close()
			}
			if (cerr == nil) != (tt.wantErr == nil) || !errors.Is(err, ErrNotLoopback) && errors.Is(cerr, ErrNotLoopback) {
				t.Errorf("CheckAddr(%q): got %v, Listen got %v", tt.addr, cerr, err)
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Listen(%q): got %v want no error", tt.addr, err)
			case tt.wantErr == errAny && err == nil:
				t.Fatalf("Listen(%q): got a listener on %s want an error", tt.addr, l.Addr())
			case tt.wantErr == ErrNotLoopback && !errors.Is(err, ErrNotLoopback):
				t.Fatalf("Listen(%q): got %v want %v", tt.addr, err, ErrNotLoopback)
			}
			if err == nil && !l.Addr().(*net.TCPAddr).IP.IsLoopback() {
				t.Errorf("Listen(%q): got %s want a loopback address", tt.addr, l.Addr())
			}
		})
	}
}

var errAny = errors.New("any error")

func TestServeRefusesNetwork(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "203.0.113.5:9100"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := Serve(ctx, addr, NewRegistry(Sources{}), hclog.NewNullLogger())
		cancel()
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Serve(%q): got %v want %v", addr, err, ErrNotLoopback)
		}
	}
}

func TestServe(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, NewRegistry(fakeSources()), hclog.NewNullLogger()) }()

	client := &http.Client{Timeout: 5 * time.Second}
	tests := []struct {
		path string
		want int
	}{
		{"/metrics", http.StatusOK},
		{"/", http.StatusNotFound},
	}
	for _, tt := range tests {
		resp, err := client.Get("http://" + l.Addr().String() + tt.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read %s: %v", tt.path, err)
		}
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s: got status %d want %d", tt.path, resp.StatusCode, tt.want)
		}
		if tt.want == http.StatusOK {
			fams := parse(t, string(body))
			if got, _ := value(fams, "vigil_events_total", map[string]string{"type": "open"}); got != 900 {
				t.Errorf("GET %s: vigil_events_total{type=open}: got %v want 900", tt.path, got)
			}
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeListener after cancel: got %v want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not return after its context ended")
	}
	if _, err := client.Get("http://" + l.Addr().String() + "/metrics"); err == nil {
		t.Error("GET after shutdown: got a response want a refused connection")
	}
}
