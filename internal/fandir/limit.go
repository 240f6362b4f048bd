package fandir

import (
	"os"
	"strconv"
	"strings"
)

const maxUserMarks = "/proc/sys/fs/fanotify/max_user_marks"

// noteLimit logs, once, that a mark was refused for want of room. The
// group asks for FAN_UNLIMITED_MARKS, so fs.fanotify.max_user_marks
// should not apply; a kernel or container that applies it anyway is told
// here. Called with s.mu held.
func (s *Source) noteLimit() {
	if s.limited {
		return
	}
	s.limited = true
	limit := 0
	if b, err := os.ReadFile(maxUserMarks); err == nil {
		limit, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	want := max(2*limit, 2*s.tree.Len(), 8192)
	s.log.Warn("fanotify mark limit reached: directories past it are followed by the other sources only",
		"tracked", s.tree.Len(),
		"limit", limit,
		"fix", "sysctl fs.fanotify.max_user_marks="+strconv.Itoa(want))
}
