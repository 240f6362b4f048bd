#!/usr/bin/env bash
# Installs what `make vmtest` needs on a Debian machine, as root: qemu, xz and zstd, and
# the kernels pinned in vmtest/kernels.txt (into /boot and /lib/modules, so a
# guest sharing the host's root finds its own modules there).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")"

mapfile -t kernels < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' kernels.txt | grep -v '^$')
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
# Debian compresses its kernel images with xz (6.1) or zstd (6.12): vmtest
# unpacks vmlinux with these tools, the standard library having neither.
command -v xz >/dev/null || need+=(xz-utils)
command -v zstd >/dev/null || need+=(zstd)
for k in "${kernels[@]}"; do
	[ -e "/boot/vmlinuz-${k#linux-image-}" ] || need+=("$k")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -q
	# No recommends: the guest needs no firmware, apparmor or qemu GUI.
	apt-get install -y -q --no-install-recommends "${need[@]}"
fi
