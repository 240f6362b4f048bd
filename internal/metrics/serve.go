package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// Handler serves reg's metrics over HTTP.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             5 * time.Second,
	})
}

// WriteText writes reg's metrics in the Prometheus text format. On a
// gather error it still writes what was gathered, then returns the error.
func WriteText(w io.Writer, reg *prometheus.Registry) error {
	mfs, gerr := reg.Gather()
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("write metrics: %w", err)
		}
	}
	if gerr != nil {
		return fmt.Errorf("gather metrics: %w", gerr)
	}
	return nil
}

// ErrNotLoopback is returned for a listen address other than a loopback
// one: vigil's metrics must not reach the network by accident.
var ErrNotLoopback = errors.New("not a loopback address (use 127.0.0.1, ::1 or localhost)")

// CheckAddr reports whether addr is a host:port Listen accepts, without
// listening: for checking a policy before it takes over.
func CheckAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("metrics listen %q: %w", addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("metrics listen %q: %w", addr, ErrNotLoopback)
		}
	}
	return nil
}

// Listen listens on addr, a host:port whose host is localhost or a
// loopback IP (127.0.0.0/8, ::1); any other host, or none, is refused.
func Listen(addr string) (net.Listener, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %q: %w", addr, err)
	}
	// localhost is resolved by the system; check what it gave.
	if ta, ok := l.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		l.Close()
		return nil, fmt.Errorf("metrics listen %q: bound %s: %w", addr, l.Addr(), ErrNotLoopback)
	}
	return l, nil
}

// Serve serves reg's metrics at /metrics on the loopback address addr
// until ctx is done. A non-loopback address is refused before listening.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log hclog.Logger) error {
	l, err := Listen(addr)
	if err != nil {
		return err
	}
	return ServeListener(ctx, l, reg, log)
}

// ServeListener serves reg's metrics at /metrics on l until ctx is done,
// then closes l.
func ServeListener(ctx context.Context, l net.Listener, reg *prometheus.Registry, log hclog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(reg))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	log.Info("serving metrics", "addr", l.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("serve metrics on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", l.Addr(), err)
	}
	return nil
}
