package alert

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
)

// Actions of a Record.
const (
	ActionBlocked     = "blocked"
	ActionAlerted     = "alerted"
	ActionQuarantined = "quarantined" // blocked, then moved into the quarantine
	ActionError       = "error"
)

// Record is one alert line.
type Record struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // ActionBlocked, ActionAlerted, ActionQuarantined or ActionError
	Path   string    `json:"path"`
	// PathB64 holds the exact bytes of Path, base64 (standard encoding),
	// when Path is not valid UTF-8: JSON would replace them with U+FFFD.
	// Emit sets it.
	PathB64   string `json:"path_b64,omitempty"`
	Signature string `json:"signature,omitempty"`
	PID       int32  `json:"pid"`
	UID       uint32 `json:"uid"`
	Exe       string `json:"exe,omitempty"`
	Watch     string `json:"watch"`
	Engine    string `json:"engine"`
	Error     string `json:"error,omitempty"`
	// Quarantine is the quarantine entry id of a quarantined file.
	Quarantine string `json:"quarantine,omitempty"`
}

const (
	queueSize = 4096
	// batchBytes bounds one write: records queued together go out in one
	// write(2), each line whole.
	batchBytes = 64 << 10
	// errLogEvery limits the logging of write errors, e.g. a full disk.
	errLogEvery = time.Minute
)

// Log is an alert sink: Emit queues, one goroutine writes.
type Log struct {
	path string
	log  hclog.Logger
	w    io.Writer
	c    io.Closer // nil: nothing to close

	mu     sync.RWMutex // guards closed against Emit during Close
	closed bool
	q      chan Record
	done   chan struct{}
	reopen chan chan error
	torn   bool // the file ends in a line cut short; the writer alone uses it

	written, dropped, failed atomic.Uint64
	closeOnce                sync.Once
	closeErr                 error
}

// Open appends to the alert log at path, creating it (0600) and its
// directory (0700) if missing. log may be nil.
func Open(path string, log hclog.Logger) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create alert log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open alert log: %w", err)
	}
	return newLog(f, f, path, queueSize, log), nil
}

// Discard returns a Log that drops every record without counting it.
func Discard() *Log {
	return &Log{log: hclog.NewNullLogger()}
}

// newLog starts the writer of a Log writing to w, closing c (if not nil)
// on Close, with a queue of size records.
func newLog(w io.Writer, c io.Closer, path string, size int, log hclog.Logger) *Log {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	l := &Log{
		path:   path,
		log:    log.Named("alert"),
		w:      w,
		c:      c,
		q:      make(chan Record, size),
		done:   make(chan struct{}),
		reopen: make(chan chan error),
	}
	go l.run()
	return l
}

// Emit queues r and returns at once: it runs right after a permission
// response and must never wait on the disk. When the queue is full, r is
// dropped and counted.
func (l *Log) Emit(r Record) {
	if l.q == nil {
		return // Discard
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.q <- r:
	default:
		l.dropped.Add(1)
	}
}

// Stats returns the records written, dropped (queue full or closed) and
// lost to write errors.
func (l *Log) Stats() (written, dropped, failed uint64) {
	return l.written.Load(), l.dropped.Load(), l.failed.Load()
}

// Reopen opens the alert log's path again, for log rotation (SIGUSR1):
// records queued meanwhile go to the new file. On error the old file stays
// in use.
func (l *Log) Reopen() error {
	if l.q == nil || l.path == "" {
		return nil
	}
	res := make(chan error, 1)
	select {
	case l.reopen <- res:
		return <-res
	case <-l.done:
		return errors.New("reopen alert log: closed")
	}
}

// reopenFile runs in the writer goroutine, which alone uses w and c.
func (l *Log) reopenFile() error {
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("reopen alert log: %w", err)
	}
	if l.c != nil {
		l.c.Close()
	}
	l.w, l.c, l.torn = f, f, false
	return nil
}

// Close writes what is queued, then closes the file.
func (l *Log) Close() error {
	if l.q == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.q)
		l.mu.Unlock()
		<-l.done
		if l.c != nil {
			if err := l.c.Close(); err != nil {
				l.closeErr = fmt.Errorf("close alert log: %w", err)
			}
		}
	})
	return l.closeErr
}

func (l *Log) run() {
	defer close(l.done)
	var (
		buf     bytes.Buffer
		lastLog time.Time
	)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for {
		var r Record
		select {
		case res := <-l.reopen:
			res <- l.reopenFile()
			continue
		case rec, ok := <-l.q:
			if !ok {
				return
			}
			r = rec
		}
		buf.Reset()
		if l.torn {
			// A line was cut short and could not be taken back: start
			// on a line of its own rather than run on from it.
			buf.WriteByte('\n')
		}
		n := l.encode(enc, r)
		// Take what else is queued, up to a batch, without waiting.
	batch:
		for buf.Len() < batchBytes {
			select {
			case r, ok := <-l.q:
				if !ok {
					break batch
				}
				n += l.encode(enc, r)
			default:
				break batch
			}
		}
		if n == 0 {
			continue
		}
		b := buf.Bytes()
		wrote, err := l.w.Write(b)
		if err != nil {
			// Lines written whole before the error (a full disk) are
			// kept; a line cut short is taken back.
			lead := 0 // the newline that ends a torn line
			if l.torn {
				lead = 1
			}
			whole := max(lead, bytes.LastIndexByte(b[:wrote], '\n')+1)
			lines := uint64(bytes.Count(b[lead:whole], []byte{'\n'}))
			if wrote > 0 {
				l.torn = false
			}
			if whole < wrote {
				l.untear(int64(wrote - whole))
			}
			l.written.Add(lines)
			l.failed.Add(n - lines)
			if now := time.Now(); now.Sub(lastLog) >= errLogEvery {
				lastLog = now
				l.log.Error("write alert log", "path", l.path, "error", err, "failed", l.failed.Load())
			}
			continue
		}
		l.torn = false
		l.written.Add(n)
	}
}

// untear removes the last cut bytes of the file, a line a write error cut
// short, so that the next record does not run on from it. Where that
// fails, the next write starts with a newline.
func (l *Log) untear(cut int64) {
	f, ok := l.w.(interface {
		Stat() (os.FileInfo, error)
		Truncate(int64) error
	})
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Size() >= cut && f.Truncate(fi.Size()-cut) == nil {
			return
		}
	}
	l.torn = true
}

// encode appends r as one line to the encoder's buffer; it returns the
// number of records added (0 or 1).
func (l *Log) encode(enc *json.Encoder, r Record) uint64 {
	if !utf8.ValidString(r.Path) {
		r.PathB64 = base64.StdEncoding.EncodeToString([]byte(r.Path))
	}
	// Encode escapes newlines and ends the line: one record, one line.
	if err := enc.Encode(r); err != nil {
		l.failed.Add(1)
		l.log.Error("encode alert", "path", r.Path, "error", err)
		return 0
	}
	return 1
}
