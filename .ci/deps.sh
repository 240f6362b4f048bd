#!/usr/bin/env bash
# System packages the tests need beyond Go, for .ci/run on a bare Debian
# machine as root: clamd, for internal/scan/clamd's end-to-end test (the
# test starts its own clamd on a database it writes; there is no internet).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/sbin/clamd ]; then
	apt-get update
	apt-get install -y --no-install-recommends clamav-daemon
fi

# The package may start the system clamd and freshclam (freshclam would
# only retry downloads here). Tests need neither: stop and disable them.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	systemctl disable --now clamav-daemon.service clamav-daemon.socket clamav-freshclam.service 2>/dev/null || true
else
	for pidfile in /run/clamav/clamd.pid /run/clamav/freshclam.pid; do
		if [ -s "$pidfile" ]; then
			kill "$(cat "$pidfile")" 2>/dev/null || true
		fi
	done
fi
/usr/sbin/clamd --version
