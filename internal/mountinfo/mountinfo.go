// Package mountinfo reads the mounts of a mount namespace from
// /proc/PID/mountinfo: what can be learnt of a mount without asking its
// filesystem, which may not answer.
package mountinfo

import (
	"bufio"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is a line of /proc/self/mountinfo
// ("36 35 98:0 /mnt1 /mnt2 rw ...").
type Mount struct {
	ID           uint64
	Major, Minor uint32 // the superblock's device
	Root         string // the directory of the filesystem mounted
	Point        string // where
}

// Dev is the mount's device, as stat reports it.
func (m Mount) Dev() uint64 { return unix.Mkdev(m.Major, m.Minor) }

// Read returns every mount of this process's namespace; malformed lines
// are skipped.
func Read() ([]Mount, error) { return ReadFile("/proc/self/mountinfo") }

// ReadFile is Read for a mountinfo file: /proc/PID/mountinfo gives the
// mounts of PID's namespace, their points seen from PID's root.
func ReadFile(name string) ([]Mount, error) {
	f, err := os.Open(name)
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

// At returns the mount that holds p, a clean absolute path as the
// namespace of ms shows it: the one with the longest point above p, the
// last one mounted there if several are.
func At(ms []Mount, p string) (Mount, bool) {
	return holding(ms, p, func(Mount) bool { return true })
}

// Locate returns where p, a clean absolute path on device dev as the
// namespace of ms shows it, is on its filesystem: see On. The mount is
// At's, of those on dev.
func Locate(ms []Mount, p string, dev uint64) (string, bool) {
	m, ok := holding(ms, p, func(m Mount) bool { return m.Dev() == dev })
	if !ok {
		return "", false
	}
	return m.On(p), true
}

// On returns where p, at or below m's point, is on m's filesystem: m's
// root joined with the rest of p.
func (m Mount) On(p string) string {
	return path.Join(m.Root, strings.TrimPrefix(p, m.Point))
}

func holding(ms []Mount, p string, keep func(Mount) bool) (Mount, bool) {
	best := -1
	for i, m := range ms {
		if !keep(m) || !Under(p, m.Point) {
			continue
		}
		if best < 0 || len(m.Point) >= len(ms[best].Point) {
			best = i
		}
	}
	if best < 0 {
		return Mount{}, false
	}
	return ms[best], true
}

// Under reports whether the clean path p is dir, a clean absolute path,
// or below it.
func Under(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir) && p[len(dir)] == '/'
}
