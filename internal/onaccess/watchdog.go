package onaccess

import (
	"sync"
	"time"
)

// watchdog answers requests whose deadline has passed. One timer serves
// every request, instead of a runtime timer armed and stopped per event:
// arming a timer earlier than the poller's next wake-up writes to the
// runtime's wake-up eventfd and wakes another thread, which cost more than
// the rest of a clean file's decision.
//
// Requests are kept in deadline order in an intrusive list; with one
// scan_timeout that is arrival order, so adding is O(1), and so is removal.
// The timer stays armed while the list is empty (it then fires once per
// period, idle), so an event never has to re-arm it unless its deadline is
// earlier than the timer's, which only a reload to a shorter scan_timeout
// causes.
type watchdog struct {
	expire func(rs []*request) // answers expired requests; called outside mu

	mu         sync.Mutex
	head, tail *request
	timer      *time.Timer
	at         time.Time     // when timer fires
	idle       time.Duration // re-arm period when nothing is pending
	stopped    bool
	firing     sync.WaitGroup // expire calls in progress
}

const minIdle = 100 * time.Millisecond

func newWatchdog(expire func([]*request)) *watchdog {
	w := &watchdog{expire: expire, idle: time.Second}
	w.at = time.Now().Add(w.idle)
	w.timer = time.AfterFunc(w.idle, w.fire)
	return w
}

// add starts watching r until remove; r.deadline must be set.
func (w *watchdog) add(r *request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// From the tail: deadlines mostly come in order.
	p := w.tail
	for p != nil && p.deadline.After(r.deadline) {
		p = p.prev
	}
	r.prev = p
	if p == nil {
		r.next = w.head
		w.head = r
	} else {
		r.next = p.next
		p.next = r
	}
	if r.next == nil {
		w.tail = r
	} else {
		r.next.prev = r
	}
	r.watched = true
	if r.deadline.Before(w.at) && !w.stopped {
		w.at = r.deadline
		w.timer.Reset(time.Until(r.deadline))
	}
	// An idle timer fires about once per scan_timeout, not more often.
	if d := r.deadline.Sub(r.start); d > w.idle {
		w.idle = max(d, minIdle)
	}
}

// remove stops watching r; it does nothing if r is not watched.
func (w *watchdog) remove(r *request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unlink(r)
}

func (w *watchdog) unlink(r *request) {
	if !r.watched {
		return
	}
	if r.prev == nil {
		w.head = r.next
	} else {
		r.prev.next = r.next
	}
	if r.next == nil {
		w.tail = r.prev
	} else {
		r.next.prev = r.prev
	}
	r.prev, r.next, r.watched = nil, nil, false
}

// fire answers every expired request and re-arms the timer.
func (w *watchdog) fire() {
	var expired []*request
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	now := time.Now()
	for w.head != nil && !w.head.deadline.After(now) {
		r := w.head
		w.unlink(r)
		expired = append(expired, r)
	}
	w.at = now.Add(w.idle)
	if w.head != nil {
		w.at = w.head.deadline
	}
	w.timer.Reset(w.at.Sub(now))
	if len(expired) == 0 {
		w.mu.Unlock()
		return
	}
	w.firing.Add(1)
	w.mu.Unlock()
	defer w.firing.Done()
	w.expire(expired)
}

// stop disarms the watchdog for good, once the answers (and alerts) of
// a firing in progress are done.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
	w.firing.Wait()
}
