package onaccess

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// reliefTick is how often the relief checks the reader: a scan by the
	// reader that lasts from one to two ticks loses the reading.
	reliefTick = time.Millisecond
	// reliefIdle is how long the relief keeps ticking after the last
	// inline scan before it sleeps until the next one.
	reliefIdle = 10 * time.Millisecond
	// maxInline is the largest file the reader scans itself; larger
	// ones would mostly outlast a tick and cost a hand-over.
	maxInline int64 = 256 << 10
)

// relief lets the reader scan a file itself without the reading ever
// waiting on that scan, see Loop. It also counts the loop's goroutines.
type relief struct {
	l *Loop

	// inline is the number of the reader's scan in progress, 0 when
	// none. Whoever swaps it from that number to 0 holds the reading: the
	// reader when its scan ends, or the relief when the scan has lasted.
	inline atomic.Int64
	seq    atomic.Int64

	token   chan struct{} // the reading, to an idle member
	idle    atomic.Int32  // members waiting for work
	members atomic.Int32  // members running

	asleep atomic.Bool
	wake   chan struct{}
	quit   chan struct{}
	once   sync.Once
}

func newRelief(l *Loop) *relief {
	return &relief{
		l:     l,
		token: make(chan struct{}),
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
	}
}

// canInline reports whether the reader may scan r itself: a member is
// idle to take the reading over, so the loop keeps its bound of Workers
// scans at a time.
func (rl *relief) canInline(r *request) bool {
	return r.size <= maxInline && rl.idle.Load() > 0
}

// scan scans r on the reader and reports whether the reader still holds
// the reading.
func (rl *relief) scan(r *request) bool {
	n := rl.seq.Add(1)
	rl.inline.Store(n)
	// Read after the store above; the relief stores asleep before it
	// checks inline: one of the two sees the other.
	if rl.asleep.Load() && rl.asleep.CompareAndSwap(true, false) {
		rl.wake <- struct{}{}
	}
	rl.l.scan(r)
	r.close(rl.l)
	return rl.inline.CompareAndSwap(n, 0)
}

// run checks the reader every tick while it scans files, and sleeps
// while it does not. It ticks on a runtime ticker, which re-arms itself
// where it fires. It once slept in nanosleep(2) on a thread of its own,
// but the runtime counts a goroutine in a system call as holding its P:
// with the reader busy on the other one, sysmon took that P back at every
// tick and went on checking every 20 µs. On a stream of first opens of
// clean files that cost the daemon about 40% more CPU per event, and each
// open about 40% more time (measured: 39 against 28 µs, 55 against 39 µs).
func (rl *relief) run() {
	ticker := time.NewTicker(reliefTick)
	defer ticker.Stop()
	var seen int64
	var quiet time.Duration
	for {
		select {
		case <-ticker.C:
		case <-rl.quit:
			return
		}
		n := rl.inline.Load()
		switch {
		case n != 0 && n == seen:
			// The same scan as a tick ago: take the reading away.
			if rl.inline.CompareAndSwap(n, 0) {
				rl.handOver()
			}
			seen, quiet = 0, 0
		case n != 0:
			seen, quiet = n, 0
		default:
			seen = 0
			quiet += reliefTick
		}
		if quiet >= reliefIdle {
			ticker.Stop()
			if !rl.sleep() {
				return
			}
			ticker.Reset(reliefTick)
			quiet = 0
		}
	}
}

// sleep waits for the next inline scan; false when the loop ends.
func (rl *relief) sleep() bool {
	rl.asleep.Store(true)
	if rl.inline.Load() != 0 && rl.asleep.CompareAndSwap(true, false) {
		return true // a scan started: stay awake
	}
	select {
	case <-rl.wake:
		return true
	case <-rl.quit:
		return false
	}
}

// handOver gives the reading taken from a slow scan to an idle member, or
// to a new one.
func (rl *relief) handOver() {
	select {
	case rl.token <- struct{}{}:
	default:
		rl.l.spawn(true)
	}
}

// wait waits for a request, which it scans, or for the reading; false
// when the loop ends.
func (rl *relief) wait() (reading, ok bool) {
	l := rl.l
	rl.idle.Add(1)
	select {
	case r, ok := <-l.queue:
		rl.idle.Add(-1)
		if !ok {
			return false, false
		}
		l.scan(r)
		r.close(l)
		return false, true
	case <-rl.token:
		rl.idle.Add(-1)
		return true, true
	}
}

// surplus ends a member beyond Workers+1, made by a hand-over; it reports
// whether the caller must return.
func (rl *relief) surplus() bool {
	for {
		n := rl.members.Load()
		if n <= int32(rl.l.cfg.Workers+1) {
			return false
		}
		if rl.members.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// stop ends run.
func (rl *relief) stop() { rl.once.Do(func() { close(rl.quit) }) }
