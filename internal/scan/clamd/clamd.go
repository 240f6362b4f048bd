package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan"
)

// Config configures an Engine.
type Config struct {
	// Address is unix:///path/to/clamd.ctl or tcp://host:port.
	Address string
	// Timeout bounds each request to clamd, on top of the caller's
	// context (default DefaultTimeout).
	Timeout time.Duration
	// Conns is the most requests in flight and sessions kept open
	// (default 1); set it to the number of workers.
	Conns int
}

const (
	// DefaultTimeout is Config.Timeout's default.
	DefaultTimeout = 10 * time.Second
	// idleMax retires pooled sessions before clamd's IdleTimeout (30s by
	// default) closes them under us.
	idleMax = 10 * time.Second
	// versionTTL is how often Version asks clamd again, so that a database
	// update invalidates cached verdicts soon after clamd loads it.
	versionTTL = 30 * time.Second
	// chunkSize is the INSTREAM chunk; clamd reads chunks of any size.
	chunkSize = 64 << 10
	// maxReply bounds a reply line.
	maxReply = 4096
)

// ErrSizeLimit is returned when the file exceeds clamd's StreamMaxLength.
var ErrSizeLimit = errors.New("clamd: INSTREAM size limit exceeded (StreamMaxLength)")

// ErrDown is returned at once by scans while clamd does not answer PING.
var ErrDown = errors.New("clamd not answering")

// pingEvery is how often clamd is asked for PONG while it does not answer.
const pingEvery = time.Second

// Engine asks clamd. It keeps up to Conns sessions (IDSESSION) open:
// a session saves a connect and clamd's per-connection set-up on every
// file, which is most of the cost of a small clean file. A session that
// clamd closed while idle is detected on use and the request retried once
// on a fresh one.
type Engine struct {
	network, addr string
	timeout       time.Duration
	log           hclog.Logger

	slots chan struct{} // one per request in flight
	idle  chan *session // open sessions, newest last

	version    atomic.Pointer[string]
	versionAt  atomic.Int64 // unix nanoseconds of the last answer
	refreshing atomic.Bool
	closed     atomic.Bool

	// down is set while clamd does not answer PING (see checkHealth);
	// checking while a check runs.
	down      atomic.Pointer[outage]
	checking  atomic.Bool
	quit      chan struct{} // closed by Close: checks end
	closeOnce sync.Once
}

// outage is a time clamd did not answer PING: since when, and why.
type outage struct {
	since time.Time
	err   error
}

var (
	_ scan.Engine = (*Engine)(nil)
	_ scan.Health = (*Engine)(nil)
)

// New checks cfg, PINGs clamd and reads its VERSION: a clamd that is down
// or not clamd is an error here, not at the first scan.
func New(cfg Config, log hclog.Logger) (*Engine, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	network, addr, err := ParseAddress(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("clamd address %q: %w; want unix:///path or tcp://host:port", cfg.Address, err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	e := &Engine{
		network: network,
		addr:    addr,
		timeout: cfg.Timeout,
		log:     log,
		slots:   make(chan struct{}, cfg.Conns),
		idle:    make(chan *session, cfg.Conns),
		quit:    make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := e.Ping(ctx); err != nil {
		return nil, err
	}
	if err := e.refreshVersion(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// ParseAddress splits a clamd address, unix:///absolute/path or
// tcp://host:port, into the network and address net.Dial takes. The
// policy checks engine "clamd" addresses with it too, so an address that
// passes `vigil policy check` is one New accepts. The error says what is
// wrong; callers name the address and the forms wanted.
func ParseAddress(a string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(a, "unix://"); ok {
		// unix://run/clamd.ctl would dial run/clamd.ctl, relative to
		// whatever directory vigil runs in.
		if !filepath.IsAbs(p) {
			return "", "", errors.New("the socket path is not absolute")
		}
		return "unix", p, nil
	}
	if hp, ok := strings.CutPrefix(a, "tcp://"); ok {
		host, port, err := net.SplitHostPort(hp)
		if ae := (*net.AddrError)(nil); errors.As(err, &ae) {
			return "", "", errors.New(ae.Err)
		}
		if err != nil {
			return "", "", err
		}
		if host == "" {
			return "", "", errors.New("the host is missing")
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return "", "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		return "tcp", hp, nil
	}
	return "", "", errors.New("the scheme is neither unix:// nor tcp://")
}

// Name implements scan.Engine.
func (e *Engine) Name() string { return "clamd" }

// Version implements scan.Engine: clamd's VERSION reply, e.g.
// "ClamAV 1.4.6/27451/Wed Nov  6 09:37:00 2024", whose middle part is the
// database version. It is asked again on every new session and at least
// every 30s (in the background: Version never waits on clamd).
func (e *Engine) Version() string {
	if time.Since(time.Unix(0, e.versionAt.Load())) > versionTTL {
		e.refreshAsync()
	}
	if v := e.version.Load(); v != nil {
		return *v
	}
	return ""
}

func (e *Engine) refreshAsync() {
	if e.closed.Load() || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
		defer cancel()
		if err := e.refreshVersion(ctx); err != nil {
			e.log.Warn("clamd version", "engine", "clamd", "error", err)
		}
	}()
}

func (e *Engine) refreshVersion(ctx context.Context) error {
	v, err := e.oneShot(ctx, "VERSION")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(v, "ClamAV ") {
		return fmt.Errorf("clamd version: unexpected reply %q", clip(v))
	}
	if old := e.version.Swap(&v); old != nil && *old != v {
		e.log.Info("clamd version changed", "engine", "clamd", "old", *old, "new", v)
	}
	e.versionAt.Store(time.Now().UnixNano())
	return nil
}

// Ping asks clamd for PONG on a new connection: a health check of the
// daemon, not of a pooled session.
func (e *Engine) Ping(ctx context.Context) error {
	r, err := e.oneShot(ctx, "PING")
	if err != nil {
		return err
	}
	if r != "PONG" {
		return fmt.Errorf("clamd ping: unexpected reply %q", clip(r))
	}
	return nil
}

// Close closes the pooled sessions and ends a health check. Scans after
// Close still work, on connections of their own, and ask clamd whatever
// the last check found.
func (e *Engine) Close() error {
	e.closed.Store(true)
	e.closeOnce.Do(func() { close(e.quit) })
	for {
		select {
		case s := <-e.idle:
			s.end()
		default:
			return nil
		}
	}
}

// oneShot sends one command on its own connection and returns the reply.
func (e *Engine) oneShot(ctx context.Context, cmd string) (string, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop := e.deadline(ctx, c)
	defer stop()
	if _, err := c.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", e.wrap(ctx, "clamd "+strings.ToLower(cmd), err)
	}
	r, err := readReply(bufio.NewReader(c))
	if err != nil {
		return "", e.wrap(ctx, "clamd "+strings.ToLower(cmd), err)
	}
	return r, nil
}

func (e *Engine) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: e.timeout}
	c, err := d.DialContext(ctx, e.network, e.addr)
	if err != nil {
		return nil, fmt.Errorf("clamd connect %s: %w", e.addr, err)
	}
	return c, nil
}

// deadline applies the earlier of ctx's deadline and the engine timeout to
// c, and cuts c short when ctx is cancelled.
func (e *Engine) deadline(ctx context.Context, c net.Conn) (stop func() bool) {
	dl := time.Now().Add(e.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.SetDeadline(dl)
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
}

// wrap names the operation and prefers the context's error, so callers
// can tell a deadline from a broken clamd.
func (e *Engine) wrap(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: no reply within %v: %w", op, e.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// session is a connection in IDSESSION mode.
type session struct {
	c      net.Conn
	r      *bufio.Reader
	nextID int
	used   time.Time
}

func (s *session) end() {
	s.c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	s.c.Write([]byte("zEND\x00"))
	s.c.Close()
}

func (e *Engine) newSession(ctx context.Context) (*session, error) {
	c, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte("zIDSESSION\x00")); err != nil {
		c.Close()
		return nil, fmt.Errorf("clamd session: %w", err)
	}
	// A new session may follow a clamd restart or reload: ask again.
	e.refreshAsync()
	return &session{c: c, r: bufio.NewReaderSize(c, maxReply), nextID: 1}, nil
}

// get returns an idle session or a new one; reused reports the former.
func (e *Engine) get(ctx context.Context) (s *session, reused bool, err error) {
	for {
		select {
		case s := <-e.idle:
			if time.Since(s.used) < idleMax {
				return s, true, nil
			}
			s.end()
			continue
		default:
		}
		s, err := e.newSession(ctx)
		return s, false, err
	}
}

func (e *Engine) put(s *session) {
	s.used = time.Now()
	s.c.SetDeadline(time.Time{})
	if e.closed.Load() {
		s.end()
		return
	}
	select {
	case e.idle <- s:
	default:
		s.end()
	}
}

// errStale marks a failure on a reused session before any reply: clamd
// closed it while idle, and the request can be retried.
type errStale struct{ err error }

func (e errStale) Error() string { return e.err.Error() }
func (e errStale) Unwrap() error { return e.err }

// request runs one command on a session: send writes it, the reply is
// read and its session id checked.
func (e *Engine) request(ctx context.Context, op string, send func(*session) error) (string, error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("%s: waiting for a clamd connection: %w", op, ctx.Err())
	}
	defer func() { <-e.slots }()
	for attempt := 0; ; attempt++ {
		s, reused, err := e.get(ctx)
		if err != nil {
			return "", e.wrap(ctx, op, err)
		}
		reply, err := e.roundTrip(ctx, s, send)
		if err == nil {
			e.put(s)
			return reply, nil
		}
		s.c.Close()
		var stale errStale
		if reused && attempt == 0 && errors.As(err, &stale) && ctx.Err() == nil {
			e.log.Debug("clamd session closed while idle, retrying", "engine", "clamd", "error", err)
			continue
		}
		return "", e.wrap(ctx, op, err)
	}
}

func (e *Engine) roundTrip(ctx context.Context, s *session, send func(*session) error) (string, error) {
	stop := e.deadline(ctx, s.c)
	defer stop()
	id := s.nextID
	s.nextID++
	sendErr := send(s)
	reply, err := readReply(s.r)
	if err != nil {
		if sendErr != nil {
			err = sendErr
		}
		if isClosed(err) {
			return "", errStale{err}
		}
		return "", err
	}
	// Replies in a session are "<id>: <reply>".
	prefix := strconv.Itoa(id) + ": "
	if !strings.HasPrefix(reply, prefix) {
		return "", fmt.Errorf("reply %q does not carry request id %d", clip(reply), id)
	}
	reply = reply[len(prefix):]
	if sendErr != nil && !strings.HasSuffix(reply, " ERROR") {
		// clamd answered although the request did not get through.
		return "", sendErr
	}
	return reply, nil
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// readReply reads one NUL-terminated reply (z-commands).
func readReply(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice(0)
		b = append(b, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) && len(b) < maxReply {
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("reply longer than %d bytes", maxReply)
		}
		if errors.Is(err, io.EOF) && len(b) > 0 {
			return "", fmt.Errorf("reply %q cut short: %w", clip(string(b)), io.ErrUnexpectedEOF)
		}
		return "", err
	}
	return string(bytes.TrimRight(b[:len(b)-1], "\n")), nil
}

// Scan implements scan.Engine. Over a unix socket clamd gets f's
// descriptor (FILDES) and reads the file itself, never by path; over TCP
// the file is streamed (INSTREAM) from offset 0 with ReadAt, leaving f's
// offset alone. Only regular files are sent; anything else is clean.
func (e *Engine) Scan(ctx context.Context, f *os.File) (scan.Result, error) {
	fi, err := f.Stat()
	if err != nil {
		return scan.Result{}, fmt.Errorf("clamd scan: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return scan.Result{}, nil
	}
	op := "clamd scan " + f.Name()
	if err := e.Health(); err != nil {
		return scan.Result{}, fmt.Errorf("%s: %w; asked again every %v", op, err, pingEvery)
	}
	var reply string
	if e.network == "unix" {
		reply, err = e.request(ctx, op, func(s *session) error { return sendFD(s, f) })
	} else {
		reply, err = e.request(ctx, op, func(s *session) error { return sendStream(s, f, fi.Size()) })
	}
	if err != nil {
		e.checkHealth()
		return scan.Result{}, err
	}
	res, err := parseScanReply(reply)
	if err != nil {
		return scan.Result{}, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}

// Health implements scan.Health: ErrDown, with since when and why, while
// clamd does not answer PING (see checkHealth).
func (e *Engine) Health() error {
	if o := e.down.Load(); o != nil && !e.closed.Load() {
		return fmt.Errorf("%w: no PONG since %s (%v)", ErrDown, o.since.Format(time.TimeOnly), o.err)
	}
	return nil
}

// checkHealth asks clamd for PONG after a request failed without a reply,
// unless a check runs. While clamd does not answer, scans fail at once,
// and on_error decides, rather than each waiting for its deadline: a
// stopped or stuck clamd would otherwise cost every open scan_timeout, and
// find, once it resumes, a pile of requests for opens answered long ago.
// clamd is asked again every pingEvery until it answers. The check waits
// as long as a request may (Config.Timeout): a clamd busy with long scans
// but answering is not down.
func (e *Engine) checkHealth() {
	if e.closed.Load() || !e.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.checking.Store(false)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
			err := e.Ping(ctx)
			cancel()
			if e.closed.Load() {
				return
			}
			if err == nil {
				if o := e.down.Swap(nil); o != nil {
					e.log.Info("clamd answers again: scanning resumes", "engine", "clamd",
						"down_for", time.Since(o.since).Round(time.Millisecond))
				}
				return
			}
			if e.down.CompareAndSwap(nil, &outage{since: time.Now(), err: err}) {
				e.log.Error("clamd does not answer PING: scans fail at once, on_error decides, until it does",
					"engine", "clamd", "error", err)
			}
			select {
			case <-e.quit:
				return
			case <-time.After(pingEvery):
			}
		}
	}()
}

// sendFD sends FILDES and then f's descriptor with one dummy byte, as
// clamdscan does.
func sendFD(s *session, f *os.File) error {
	uc, ok := s.c.(*net.UnixConn)
	if !ok {
		return errors.New("FILDES needs a unix socket")
	}
	if _, err := uc.Write([]byte("zFILDES\x00")); err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	// Control keeps the descriptor open while it is sent, without f.Fd()
	// switching f to blocking mode.
	if err := rc.Control(func(fd uintptr) {
		_, _, werr = uc.WriteMsgUnix([]byte{0}, unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return err
	}
	return werr
}

// sendStream sends INSTREAM: chunks of a 4-byte big-endian length and the
// data, then a zero length. The file is read up to the size seen by Stat
// so that a growing file cannot keep the request going.
func sendStream(s *session, f *os.File, size int64) error {
	w := bufio.NewWriterSize(s.c, chunkSize+4)
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	var hdr [4]byte
	for off := int64(0); off < size; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			w.Write(hdr[:])
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break // the file shrank
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
	binary.BigEndian.PutUint32(hdr[:], 0)
	w.Write(hdr[:])
	return w.Flush()
}

// parseScanReply parses a scan reply (its session id removed):
// "<name>: OK", "<name>: <signature> FOUND", "<message> ERROR", where
// <name> is "stream" or "fd[N]".
func parseScanReply(r string) (scan.Result, error) {
	switch {
	case strings.HasSuffix(r, " ERROR"):
		msg := strings.TrimSuffix(r, " ERROR")
		if strings.Contains(msg, "size limit exceeded") {
			return scan.Result{}, ErrSizeLimit
		}
		return scan.Result{}, fmt.Errorf("clamd error: %s", clip(msg))
	case strings.HasSuffix(r, " FOUND"):
		body := strings.TrimSuffix(r, " FOUND")
		sig := ""
		// The name may be a path, with ": " in it; a signature never has.
		if i := strings.LastIndex(body, ": "); i >= 0 {
			sig = body[i+2:]
		}
		if sig == "" || strings.ContainsAny(sig, " \x00") {
			return scan.Result{}, fmt.Errorf("malformed FOUND reply %q", clip(r))
		}
		return scan.Result{Infected: true, Signature: sig}, nil
	case strings.HasSuffix(r, ": OK"):
		return scan.Result{}, nil
	}
	return scan.Result{}, fmt.Errorf("unexpected reply %q", clip(r))
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
