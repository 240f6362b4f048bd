package daemon

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/alert"
	"github.com/vigilsec/vigil/internal/policy"
	"github.com/vigilsec/vigil/internal/quarantine"
)

// quarantiner moves denied files into the quarantine store on a goroutine
// of its own: a move copies and syncs, which the loop must never wait on.
type quarantiner struct {
	store  *quarantine.Store
	alerts *alert.Log
	log    hclog.Logger
	jobs   chan quarantineJob
	done   chan struct{}
}

type quarantineJob struct {
	fd   int
	path string
	rec  alert.Record
}

// quarantineQueue bounds the files waiting to be moved; past it a file
// stays in place, blocked, and the alert says why.
const quarantineQueue = 256

// newQuarantiner opens the store of a policy that quarantines; nil when no
// watch does.
func newQuarantiner(p *policy.Policy, alerts *alert.Log, log hclog.Logger) (*quarantiner, error) {
	used := false
	for _, w := range p.Watches {
		used = used || w.Action == policy.ActionQuarantine
	}
	if !used {
		return nil, nil
	}
	store, err := quarantine.Open(p.Settings.QuarantineDir)
	if err != nil {
		return nil, err
	}
	q := &quarantiner{
		store:  store,
		alerts: alerts,
		log:    log.Named("quarantine"),
		jobs:   make(chan quarantineJob, quarantineQueue),
		done:   make(chan struct{}),
	}
	go q.run()
	return q, nil
}

// Quarantine implements onaccess.Quarantiner.
func (q *quarantiner) Quarantine(fd int, path string, rec alert.Record) {
	select {
	case q.jobs <- quarantineJob{fd, path, rec}:
	default:
		unix.Close(fd)
		rec.Action, rec.Error = alert.ActionBlocked, "quarantine queue full: the file stays in place"
		q.alerts.Emit(rec)
		q.log.Error("queue full: file blocked but left in place", "path", path, "signature", rec.Signature)
	}
}

func (q *quarantiner) run() {
	defer close(q.done)
	for j := range q.jobs {
		f := os.NewFile(uintptr(j.fd), j.path)
		e, err := q.add(f, j)
		f.Close()
		rec := j.rec
		rec.Quarantine = e.ID
		switch {
		case err == nil:
			rec.Action = alert.ActionQuarantined
			q.log.Warn("infected file quarantined", "path", j.path, "signature", rec.Signature, "id", e.ID)
		case errors.Is(err, quarantine.ErrNotRemoved):
			// Copied, but the path names another file by now: that file
			// is not ours to remove, and its own opens are scanned.
			rec.Action, rec.Error = alert.ActionQuarantined, err.Error()
			q.log.Warn("infected file copied to quarantine, original not removed", "path", j.path, "id", e.ID, "error", err)
		default:
			rec.Action, rec.Error = alert.ActionBlocked, "quarantine: "+err.Error()
			q.log.Error("quarantine failed: the file stays in place, blocked", "path", j.path, "error", err)
		}
		q.alerts.Emit(rec)
	}
}

// add moves j's file into the store. A store whose directory was removed
// while vigil ran is made again, as a start would make it, and the move
// tried once more: until a reload, every file would stay in place.
func (q *quarantiner) add(f *os.File, j quarantineJob) (quarantine.Entry, error) {
	info := quarantine.Info{
		Signature: j.rec.Signature, PID: j.rec.PID, UID: j.rec.UID,
		Exe: j.rec.Exe, Watch: j.rec.Watch, Time: j.rec.Time,
	}
	e, err := q.store.Add(f, j.path, info)
	if err == nil || !q.store.Removed() {
		return e, err
	}
	s, oerr := quarantine.Open(q.store.Dir())
	if oerr != nil {
		return e, fmt.Errorf("%w (the store was removed, and cannot be made again: %v)", err, oerr)
	}
	q.store.Close()
	q.store = s
	q.log.Warn("the quarantine store was removed: made again", "dir", s.Dir())
	return q.store.Add(f, j.path, info)
}

// close moves what is queued, then stops.
func (q *quarantiner) close() {
	if q == nil {
		return
	}
	close(q.jobs)
	<-q.done
	q.store.Close()
}
