package onaccess

import (
	"sync/atomic"
	"time"
)

// Counters count what the loop did. Every permission event read ends in
// exactly one of Allowed or Denied (or RespondErrors when the kernel
// refused the answer).
type Counters struct {
	Events atomic.Uint64 // permission events read
	// Writers' closes (FAN_CLOSE_WRITE, a notification): each drops the
	// file's clean verdict. Not in Events, which counts answers owed.
	CloseWrites atomic.Uint64
	// By the permission the event asks for; an exec asks for two
	// (FAN_OPEN_EXEC_PERM, then FAN_OPEN_PERM), each its own event.
	Opens, Execs, Accesses atomic.Uint64
	Allowed                atomic.Uint64
	Denied                 atomic.Uint64
	Blocked                atomic.Uint64 // denied because infected
	Alerted                atomic.Uint64 // infected, allowed by an alert watch
	Scans                  atomic.Uint64
	CacheHits              atomic.Uint64 // user-space clean cache
	Self                   atomic.Uint64 // vigil's own opens
	Excluded               atomic.Uint64 // out of scope or excluded
	Skipped                atomic.Uint64 // not regular, too small to scan, or over max_file_size
	Errors                 atomic.Uint64 // on_error decided
	Timeouts               atomic.Uint64
	QueueFull              atomic.Uint64
	Overflows              atomic.Uint64
	NoFd                   atomic.Uint64
	RespondErrors          atomic.Uint64
	IgnoreErrors           atomic.Uint64
	// Ignore marks on directories outside every watch (Quiet): placed,
	// removed (moved into a watch, or an overflow), removed right after
	// placing because the directory moved meanwhile, and failures.
	Quieted, Unquieted, QuietRaces, QuietErrors atomic.Uint64

	// Decision latency of scanned events, in power-of-two microsecond
	// buckets: bucket i counts latencies below 2^i µs.
	latency [latencyBuckets]atomic.Uint64
}

const latencyBuckets = 24 // up to ~8 s

func (c *Counters) count(allow bool) {
	if allow {
		c.Allowed.Add(1)
	} else {
		c.Denied.Add(1)
	}
}

func (c *Counters) observe(d time.Duration) {
	us := uint64(d / time.Microsecond)
	i := 0
	for i < latencyBuckets-1 && us >= 1<<i {
		i++
	}
	c.latency[i].Add(1)
}

// Snapshot is a copy of Counters at one moment.
type Snapshot struct {
	Events, Allowed, Denied, Blocked, Alerted, Scans, CacheHits, Self,
	Excluded, Skipped, Errors, Timeouts, QueueFull, Overflows, NoFd,
	Opens, Execs, Accesses, CloseWrites,
	RespondErrors, IgnoreErrors uint64
	Quieted, Unquieted, QuietRaces, QuietErrors uint64
	Latency                                     [latencyBuckets]uint64
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() Snapshot {
	s := Snapshot{
		Events: c.Events.Load(), Allowed: c.Allowed.Load(), Denied: c.Denied.Load(),
		Blocked: c.Blocked.Load(), Alerted: c.Alerted.Load(), Scans: c.Scans.Load(),
		CacheHits: c.CacheHits.Load(), Self: c.Self.Load(), Excluded: c.Excluded.Load(),
		Skipped: c.Skipped.Load(), Errors: c.Errors.Load(), Timeouts: c.Timeouts.Load(),
		QueueFull: c.QueueFull.Load(), Overflows: c.Overflows.Load(), NoFd: c.NoFd.Load(),
		Opens: c.Opens.Load(), Execs: c.Execs.Load(), Accesses: c.Accesses.Load(),
		CloseWrites:   c.CloseWrites.Load(),
		RespondErrors: c.RespondErrors.Load(), IgnoreErrors: c.IgnoreErrors.Load(),
		Quieted: c.Quieted.Load(), Unquieted: c.Unquieted.Load(),
		QuietRaces: c.QuietRaces.Load(), QuietErrors: c.QuietErrors.Load(),
	}
	for i := range c.latency {
		s.Latency[i] = c.latency[i].Load()
	}
	return s
}
