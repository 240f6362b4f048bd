#!/usr/bin/env bash
# System packages that building, generating and testing need beyond Go, for
# a bare Debian machine as root (.ci/run, make deps):
#   clang-14, llvm-14  make generate / check-generated: the pinned BPF compiler
#                      and the llvm-strip bpf2go uses (bpf/include is committed)
#   clamav-daemon      internal/scan/clamd's end-to-end test starts its own clamd
#                      on a database it writes (there is no internet)
#   e2fsprogs          filesystem-mode tests loop-mount an ext4 image they make
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v clang-14 >/dev/null || need+=(clang-14)
command -v llvm-strip-14 >/dev/null || need+=(llvm-14)
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The clamav package may start the system clamd and freshclam (freshclam
# would only retry downloads here). Tests need neither: stop and disable them.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	systemctl disable --now clamav-daemon.service clamav-daemon.socket clamav-freshclam.service 2>/dev/null || true
else
	for pidfile in /run/clamav/clamd.pid /run/clamav/freshclam.pid; do
		if [ -s "$pidfile" ]; then
			kill "$(cat "$pidfile")" 2>/dev/null || true
		fi
	done
fi
