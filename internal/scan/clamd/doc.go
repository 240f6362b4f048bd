// Package clamd is a scan engine that asks ClamAV's daemon, clamd, over its
// unix socket (passing the file descriptor) or TCP (streaming the file).
package clamd
