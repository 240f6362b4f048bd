// Package mountinfo reads the mounts of this process's namespace from
// /proc/self/mountinfo: what can be learnt of a mount without asking its
// filesystem, which may not answer.
package mountinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Mount is a line of /proc/self/mountinfo
// ("36 35 98:0 /mnt1 /mnt2 rw ...").
type Mount struct {
	ID           uint64
	Major, Minor uint32 // the superblock's device
	Root         string // the directory of the filesystem mounted
	Point        string // where
}

// Read returns every mount; malformed lines are skipped.
func Read() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		ms = append(ms, Mount{ID: id, Major: uint32(ma), Minor: uint32(mi), Root: unescape(fields[3]), Point: unescape(fields[4])})
	}
	return ms, sc.Err()
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and
// backslash ("\040").
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
