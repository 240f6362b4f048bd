package inotify

import (
	"math/bits"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	maxUserWatches = "/proc/sys/fs/inotify/max_user_watches"
	// The warning waits for the failures to stop (a walk hitting the limit
	// fails on every directory after), so that it can count them.
	limitQuiet   = 200 * time.Millisecond
	limitMaxWait = 5 * time.Second
)

// limitState is what the watch limit warning needs. Guarded by Watcher.mu.
type limitState struct {
	first  time.Time
	others int // watches the user holds elsewhere, when the limit was hit
	timer  *time.Timer
	warned bool
	sole   bool // no other source follows directories: see Sole
}

// Sole tells the watcher that it is the only source of directory events
// (no eBPF tracer): a directory it cannot watch for want of inotify
// watches is then not followed at all, and the warning says so.
func (w *Watcher) Sole() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limit.sole = true
}

// readLimit returns fs.inotify.max_user_watches, or 0 when unknown.
func readLimit() int {
	b, err := os.ReadFile(maxUserWatches)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// noteLimit records an ENOSPC from inotify_add_watch and schedules the
// one warning. Called with w.mu held.
func (w *Watcher) noteLimit() {
	l := &w.limit
	if l.warned {
		return
	}
	now := time.Now()
	if l.first.IsZero() {
		l.first = now
		// The limit is per user: at ENOSPC the user's watches elsewhere
		// (other programs, other instances) fill what ours do not.
		l.others = max(readLimit()-w.tree.Len(), 0)
		l.timer = time.AfterFunc(limitQuiet, func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.flushLimitWarning()
		})
		return
	}
	if now.Sub(l.first) < limitMaxWait {
		l.timer.Reset(limitQuiet)
	}
}

// flushLimitWarning logs the watch limit warning if it is due and not yet
// logged. Called with w.mu held.
func (w *Watcher) flushLimitWarning() {
	l := &w.limit
	if l.warned || l.first.IsZero() {
		return
	}
	l.warned = true
	l.timer.Stop()
	limit := readLimit()
	tracked, untracked := w.tree.Len(), w.tree.Pinned()
	needed := l.others + tracked + untracked
	msg := "inotify watch limit reached: some directories have no inotify watch, the other sources keep protecting them"
	if l.sole {
		msg = "inotify watch limit reached: directories made or moved into the untracked ones are not marked, and their files are not scanned (no other source follows directories here): raise the limit, or use mode = \"filesystem\""
	}
	w.log.Warn(msg,
		"tracked", tracked,
		"untracked", untracked,
		"limit", limit,
		"needed", needed,
		"fix", "sysctl fs.inotify.max_user_watches="+strconv.Itoa(suggestLimit(needed, limit)))
}

// suggestLimit rounds needed, with a quarter more for growth, up to a power
// of two, and above the current limit.
func suggestLimit(needed, limit int) int {
	want := max(needed+needed/4, limit+1, 8192)
	return 1 << bits.Len(uint(want-1))
}
