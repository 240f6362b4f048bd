package daemon

import (
	"fmt"
	"net"
	"os"
)

// notifyReady tells systemd (Type=notify) that every watch is placed.
func notifyReady() error {
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
	if _, err := c.Write([]byte("READY=1")); err != nil {
		return fmt.Errorf("write %s: %w", addr, err)
	}
	return nil
}
