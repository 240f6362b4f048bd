package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// notifyReady tells systemd (Type=notify) that every watch is placed.
func notifyReady() error { return sdNotify("READY=1") }

// watchdogInterval is how often systemd wants WATCHDOG=1 (WatchdogSec):
// half its timeout; 0 when no watchdog is set for this process.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// sdNotify sends state to systemd's notification socket, if any.
func sdNotify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("write %s: %w", addr, err)
	}
	return nil
}
