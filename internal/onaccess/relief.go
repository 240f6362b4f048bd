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
	// stuckReadTicks is how many ticks one read(2) must be seen in the
	// kernel before it loses the reading: a read that opens the files of
	// a full batch on a loaded machine takes more than a tick.
	stuckReadTicks = 10
	// reliefIdle is how long the relief keeps ticking after the reader
	// was last busy before it sleeps until the next events.
	reliefIdle = 10 * time.Millisecond
	// stuckCheck is how often the sleeping relief looks for a read(2)
	// blocked in the kernel: an event's file on a hung NFS or FUSE server
	// holds every other event that long at most, then stuckReadTicks.
	stuckCheck = 100 * time.Millisecond
	// maxInline is the largest file the reader scans itself; larger
	// ones would mostly outlast a tick and cost a hand-over.
	maxInline int64 = 256 << 10
)

// relief lets the reader scan a file itself, and the kernel open files
// inside its read(2), without the reading ever waiting on either, see
// Loop. It also counts the loop's goroutines.
type relief struct {
	l *Loop

	// turn is the number of the reader's turn in progress, 0 when none:
	// from before its read until it is done with what it read (the batch
	// settled, one file perhaps scanned). Whoever swaps it from that
	// number to another holds the reading: the reader as the turn goes
	// on and when it ends, or the relief when the turn has lasted. Its
	// low bit (waitBit) says the turn is in Source.ReadEvents, which
	// waits as long as no event comes: there the turn has lasted only if
	// one read(2) has (Source.InRead).
	turn atomic.Int64
	seq  atomic.Int64

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

const waitBit = 1

// begin starts a turn of the reader; reading says it starts with a read.
func (rl *relief) begin(reading bool) int64 {
	n := rl.seq.Add(1) << 1
	if reading {
		n |= waitBit
	}
	rl.turn.Store(n)
	return n
}

// read tells that turn n's read returned, and wakes the relief. It
// returns the turn's number from now on, and whether it still holds the
// reading.
func (rl *relief) read(n int64) (int64, bool) {
	held := rl.turn.CompareAndSwap(n, n&^waitBit)
	// Read after the turn's swap; the relief stores asleep before it
	// looks at the turn: one of the two sees the other.
	if held && rl.asleep.Load() && rl.asleep.CompareAndSwap(true, false) {
		rl.wake <- struct{}{}
	}
	return n &^ waitBit, held
}

// end ends turn n and reports whether it still held the reading.
func (rl *relief) end(n int64) bool { return rl.turn.CompareAndSwap(n, 0) }

// look returns the reader's turn and, when the turn waits in ReadEvents,
// its read(2) in the kernel; busy says the turn may last too long:
// anywhere but waiting for events in the poller.
func (rl *relief) look() (turn int64, read uint64, busy bool) {
	switch turn = rl.turn.Load(); {
	case turn == 0:
		return 0, 0, false
	case turn&waitBit != 0:
		read = rl.l.cfg.Source.InRead()
		return turn, read, read != 0
	}
	return turn, 0, true
}

// run checks the reader every tick while it is busy, and sleeps while it
// waits for events. It ticks on a runtime ticker, which re-arms itself
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
	var seenRead uint64
	var ticks int // since seen was first seen
	var quiet time.Duration
	for {
		select {
		case <-ticker.C:
		case <-rl.quit:
			return
		}
		n, r, busy := rl.look()
		switch {
		case !busy:
			seen, seenRead, ticks = 0, 0, 0
			if quiet += reliefTick; quiet >= reliefIdle {
				ticker.Stop()
				if !rl.sleep() {
					return
				}
				ticker.Reset(reliefTick)
				quiet = 0
			}
		case n != seen || r != seenRead:
			seen, seenRead, ticks, quiet = n, r, 0, 0
		default:
			// The same turn as a tick ago, in the same read(2) if in
			// one: take the reading away, from a read only once it has
			// lasted stuckReadTicks.
			quiet = 0
			if ticks++; r == 0 || ticks >= stuckReadTicks {
				if rl.turn.CompareAndSwap(n, 0) {
					rl.handOver()
				}
				seen, seenRead, ticks = 0, 0, 0
			}
		}
	}
}

// sleep waits until the reader has read events, or is found in a read(2)
// at one of the looks it takes every stuckCheck: the kernel may be
// opening a file on a hung filesystem for it. false when the loop ends.
func (rl *relief) sleep() bool {
	check := time.NewTimer(stuckCheck)
	defer check.Stop()
	for {
		rl.asleep.Store(true)
		if _, _, busy := rl.look(); busy && rl.asleep.CompareAndSwap(true, false) {
			return true
		}
		select {
		case <-rl.wake:
			return true
		case <-rl.quit:
			return false
		case <-check.C:
		}
		if !rl.asleep.CompareAndSwap(true, false) {
			<-rl.wake // the reader is sending it
			return true
		}
		if _, _, busy := rl.look(); busy {
			return true
		}
		check.Reset(stuckCheck)
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
